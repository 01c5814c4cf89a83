"""Protocol tests of the instance bootstraps against real CPython and real Bun.

Each test starts a bootstrap the way the host does (control socket on fd 3, pipes on fd 1
and fd 2) and checks the frames and the raw output that docs/protocol.md describes.
Run from the repository root:  python3 -m unittest discover -s runtimes/tests -v
Bun comes from $IGNIS_BUN, else .tools/node_modules/.bin/bun (`make tools`).
"""

import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUN = os.environ.get("IGNIS_BUN") or os.path.join(ROOT, ".tools", "node_modules", ".bin", "bun")
DEADLINE = 20.0  # seconds any single wait may take before the test fails
TIMEOUT_MS = 5000
MARKER = "n0nce"
LOG_LIMIT = 262144
PY, JS, TS = ("python", "main.py"), ("bun", "index.js"), ("bun", "index.ts")


def bun_or_fail():
    if not os.path.exists(BUN):
        raise AssertionError("Bun not found at %s: run `make tools` or set IGNIS_BUN" % BUN)
    return BUN


class Instance:
    """One bootstrap process, driven like the host drives it."""

    def __init__(self, runtime, filename, source, handler="handler", extra_args=()):
        self.tmp = tempfile.mkdtemp(prefix="ignis-rt-test-")
        # The code directory holds no code: the source comes in the load message.
        self.dir = os.path.join(self.tmp, "code")
        os.mkdir(self.dir)
        self.source = source
        if runtime == "python":
            cmd = [sys.executable, "-I", "-u", "-X", "utf8", os.path.join(ROOT, "runtimes/python/bootstrap.py")]
        else:
            cmd = [bun_or_fail(), os.path.join(ROOT, "runtimes/bun/bootstrap.ts")]
        # A private temporary directory, as the sandbox's own /tmp: what the bootstrap
        # leaves there is this instance's alone, and no other process's files show in it.
        private_tmp = os.path.join(self.tmp, "tmp")
        os.mkdir(private_tmp)
        self.sock, child = socket.socketpair()
        self.proc = subprocess.Popen(
            cmd + ["--fd", "3", "--marker", MARKER, *extra_args],
            pass_fds=[3],
            preexec_fn=lambda: os.dup2(child.fileno(), 3),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.tmp,  # the bootstrap must move into the code dir itself
            env={**os.environ, "TMPDIR": private_tmp},
        )
        child.close()
        self.sock.settimeout(DEADLINE)  # bounds sendall; reads go through select
        self.filename, self.handler = filename, handler
        self.inbuf = b""
        self.sock_eof = False
        self.out = {1: b"", 2: b""}
        self.pipes = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(timeout=DEADLINE)
        finally:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _read_ready(self, timeout):
        """Reads whatever the socket and the pipes have within `timeout`; False if none."""
        fds = ([] if self.sock_eof else [self.sock]) + list(self.pipes)
        ready = select.select(fds, [], [], timeout)[0] if fds else []
        for r in ready:
            if r is self.sock:
                data = self.sock.recv(1 << 20)
                self.inbuf += data
                self.sock_eof = not data
            else:
                data = os.read(r, 1 << 16)
                self.out[self.pipes[r]] += data
                if not data:
                    del self.pipes[r]
        return bool(ready)

    def pump(self, until, what):
        end = time.monotonic() + DEADLINE
        while not until():
            left = end - time.monotonic()
            if left <= 0 or (not self._read_ready(left) and not until()):
                raise AssertionError("timed out waiting for %s; fd1=%r fd2=%r" % (what, self.out[1][-500:], self.out[2][-500:]))

    def drain_now(self):
        """Reads what the pipes hold right now, without waiting for more."""
        while self._read_ready(0):
            pass

    def frame(self):
        def complete():
            return self.sock_eof or (len(self.inbuf) >= 4 and len(self.inbuf) >= 4 + struct.unpack(">I", self.inbuf[:4])[0])

        self.pump(complete, "a frame")
        if len(self.inbuf) < 4 or len(self.inbuf) < 4 + struct.unpack(">I", self.inbuf[:4])[0]:
            raise AssertionError("the instance closed its socket; stderr: %r" % self.out[2][-2000:])
        size = struct.unpack(">I", self.inbuf[:4])[0]
        body, self.inbuf = self.inbuf[4 : 4 + size], self.inbuf[4 + size :]
        return json.loads(body.decode("utf-8"))  # strict UTF-8, as the host reads it

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def hello(self):
        hello = self.frame()
        assert hello["t"] == "hello", hello
        return hello

    def load(self, env=None, limit=LOG_LIMIT, max_response=6 * 1024 * 1024, concurrency=1, dir=None, greeted=False):
        if not greeted:
            self.hello()
        msg = {
            "t": "load", "dir": dir or self.dir, "file": self.filename, "handler": self.handler, "env": env or {},
            "function": {"name": "greet", "version": 4, "memory_mb": 128, "timeout_ms": TIMEOUT_MS},
            "log_limit_bytes": limit, "max_response_bytes": max_response, "concurrency": concurrency,
            "code": self.source,
        }
        self.send(msg)
        return self.frame()

    def send_invoke(self, inv_id, event=None):
        self.send({"t": "invoke", "id": inv_id, "event": event, "deadline_ms": int(time.time() * 1000) + TIMEOUT_MS})

    def invoke(self, inv_id, event=None):
        self.send_invoke(inv_id, event)
        answer = self.frame()
        assert answer.get("id") == inv_id, answer
        return answer


def marker(inv_id):
    return b"\0ignis-end:%s:%s\n" % (MARKER.encode(), inv_id.encode())


# Bun's console lines start as on Lambda: "<ISO time>\t<request id>\t<LEVEL>\t" (checked in
# test_bun_contract.py); the tests here compare what follows.
LAMBDA_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t[^\t]*\t(TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\t")


def logs(answer):
    return [(l["stream"], LAMBDA_PREFIX.sub("", l["line"])) for l in answer["logs"]]


class Case(unittest.TestCase):
    def start(self, runtime_file, source, **kw):
        inst = Instance(*runtime_file, source, **kw)
        self.addCleanup(inst.close)
        return inst

    def loaded(self, runtime_file, source, **kw):
        load_kw = {k: kw.pop(k) for k in ("env", "limit", "max_response", "concurrency") if k in kw}
        inst = self.start(runtime_file, source, **kw)
        self.assertEqual(inst.load(**load_kw), {"t": "loaded"})
        return inst

    def sub(self, runtime_file):
        return self.subTest(runtime=runtime_file[0], file=runtime_file[1])


def pairs(cases):
    """((runtime, file), source) pairs of a dict or a list."""
    return list(cases.items()) if isinstance(cases, dict) else cases


class Protocol(Case):
    def test_bun_is_available(self):
        version = subprocess.run([bun_or_fail(), "--version"], capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(version.returncode, 0, version.stderr)

    def test_hello_names_the_runtime_before_any_user_code(self):
        bun_version = subprocess.run([bun_or_fail(), "--version"], capture_output=True, text=True).stdout.strip()
        for (runtime, filename), version in [(PY, "%d.%d.%d" % sys.version_info[:3]), (JS, bun_version)]:
            with self.subTest(runtime=runtime):
                hello = self.start((runtime, filename), "").hello()
                self.assertEqual(hello, {"t": "hello", "protocol": 1, "runtime": runtime, "version": version})

    def test_plain_values_none_and_status_code_objects(self):
        py = "def handler(event):\n    return event.get('v')\n"
        js = "export function handler(event) { return event.v; }"
        values = [0, 42, -1.5, "héllo ✓ 😀", True, [1, [2, {"a": None}]], {"nested": {"k": ["v"]}},
                  {"statusCode": 201, "headers": {"X-A": "b"}, "body": "{\"x\": 1}", "isBase64Encoded": False}]
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for i, v in enumerate(values):
                    self.assertEqual(inst.invoke("v%d" % i, {"v": v}), {"t": "result", "id": "v%d" % i, "value": v, "logs": []})
                missing = inst.invoke("none", {})
                self.assertIn("value", missing)
                self.assertIsNone(missing["value"], "None / undefined is null")

    def test_large_frames_both_ways(self):
        py = "def handler(e):\n    return {'n': len(e['big']), 'back': e['big'][:3 * 1024 * 1024]}\n"
        js = "export const handler = (e) => ({ n: e.big.length, back: e.big.slice(0, 3 * 1024 * 1024) });"
        big = "x" * (8 * 1024 * 1024 - 1024)
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                answer = self.loaded(runtime_file, source).invoke("big", {"big": big})
                self.assertEqual(answer["value"]["n"], len(big))
                self.assertEqual(len(answer["value"]["back"]), 3 * 1024 * 1024)

    def test_exits_zero_when_the_host_closes_the_socket(self):
        good = {PY: "def handler(e):\n    return 1\n", JS: "export const handler = () => 1;"}
        for runtime_file, source in pairs(good):
            with self.sub(runtime_file):
                for stage in ("before load", "after load", "after a load error"):
                    inst = Instance(*runtime_file, source, handler="nope" if stage == "after a load error" else "handler")
                    try:
                        if stage == "before load":
                            inst.hello()
                        else:
                            self.assertIn(inst.load()["t"], ("loaded", "load_error"))
                        inst.sock.shutdown(socket.SHUT_WR)
                        self.assertEqual(inst.proc.wait(timeout=DEADLINE), 0, stage)
                    finally:
                        inst.close()


class Loading(Case):
    def assert_load_error(self, runtime_file, source, kind, line, message=None):
        err = self.start(runtime_file, source).load()
        self.assertEqual(err["t"], "load_error", err)
        self.assertEqual(err["error"]["type"], kind, err)
        self.assertEqual(err["error"]["line"], line, err)
        self.assertIsInstance(err["error"]["stack"], str)
        if message is not None:
            self.assertEqual(err["error"]["message"], message)
        return err["error"]

    def test_syntax_errors_name_the_line(self):
        cases = {
            PY: "x = 1\n\ndef handler(e:\n    return e\n",
            JS: "const a = 1;\n\nconst b = ;\nexport const handler = () => a;\n",
            TS: "interface A { x: number }\nconst a: A = { x: 1 };\nconst b: A = { x: 1;\nexport const handler = () => a;\n",
        }
        for runtime_file, source in pairs(cases):
            with self.sub(runtime_file):
                err = self.assert_load_error(runtime_file, source, "SyntaxError", 3)
                self.assertTrue(err["message"])
                self.assertIn(runtime_file[1], err["stack"])

    def test_exceptions_at_import_name_the_deepest_line_of_the_users_file(self):
        cases = {
            PY: "x = 1\n\ndef helper():\n    raise KeyError('k')\n\nhelper()\n",
            JS: "const a = 1;\nfunction helper() {\n  throw new RangeError('at import');\n}\nhelper();\n",
        }
        for runtime_file, source in pairs(cases):
            with self.sub(runtime_file):
                kind, message = ("KeyError", "'k'") if runtime_file == PY else ("RangeError", "at import")
                err = self.assert_load_error(runtime_file, source, kind, 4 if runtime_file == PY else 3, message)
                self.assertIn(runtime_file[1], err["stack"])
                self.assertNotIn("bootstrap.", err["stack"], "the bootstrap's own frames are left out")

    def test_non_error_thrown_at_import(self):
        self.assert_load_error(JS, "const a = 1;\nthrow 'plain';\n", "Error", None, "plain")

    def test_missing_or_non_callable_handler(self):
        cases = [
            (PY, "def other(e):\n    return 1\n"),
            (PY, "handler = 5\n"),
            (JS, "export const other = () => 1;\n"),
            (JS, "export const handler = 5;\nexport default { notHandler() {} };\n"),
        ]
        for runtime_file, source in pairs(cases):
            with self.sub(runtime_file):
                self.assert_load_error(runtime_file, source, "HandlerNotFound", None,
                                       "handler 'handler' is not a function in %s" % runtime_file[1])

    def test_import_output_is_raw_and_globals_initialise_once(self):
        py = "print('importing')\ncount = 0\n\ndef handler(e):\n    global count\n    count += 1\n    return count\n"
        js = "process.stdout.write('importing\\n');\nlet count = 0;\nexport function handler() { return ++count; }\n"
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                self.assertEqual([inst.invoke(str(i))["value"] for i in range(3)], [1, 2, 3])
                inst.drain_now()
                self.assertEqual(inst.out[1], b"importing\n" + marker("0") + marker("1") + marker("2"))

    def test_code_sent_in_the_load_message_runs_from_memory(self):
        # Instances get their code inline, and nothing is written to the code directory
        # (empty and read-only in a sandbox). Errors point into the code's lines.
        sources = {
            PY: "import os\ndef handler(e):\n    if e: raise ValueError('no')\n    return [os.getcwd(), __file__]\n",
            JS: "export function handler(e) {\n  if (e) throw new Error('no');\n  return [process.cwd(), import.meta.path];\n}\n",
            TS: "export function handler(e: unknown): string[] {\n  if (e) throw new Error('no');\n  return [process.cwd(), import.meta.path];\n}\n",
        }
        for runtime_file, source in pairs(sources):
            with self.sub(runtime_file):
                inst = self.start(runtime_file, source)
                empty = os.path.join(inst.tmp, "empty")
                os.mkdir(empty)
                self.assertEqual(inst.load(dir=empty), {"t": "loaded"})
                cwd, path = inst.invoke("1")["value"]
                self.assertEqual(cwd, os.path.realpath(empty))
                if runtime_file == PY:
                    self.assertEqual(path, os.path.join(os.path.realpath(empty), runtime_file[1]))
                else:
                    # Bun imports a private copy (it tells CommonJS from ESM only for files),
                    # removed once imported.
                    self.assertEqual(os.path.basename(path), runtime_file[1])
                    self.assertFalse(os.path.exists(path), "the copy is gone")
                error = inst.invoke("2", True)["error"]
                self.assertEqual(error["message"], "no")
                where = ('File "%s", line 3' % path) if runtime_file == PY else ("%s:2:" % path)
                self.assertIn(where, error["stack"])
                self.assertEqual(os.listdir(empty), [], "nothing was written there")
        for runtime_file in (PY, JS):
            with self.sub(runtime_file):
                broken = "x = 1\n\ndef handler(e:\n" if runtime_file == PY else "const x = 1;\n\nexport function handler( {\n"
                err = self.start(runtime_file, broken).load()
                self.assertEqual((err["t"], err["error"]["type"], err["error"]["line"]), ("load_error", "SyntaxError", 3), err)

    def test_env_and_working_directory(self):
        py = "import os\ndef handler(e):\n    return [os.environ.get('GREETING'), os.getcwd()]\n"
        js = "export const handler = () => [process.env.GREETING, process.cwd()];\n"
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source, env={"GREETING": "héllo"})
                self.assertEqual(inst.invoke("1")["value"], ["héllo", os.path.realpath(inst.dir)])

    def test_python_local_imports_resolve_from_the_code_dir(self):
        inst = self.start(PY, "import helper\ndef handler(e):\n    return helper.VALUE\n")
        with open(os.path.join(inst.dir, "helper.py"), "w") as f:
            f.write("VALUE = 'from helper'\n")
        self.assertEqual(inst.load(), {"t": "loaded"})
        self.assertEqual(inst.invoke("1")["value"], "from helper")


    def test_a_package_is_imported_where_it_is(self):
        """`code` null: the files are in `dir`, `file` is the handler's file relative to it."""
        cases = [
            (PY, "hello_world/app.py", {
                "hello_world/__init__.py": "",
                "hello_world/app.py": "from . import helper\nfrom hello_world.sub.deep import N\n"
                                      "def lambda_handler(e, c):\n    return [helper.greet(), N, __name__]\n",
                "hello_world/helper.py": "def greet():\n    return 'hi'\n",
                "hello_world/sub/__init__.py": "",
                "hello_world/sub/deep.py": "N = 42\n",
            }, ["hi", 42, "hello_world.app"]),
            (TS, "src/lambda.ts", {
                "src/lambda.ts": "import { greet } from './lib/greet';\nexport const lambda_handler = () => [greet(), 42, import.meta.path.endsWith('src/lambda.ts')];\n",
                "src/lib/greet.ts": "export const greet = (): string => 'hi';\n",
            }, ["hi", 42, True]),
        ]
        for runtime_file, entry, files, expected in cases:
            with self.sub(runtime_file):
                inst = self.start(runtime_file, None, handler="lambda_handler")
                for path, text in files.items():
                    os.makedirs(os.path.dirname(os.path.join(inst.dir, path)), exist_ok=True)
                    with open(os.path.join(inst.dir, path), "w") as f:
                        f.write(text)
                inst.filename = entry
                self.assertEqual(inst.load(), {"t": "loaded"})
                self.assertEqual(inst.invoke("1")["value"], expected)


class Handlers(Case):
    def test_async_handlers(self):
        py = ("import asyncio\n"
              "async def handler(e):\n    await asyncio.sleep(0.01)\n    print('after await')\n"
              "    await asyncio.to_thread(print, 'from a thread with the context')\n    return e['x'] * 2\n")
        js = ("export async function handler(e) {\n  await new Promise((r) => setTimeout(r, 10));\n"
              "  console.log('after await');\n  return e.x * 2;\n}\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for i in range(2):  # the second call runs on the same event loop
                    answer = inst.invoke(str(i), {"x": 21})
                    self.assertEqual(answer["value"], 42)
                    self.assertIn(("stdout", "after await"), logs(answer))
                if runtime_file == PY:
                    self.assertIn(("stdout", "from a thread with the context"), logs(answer))

    def test_concurrent_calls_overlap_in_one_instance(self):
        # Call "a" cannot finish before call "b" has run: with one call at a time this
        # would never answer. Each call keeps its own logs.
        wait_py = ("import os, time\n"
                   "def handler(e):\n    print('start', e['id'])\n    flag = os.path.join(os.getcwd(), 'flag')\n"
                   "    if e['id'] == 'b':\n        open(flag, 'w').close()\n"
                   "    while not os.path.exists(flag):\n        time.sleep(0.002)\n"
                   "    print('end', e['id'])\n    return e['id']\n")
        wait_py_async = ("import asyncio, os\n"
                         "async def handler(e):\n    print('start', e['id'])\n    flag = os.path.join(os.getcwd(), 'flag')\n"
                         "    if e['id'] == 'b':\n        open(flag, 'w').close()\n"
                         "    while not os.path.exists(flag):\n        await asyncio.sleep(0.002)\n"
                         "    print('end', e['id'])\n    return e['id']\n")
        # A plain function returning a coroutine: awaited on the shared loop.
        wait_py_returns_coro = wait_py_async.replace("async def handler(e):", "async def work(e):") + \
            "def handler(e):\n    return work(e)\n"
        wait_js = ("import fs from 'node:fs';\n"
                   "export async function handler(e) {\n  console.log('start', e.id);\n"
                   "  if (e.id === 'b') fs.writeFileSync('flag', '');\n"
                   "  while (!fs.existsSync('flag')) await Bun.sleep(2);\n"
                   "  console.log('end', e.id);\n  return e.id;\n}\n")
        cases = [(PY, wait_py), (PY, wait_py_async), (PY, wait_py_returns_coro), (JS, wait_js)]
        for n, (runtime_file, source) in enumerate(cases):
            with self.subTest(case=n, runtime=runtime_file[0]):
                inst = self.loaded(runtime_file, source, concurrency=4)
                inst.send_invoke("a", {"id": "a"})
                inst.send_invoke("b", {"id": "b"})
                first, second = inst.frame(), inst.frame()
                self.assertEqual([first["id"], second["id"]], ["b", "a"])
                for answer in (first, second):
                    i = answer["id"]
                    self.assertEqual(answer["value"], i)
                    self.assertEqual(logs(answer), [("stdout", "start " + i), ("stdout", "end " + i)])
                inst.pump(lambda: marker("a") in inst.out[1] and marker("a") in inst.out[2], "the markers")

    def test_many_concurrent_async_calls_each_get_their_own_answer(self):
        py = ("import asyncio\nasync def handler(e, ctx):\n    await asyncio.sleep(0.01)\n"
              "    print(ctx.request_id)\n    return {'id': ctx.request_id, 'n': e['n']}\n")
        js = ("export async function handler(e, ctx) {\n  await Bun.sleep(10);\n"
              "  console.log(ctx.requestId);\n  return { id: ctx.requestId, n: e.n };\n}\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source, concurrency=200)
                for i in range(200):
                    inst.send_invoke("c%d" % i, {"n": i})
                answers = {}
                for _ in range(200):
                    a = inst.frame()
                    answers[a["id"]] = a
                self.assertEqual(sorted(answers), sorted("c%d" % i for i in range(200)))
                for i in range(200):
                    a = answers["c%d" % i]
                    self.assertEqual(a["value"], {"id": "c%d" % i, "n": i})
                    self.assertEqual(logs(a), [("stdout", "c%d" % i)])

    def test_python_one_and_two_argument_handlers(self):
        cases = {
            "def handler(event):\n    return ['one', event]\n": ["one", 7],
            "def handler(event, context):\n    return ['two', context.function_name]\n": ["two", "greet"],
            "def handler(event, context=None):\n    return ['default', context is not None]\n": ["default", True],
            "def handler(*args):\n    return ['varargs', len(args)]\n": ["varargs", 2],
            "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def w(*a):\n        return f(*a)\n    return w\n"
            "@deco\ndef handler(event):\n    return ['decorated', event]\n": ["decorated", 7],
            "class H:\n    def __call__(self, event):\n        return ['callable', event]\nhandler = H()\n": ["callable", 7],
        }
        for source, expected in cases.items():
            with self.subTest(expected=expected[0]):
                self.assertEqual(self.loaded(PY, source).invoke("1", 7)["value"], expected)

    def test_js_export_shapes(self):
        cases = {
            "export default function (e, ctx) { return ['default fn', e, ctx.functionName]; }": ["default fn", 7, "greet"],
            "export default { tag: 'obj', handler(e) { return ['default obj', e, this.tag]; } };": ["default obj", 7, "obj"],
            "export function handler(e) { return ['named', e]; }": ["named", 7],
            "export const handler = async (e) => ['async arrow', e];": ["async arrow", 7],
            "module.exports.handler = (e) => ['commonjs', e];": ["commonjs", 7],
        }
        for source, expected in cases.items():
            with self.subTest(expected=expected[0]):
                self.assertEqual(self.loaded(JS, source).invoke("1", 7)["value"], expected)

    def test_a_prewarmed_bun_warms_up_and_leaves_nothing_behind(self):
        # --prewarm: Bun runs its load path once on a throwaway module before the load.
        # The real module loads and serves as usual, in both module systems, and nothing of
        # the throwaway module stays in the temporary directory or in the module's scope.
        cases = {
            "import fs from 'node:fs'; import os from 'node:os';\n"
            "export const handler = () => [fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('ignis-warm-')), typeof warm];":
                [[], "undefined"],
            "const fs = require('node:fs'), os = require('node:os');\n"
            "module.exports.handler = () => [fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('ignis-warm-')), typeof warm];":
                [[], "undefined"],
        }
        for source, expected in cases.items():
            with self.subTest(source=source[:20]):
                inst = self.loaded(JS, source, extra_args=["--prewarm"])
                self.assertEqual(inst.invoke("1")["value"], expected)

    def test_warm_before_the_load_answers_warmed_and_leaves_nothing_behind(self):
        # A microvm guest restored ahead of time is sent `warm` (its emulator translates the
        # load and call paths then): each gets `warmed`, nothing is written on stdout or
        # stderr, and the real load, environment and calls are as without it.
        py = ("import os, sys, tempfile\n"
              "def handler(e):\n"
              "    return [os.environ.get('IGNIS_WARM'), os.environ.get('GREETING'), os.getcwd(),\n"
              "            '_ignis_warm' in sys.modules, [n for n in os.listdir(tempfile.gettempdir()) if 'warm' in n]]\n")
        js = ("import fs from 'node:fs'; import os from 'node:os';\n"
              "export const handler = () => [process.env.IGNIS_WARM ?? null, process.env.GREETING, process.cwd(), false,\n"
              "  fs.readdirSync(os.tmpdir()).filter((n) => n.includes('warm'))];\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.start(runtime_file, source)
                inst.hello()
                for _ in range(2):
                    inst.send({"t": "warm"})
                    self.assertEqual(inst.frame(), {"t": "warmed"})
                inst.drain_now()
                self.assertEqual(inst.out, {1: b"", 2: b""}, "a warm-up writes nothing")
                self.assertEqual(inst.load(env={"GREETING": "hi"}, greeted=True), {"t": "loaded"})
                answer = inst.invoke("1")
                self.assertEqual(answer["value"], [None, "hi", os.path.realpath(inst.dir), False, []])
                self.assertEqual(answer["logs"], [])
                inst.pump(lambda: inst.out[1].endswith(marker("1")), "the end marker")
                self.assertEqual(inst.out[1], marker("1"), "the only marker is the real call's")

    def test_typescript_with_types_loads(self):
        ts = ("interface Event { name: string }\ntype Reply = { greeting: string; remaining: boolean };\n"
              "enum Kind { A = 'a' }\n"
              "export async function handler(event: Event, ctx: { getRemainingTimeInMillis(): number }): Promise<Reply> {\n"
              "  const n: number = ctx.getRemainingTimeInMillis();\n"
              "  return { greeting: `hi ${event.name} ${Kind.A}`, remaining: n > 0 };\n}\n")
        inst = self.loaded(TS, ts)
        self.assertEqual(inst.invoke("1", {"name": "ts"})["value"], {"greeting": "hi ts a", "remaining": True})

    def test_handler_errors_and_the_instance_keeps_serving(self):
        py = ("def handler(e):\n    if e == 'raise':\n        raise ValueError('bad input')\n"
              "    if e == 'exit':\n        raise SystemExit(3)\n    return 'ok'\n")
        js = ("export async function handler(e) {\n  if (e === 'raise') throw new RangeError('bad input');\n"
              "  if (e === 'string') throw 'plain string';\n  if (e === 'reject') await Promise.reject(new Error('async no'));\n"
              "  return 'ok';\n}\n")
        expectations = {
            PY: [("raise", "ValueError", "bad input"), ("exit", "SystemExit", "3")],
            JS: [("raise", "RangeError", "bad input"), ("string", "string", "plain string"), ("reject", "Error", "async no")],
        }
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for i, (event, kind, message) in enumerate(expectations[runtime_file]):
                    answer = inst.invoke("e%d" % i, event)
                    self.assertEqual(answer["t"], "error", answer)
                    self.assertEqual((answer["error"]["type"], answer["error"]["message"]), (kind, message))
                    if event == "raise":
                        self.assertIn("bad input", answer["error"]["stack"])
                        self.assertIn(runtime_file[1], answer["error"]["stack"])
                    self.assertEqual(inst.invoke("ok%d" % i, "fine")["value"], "ok", "the instance keeps answering")

    def test_an_event_too_deep_for_the_runtime_fails_only_its_call(self):
        # Written as the host writes frames (compact, fields in order). Python's json
        # module stops at its recursion limit: that call is refused and the instance serves
        # on, with one call at a time and with several. Bun reads any depth.
        py = "def handler(e):\n    return 'ok' if e == 'fine' else 'deep'\n"
        js = "export const handler = (e) => (e === 'fine' ? 'ok' : 'deep');"
        depth = 100000
        for runtime_file, source in pairs({PY: py, JS: js}):
            for concurrency in (1, 4):
                with self.subTest(runtime=runtime_file[0], concurrency=concurrency):
                    inst = self.loaded(runtime_file, source, concurrency=concurrency)
                    body = b'{"t":"invoke","id":"deep","event":%s%s,"deadline_ms":%d}' % (
                        b"[" * depth, b"]" * depth, int(time.time() * 1000) + TIMEOUT_MS)
                    inst.sock.sendall(struct.pack(">I", len(body)) + body)
                    answer = inst.frame()
                    self.assertEqual(answer["id"], "deep", answer)
                    if runtime_file == PY:
                        self.assertEqual(answer["t"], "error", answer)
                        self.assertEqual(answer["error"]["type"], "TypeError")
                        self.assertIn("could not be read", answer["error"]["message"])
                        self.assertIn("recursion", answer["error"]["message"])
                    else:
                        self.assertEqual((answer["t"], answer["value"]), ("result", "deep"))
                    inst.pump(lambda: marker("deep") in inst.out[1] and marker("deep") in inst.out[2], "the markers")
                    self.assertEqual(inst.invoke("next", "fine")["value"], "ok", "the instance keeps answering")

    def test_context_fields(self):
        py = ("def handler(e, c):\n    return {'request_id': c.request_id, 'aws_request_id': c.aws_request_id,\n"
              "        'function_name': c.function_name, 'function_version': c.function_version,\n"
              "        'memory_limit_mb': c.memory_limit_mb, 'memory_limit_in_mb': c.memory_limit_in_mb,\n"
              "        'invoked_function_arn': c.invoked_function_arn, 'remaining': c.get_remaining_time_ms()}\n")
        names = {PY: ["request_id", "aws_request_id", "function_name", "function_version", "memory_limit_mb",
                      "memory_limit_in_mb", "invoked_function_arn"]}
        for runtime_file, source in pairs({PY: py}):  # Bun's context: test_bun_contract.py
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for inv_id in ("req-1", "req-2"):  # a fresh context per call
                    value = inst.invoke(inv_id)["value"]
                    remaining = value.pop("remaining")
                    self.assertTrue(0 < remaining <= TIMEOUT_MS, remaining)
                    self.assertIsInstance(remaining, int)
                    arn = "arn:aws:lambda:us-east-1:000000000000:function:greet" if runtime_file == PY else "ignis:function:greet"
                    expected = [inv_id, inv_id, "greet", "4", 128, 128, arn]
                    self.assertEqual(value, dict(zip(names[runtime_file], expected)))

    def test_non_json_return_values_are_type_errors(self):
        py = ("def handler(e):\n    if e == 'set':\n        return {1, 2}\n    if e == 'nan':\n        return float('nan')\n"
              "    if e == 'cycle':\n        d = {}\n        d['d'] = d\n        return d\n    return 'ok'\n")
        js = ("export function handler(e) {\n  if (e === 'set') return 1n;\n  if (e === 'cycle') { const d = {}; d.d = d; return d; }\n"
              "  return 'ok';\n}\n")
        events = {PY: ["set", "nan", "cycle"], JS: ["set", "cycle"]}
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for event in events[runtime_file]:
                    answer = inst.invoke(event, event)
                    self.assertEqual((answer["t"], answer["error"]["type"]), ("error", "TypeError"), answer)
                    self.assertEqual(inst.invoke("after-" + event, "x")["value"], "ok")

    def test_too_large_measures_encoded_bytes(self):
        py = "def handler(e):\n    print('made it')\n    return 'é' * e\n"
        js = "export const handler = (e) => { console.log('made it'); return 'é'.repeat(e); };\n"
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source, max_response=1000)
                self.assertEqual(inst.invoke("fits", 499)["value"], "é" * 499)  # 2 + 998 bytes
                answer = inst.invoke("big", 600)  # 600 characters, 1202 bytes
                self.assertEqual(answer, {"t": "too_large", "id": "big", "size": 1202, "logs": answer["logs"]})
                self.assertEqual(logs(answer), [("stdout", "made it")])
                self.assertEqual(inst.invoke("after", 1)["t"], "result", "still serving")

    def test_lone_surrogates_do_not_break_the_frame(self):
        py = "def handler(e):\n    print('bad \\udcff log')\n    return 'bad \\udcff value'\n"
        js = "export const handler = () => { console.log('bad \\ud800 log'); return 'bad \\ud800 value'; };\n"
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                answer = self.loaded(runtime_file, source).invoke("1")
                self.assertEqual(answer["value"], "bad \ufffd value")
                self.assertEqual(logs(answer), [("stdout", "bad \ufffd log")])


class Logs(Case):
    def test_output_is_captured_per_invocation_in_order(self):
        py = ("import logging, sys\nlogging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s', force=True)\n"
              "def handler(e):\n    print('one', e)\n    sys.stderr.write('two\\n')\n    logging.getLogger('app').warning('three')\n"
              "    print('four\\nfive', flush=True)\n    sys.stdout.write('six ')\n    sys.stdout.buffer.write(b'seven\\n')\n"
              "    print('to stderr', file=sys.stderr)\n    sys.stdout.write('no newline at the end')\n    return 'ok'\n")
        js = ("export function handler(e) {\n  console.log('one', e, { a: [1, 2] });\n  console.error('two');\n"
              "  console.warn('three'); console.info('four\\nfive');\n  process.stdout.write('six ');\n"
              "  process.stdout.write(new TextEncoder().encode('seven\\n'));\n  console.debug('debug');\n"
              "  process.stderr.write('to stderr\\n');\n  console.trace('traced');\n"
              "  process.stdout.write('no newline at the end');\n  return 'ok';\n}\n")
        expected = {
            PY: [("stdout", "one 1"), ("stderr", "two"), ("stderr", "WARNING three"), ("stdout", "four"),
                 ("stdout", "five"), ("stdout", "six seven"), ("stderr", "to stderr"), ("stdout", "no newline at the end")],
            JS: [("stdout", "one 1 { a: [ 1, 2 ] }"), ("stderr", "two"), ("stderr", "three"), ("stdout", "four"),
                 ("stdout", "five"), ("stdout", "six seven"), ("stdout", "debug"), ("stderr", "to stderr"),
                 ("stderr", "Trace: traced"), ("stdout", "no newline at the end")],
        }
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for inv_id in ("a", "b"):
                    before = int(time.time() * 1000)
                    answer = inst.invoke(inv_id, 1)
                    got = logs(answer)
                    if runtime_file == JS:  # keep the trace header, drop its stack frames
                        got = [l for l in got if not l[1].lstrip().startswith("at ")]
                    self.assertEqual(got, expected[runtime_file], "each invocation has only its own logs")
                    for line in answer["logs"]:
                        self.assertIsInstance(line["ts"], int)
                        self.assertTrue(before - 1000 <= line["ts"] <= time.time() * 1000 + 1000, line)
                inst.drain_now()
                self.assertEqual(inst.out[1], marker("a") + marker("b"), "captured output never reaches fd 1")
                self.assertEqual(inst.out[2], marker("a") + marker("b"), "captured output never reaches fd 2")

    def test_log_cap_with_truncation_marker(self):
        py = ("import sys\ndef handler(e):\n    for i in range(100):\n        print('x' * 49)\n"
              "    sys.stdout.write('y' * e)\n    return 'done'\n")
        js = ("export function handler(e) {\n  for (let i = 0; i < 100; i++) process.stdout.write('x'.repeat(49) + '\\n');\n"
              "  process.stdout.write('y'.repeat(e));\n  return 'done';\n}\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source, limit=1000)
                for inv_id, tail in (("lines", 0), ("endless line", 5_000_000)):
                    answer = inst.invoke(inv_id, tail)
                    self.assertEqual(answer["value"], "done")
                    got = logs(answer)
                    self.assertEqual(got[:-1], [("stdout", "x" * 49)] * 20, "whole lines up to the cap")
                    self.assertEqual(got[-1], ("stderr", "[ignis] log output truncated at 1000 bytes"))

    def test_raw_fd_output_and_markers_come_before_the_answer(self):
        py = ("import os\ndef handler(e):\n    os.write(1, b'raw out\\n')\n    os.write(2, b'raw err\\n')\n"
              "    print('captured')\n    os.write(1, b'partial')\n    return e\n")
        js = ("import fs from 'node:fs';\nexport function handler(e) {\n  fs.writeSync(1, 'raw out\\n');\n"
              "  fs.writeSync(2, 'raw err\\n');\n  console.log('captured');\n  fs.writeSync(1, 'partial');\n  return e;\n}\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                for inv_id in ("id-1", "id-2"):
                    start = {fd: len(inst.out[fd]) for fd in (1, 2)}
                    answer = inst.invoke(inv_id, "x")
                    self.assertEqual((answer["value"], logs(answer)), ("x", [("stdout", "captured")]))
                    # Both markers were written before the answer frame: the pipes hold them
                    # already, without waiting.
                    inst.drain_now()
                    self.assertEqual(inst.out[1][start[1]:], b"raw out\npartial" + marker(inv_id))
                    self.assertEqual(inst.out[2][start[2]:], b"raw err\n" + marker(inv_id))

    def test_late_output_of_a_previous_call_is_not_mixed_into_the_next(self):
        py = ("import asyncio\ndone = asyncio.Event()\nasync def late():\n    await asyncio.sleep(0.01)\n"
              "    print('late from the first call')\n    done.set()\n"
              "async def handler(e):\n    if e == 1:\n        handler.task = asyncio.create_task(late())\n        return 'first'\n"
              "    await done.wait()\n    print('second')\n    return 'second'\n")
        js = ("let done;\nconst late = new Promise((r) => (done = r));\nexport async function handler(e) {\n"
              "  if (e === 1) { setTimeout(() => { process.stdout.write('late from the first call\\n'); done(); }, 10); return 'first'; }\n"
              "  await late;\n  console.log('second');\n  return 'second';\n}\n")
        for runtime_file, source in pairs({PY: py, JS: js}):
            with self.sub(runtime_file):
                inst = self.loaded(runtime_file, source)
                self.assertEqual(logs(inst.invoke("1", 1)), [])
                self.assertEqual(logs(inst.invoke("2", 2)), [("stdout", "second")])
                inst.drain_now()
                self.assertEqual(inst.out[1], marker("1") + b"late from the first call\n" + marker("2"), "raw output instead")


if __name__ == "__main__":
    unittest.main()
