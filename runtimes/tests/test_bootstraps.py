"""Protocol tests of the instance bootstraps against real CPython and real Bun.

Each test starts a bootstrap the way the host does (control socket on fd 3, pipes on fd 1
and fd 2) and checks the frames and raw output of docs/protocol.md.
"""

import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUN = os.environ.get("IGNIS_BUN") or os.path.join(ROOT, ".tools", "node_modules", ".bin", "bun")
DEADLINE = 20.0


class Instance:
    def __init__(self, runtime, source, filename, handler="handler"):
        self.dir = tempfile.mkdtemp()
        with open(os.path.join(self.dir, filename), "w") as f:
            f.write(source)
        if runtime == "python":
            cmd = [sys.executable, "-I", "-u", "-X", "utf8", os.path.join(ROOT, "runtimes/python/bootstrap.py")]
        else:
            if not os.path.exists(BUN):
                raise AssertionError("Bun is missing: run `make tools` or set IGNIS_BUN")
            cmd = [BUN, os.path.join(ROOT, "runtimes/bun/bootstrap.ts")]
        host, child = socket.socketpair()
        self.sock = host
        self.proc = subprocess.Popen(
            cmd + ["--fd", "3", "--marker", "n0nce"],
            pass_fds=[3],
            preexec_fn=lambda: os.dup2(child.fileno(), 3),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )
        child.close()
        self.filename = filename
        self.handler = handler
        self.out = {1: b"", 2: b""}

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(timeout=DEADLINE)
        finally:
            self.proc.kill()
            self.proc.stdout.close()
            self.proc.stderr.close()

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def read_exact(self, n):
        buf = b""
        end = time.monotonic() + DEADLINE
        while len(buf) < n:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise AssertionError("no frame within the deadline")
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def frame(self):
        header = self.read_exact(4)
        if header is None:
            return None
        return json.loads(self.read_exact(struct.unpack(">I", header)[0]))

    def drain_pipes(self, until):
        """Reads fd 1 and fd 2 until `until(out)` holds, with a deadline."""
        end = time.monotonic() + DEADLINE
        pipes = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}
        while not until(self.out):
            ready, _, _ = select.select(list(pipes), [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise AssertionError("pipes: %r" % self.out)
            for fd in ready:
                self.out[pipes[fd]] += os.read(fd, 65536)

    def load(self, env=None, limit=262144, max_response=6 * 1024 * 1024):
        hello = self.frame()
        assert hello["t"] == "hello" and hello["protocol"] == 1, hello
        self.send({
            "t": "load", "dir": self.dir, "file": self.filename, "handler": self.handler, "env": env or {},
            "function": {"name": "f", "version": 4, "memory_mb": 128, "timeout_ms": 5000},
            "log_limit_bytes": limit, "max_response_bytes": max_response,
        })
        return self.frame()

    def invoke(self, inv_id, event):
        self.send({"t": "invoke", "id": inv_id, "event": event, "deadline_ms": int(time.time() * 1000) + 5000})
        return self.frame()


RUNTIMES = [
    ("python", "main.py"),
    ("bun", "index.js"),
]

RAW_PY = """
import os
def handler(event):
    os.write(1, b"raw before answer\\n")
    print("captured")
    return event
"""

RAW_JS = """
import fs from "node:fs";
export function handler(event) {
  fs.writeSync(1, "raw before answer\\n");
  console.log("captured");
  return event;
}
"""


class BootstrapTests(unittest.TestCase):
    def start(self, runtime, filename, source, **kw):
        inst = Instance(runtime, source, filename, **kw)
        self.addCleanup(inst.close)
        return inst

    def test_raw_output_and_markers_come_before_the_answer(self):
        for (runtime, filename), source in zip(RUNTIMES, [RAW_PY, RAW_JS]):
            with self.subTest(runtime=runtime):
                inst = self.start(runtime, filename, source)
                self.assertEqual(inst.load(), {"t": "loaded"})
                answer = inst.invoke("id-1", {"big": "x" * (3 * 1024 * 1024)})
                self.assertEqual(answer["t"], "result")
                self.assertEqual(len(answer["value"]["big"]), 3 * 1024 * 1024, "large frames both ways")
                self.assertEqual([(l["stream"], l["line"]) for l in answer["logs"]], [("stdout", "captured")])
                # The answer frame was read; by protocol both markers were written before
                # it, so they are already in the pipes.
                marker = b"\0ignis-end:n0nce:id-1\n"
                inst.drain_pipes(lambda out: marker in out[1] and marker in out[2])
                self.assertEqual(inst.out[1], b"raw before answer\n" + marker)
                self.assertEqual(inst.out[2], marker)

    def test_exits_cleanly_when_the_host_closes_the_channel(self):
        for runtime, filename in RUNTIMES:
            with self.subTest(runtime=runtime):
                source = "def handler(e):\n    return 1\n" if runtime == "python" else "export const handler = () => 1;"
                inst = Instance(runtime, source, filename)
                self.assertEqual(inst.load(), {"t": "loaded"})
                inst.sock.shutdown(socket.SHUT_WR)
                self.assertEqual(inst.proc.wait(timeout=DEADLINE), 0)
                inst.close()

    def test_import_errors_name_the_users_line(self):
        cases = [
            ("python", "main.py", "x = 1\n\ndef helper():\n    raise KeyError('k')\n\nhelper()\n", "KeyError", 4),
            ("bun", "index.js", "const a = 1;\nthrow new Error('at import');\n", "Error", 2),
        ]
        for runtime, filename, source, kind, line in cases:
            with self.subTest(runtime=runtime):
                inst = self.start(runtime, filename, source)
                err = inst.load()
                self.assertEqual(err["t"], "load_error")
                self.assertEqual(err["error"]["type"], kind)
                self.assertEqual(err["error"]["line"], line)

    def test_env_context_and_too_large(self):
        py = "import os\ndef handler(e, ctx):\n    return [os.environ['A'], ctx.function_version, 'x' * e['n']]\n"
        js = "export function handler(e, ctx) { return [process.env.A, ctx.functionVersion, 'x'.repeat(e.n)]; }"
        for (runtime, filename), source in zip(RUNTIMES, [py, js]):
            with self.subTest(runtime=runtime):
                inst = self.start(runtime, filename, source)
                self.assertEqual(inst.load(env={"A": "b"}, max_response=1000), {"t": "loaded"})
                self.assertEqual(inst.invoke("1", {"n": 3})["value"], ["b", "4", "xxx"])
                big = inst.invoke("2", {"n": 2000})
                self.assertEqual(big["t"], "too_large")
                self.assertGreater(big["size"], 2000)
                self.assertEqual(inst.invoke("3", {"n": 1})["t"], "result", "still serving")


if __name__ == "__main__":
    unittest.main()
