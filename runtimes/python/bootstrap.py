"""Ignis instance bootstrap for CPython: loads one user module, then serves invocations.

Speaks the host protocol of docs/protocol.md over the socket on the fd given by --fd.
Output written through sys.stdout / sys.stderr during an invocation is captured into that
invocation's logs (per call, through a ContextVar, never a global), and never reaches fd 1.
"""

import contextvars
import importlib.util
import inspect
import io
import json
import os
import socket
import struct
import sys
import time
import traceback

_current = contextvars.ContextVar("ignis_invocation", default=None)


class _Capture:
    """The logs of one invocation: lines with timestamps, capped in bytes."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self.lines = []
        self.partial = {"stdout": "", "stderr": ""}
        self.truncated = False

    def write(self, stream, text):
        buf = self.partial[stream] + text
        *complete, rest = buf.split("\n")
        self.partial[stream] = rest
        for line in complete:
            self._add(stream, line)

    def flush_partial(self):
        for stream in ("stdout", "stderr"):
            if self.partial[stream]:
                self._add(stream, self.partial[stream])
                self.partial[stream] = ""

    def _add(self, stream, line):
        if self.truncated:
            return
        size = len(line.encode("utf-8", "replace"))
        if self.used + size > self.limit:
            self.truncated = True
            line = "[ignis] log output truncated at %d bytes" % self.limit
            stream = "stderr"
        else:
            self.used += size
        self.lines.append({"ts": int(time.time() * 1000), "stream": stream, "line": line})


class _Stream(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: inside an invocation it captures, outside it
    writes to the real stream (output at import goes to the host as raw output)."""

    def __init__(self, name, real):
        self._name = name
        self._real = real

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        cap = _current.get()
        if cap is None:
            self._real.write(text)
            self._real.flush()
        else:
            cap.write(self._name, text)
        return len(text)

    def flush(self):
        if _current.get() is None:
            self._real.flush()

    def writable(self):
        return True

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"

    def fileno(self):
        return self._real.fileno()


class _Context:
    """The context object handed to handlers, with Ignis and AWS Lambda names."""

    def __init__(self, request_id, fn, deadline_ms):
        self.request_id = self.aws_request_id = request_id
        self.function_name = fn["name"]
        self.function_version = str(fn["version"])
        self.memory_limit_mb = self.memory_limit_in_mb = fn["memory_mb"]
        self.invoked_function_arn = "ignis:function:%s" % fn["name"]
        self._deadline_ms = deadline_ms

    def get_remaining_time_ms(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return "<Context request_id=%s function=%s>" % (self.request_id, self.function_name)


class _Channel:
    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.rfile = self.sock.makefile("rb")

    def read(self):
        header = self.rfile.read(4)
        if len(header) < 4:
            return None
        (size,) = struct.unpack(">I", header)
        body = self.rfile.read(size)
        if len(body) < size:
            return None
        return json.loads(body)

    def send(self, msg, value_json=None):
        text = json.dumps(msg, ensure_ascii=False, allow_nan=False)
        if value_json is not None:
            # The value is already encoded (its size was checked): splice it in rather
            # than encode it a second time.
            text = text[:-1] + ', "value": ' + value_json + "}"
        body = text.encode("utf-8")
        self.sock.sendall(struct.pack(">I", len(body)) + body)


def _error(exc, user_file=None):
    err = {
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    if user_file is not None:
        line = None
        if isinstance(exc, SyntaxError) and exc.filename == user_file:
            line = exc.lineno
        else:
            for frame in traceback.extract_tb(exc.__traceback__):
                if frame.filename == user_file:
                    line = frame.lineno
        err["line"] = line
    return err


def _load(msg):
    os.environ.update(msg["env"])
    os.chdir(msg["dir"])
    sys.path.insert(0, msg["dir"])
    path = os.path.join(msg["dir"], msg["file"])
    name = os.path.splitext(msg["file"])[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: B036 - a SystemExit at import is a load error too
        return None, _error(exc, path)
    fn = getattr(module, msg["handler"], None)
    if not callable(fn):
        message = "handler %r is not a function in %s" % (msg["handler"], msg["file"])
        return None, {"type": "HandlerNotFound", "message": message, "stack": "", "line": None}
    return fn, None


def _wants_context(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    return varargs or len(positional) >= 2


def _end_markers(marker, inv_id):
    """Flush the real streams, then mark the end of this invocation's raw output on fd 1
    and fd 2, so the host knows it has every byte written before the answer."""
    for real in (sys.__stdout__, sys.__stderr__):
        try:
            real.flush()
        except (OSError, ValueError):
            pass
    data = ("\0ignis-end:%s:%s\n" % (marker, inv_id)).encode()
    for fd in (1, 2):
        try:
            os.write(fd, data)
        except OSError:
            pass


def main():
    args = sys.argv[1:]
    fd = int(args[args.index("--fd") + 1])
    marker = args[args.index("--marker") + 1]
    chan = _Channel(fd)
    sys.stdout = _Stream("stdout", sys.__stdout__)
    sys.stderr = _Stream("stderr", sys.__stderr__)
    chan.send({"t": "hello", "protocol": 1, "runtime": "python", "version": "%d.%d.%d" % sys.version_info[:3]})

    load = chan.read()
    if load is None:
        return
    handler, err = _load(load)
    if err is not None:
        chan.send({"t": "load_error", "error": err})
        return
    chan.send({"t": "loaded"})
    with_context = _wants_context(handler)
    fn_info = load["function"]
    log_limit = load["log_limit_bytes"]
    max_response = load["max_response_bytes"]
    loop = None

    while True:
        msg = chan.read()
        if msg is None:
            return
        inv_id = msg["id"]
        cap = _Capture(log_limit)
        token = _current.set(cap)
        answer = None
        value_json = None
        try:
            ctx = _Context(inv_id, fn_info, msg["deadline_ms"])
            result = handler(msg["event"], ctx) if with_context else handler(msg["event"])
            if inspect.isawaitable(result):
                if loop is None:
                    import asyncio

                    loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(loop)
                result = loop.run_until_complete(result)
            try:
                encoded = json.dumps(result, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                answer = {"t": "error", "id": inv_id, "error": _error(TypeError("the return value is not JSON: %s" % exc))}
            else:
                size = len(encoded.encode("utf-8"))
                if size > max_response:
                    answer = {"t": "too_large", "id": inv_id, "size": size}
                else:
                    answer = {"t": "result", "id": inv_id}
                    value_json = encoded
        except BaseException as exc:  # noqa: B036 - SystemExit from a handler fails only the call
            if isinstance(exc, KeyboardInterrupt):
                raise
            answer = {"t": "error", "id": inv_id, "error": _error(exc)}
        finally:
            _current.reset(token)
        cap.flush_partial()
        answer["logs"] = cap.lines
        _end_markers(marker, inv_id)
        chan.send(answer, value_json)


if __name__ == "__main__":
    main()
