"""Ignis instance bootstrap for CPython: loads one user module, then serves invocations
over the socket inherited on --fd, as docs/protocol.md says.

Output of user code through sys.stdout / sys.stderr (print, logging, ...) during an
invocation is captured into its logs. The capture is found through a ContextVar, never a
global, so that concurrent invocations (threads or asyncio tasks of a later version) would
each keep their own logs; event and context are only ever passed as arguments.
"""

# Every instance start pays for these imports, so only modules that CPython has already
# loaded at start-up, or that are nearly free, are imported here. socket, inspect,
# traceback and asyncio cost 5-30 ms each; they are avoided or imported on first need.
import codecs
import contextvars
import importlib.util
import io
import json
import os
import sys
import time
import types
from _thread import allocate_lock

_BOOTSTRAP = os.path.abspath(__file__)

# The capture of the invocation running in the current context; None outside one.
_capture = contextvars.ContextVar("ignis_capture", default=None)

# A str can hold lone surrogates (surrogateescape'd bytes), which UTF-8 cannot encode and
# the host would refuse in a frame: they become U+FFFD, as they do under Bun.
# (The UTF-8 encoder takes a non-ASCII replacement only as bytes.)
codecs.register_error("ignis_fffd", lambda e: ("\ufffd".encode() * (e.end - e.start), e.end))


def _now_ms():
    return time.time_ns() // 1_000_000


class _Capture:
    """The log lines of one invocation, in write order, capped at `limit` bytes of text."""

    def __init__(self, limit, request_id):
        self.limit, self.used, self.lines = limit, 0, []
        self.request_id = request_id  # what log records of this call are attributed to
        # Pieces of the unfinished line of each stream, joined once when the line ends,
        # so that many small writes without a newline do not copy the line over and over.
        self.pending = {"stdout": [], "stderr": []}
        self.pending_len = {"stdout": 0, "stderr": 0}
        self.full = False  # the cap was reached: everything else is dropped
        self.closed = False  # the answer is built: late writers go to the real streams
        # asyncio.to_thread and executors carry the context (so this capture) to threads.
        self.lock = allocate_lock()

    def write(self, stream, text):
        """Takes text written to `stream`; False once the capture is closed."""
        with self.lock:
            if self.closed:
                return False
            if self.full:
                return True
            *done, last = text.split("\n")
            pending = self.pending[stream]
            if done:
                pending.append(done[0])
                done[0] = "".join(pending)
                pending.clear()
                self.pending_len[stream] = 0
                for line in done:
                    self._add(stream, line)
            if last and not self.full:
                pending.append(last)
                self.pending_len[stream] += len(last)
                # A line longer than what is left can never fit (characters <= bytes):
                # cut now rather than hold an endless unterminated line in memory.
                if self.used + self.pending_len[stream] > self.limit:
                    self._truncate()
            return True

    def finish(self):
        """Flushes the trailing partial lines and returns the lines; later writes to this
        capture (work the handler left behind) go to the real streams as raw output."""
        with self.lock:
            for stream, pending in self.pending.items():
                if pending:
                    self._add(stream, "".join(pending))
                    pending.clear()
            self.closed = True
            return self.lines

    def _add(self, stream, line):
        if self.full:
            return
        if line.endswith("\r"):
            line = line[:-1]  # as the host does for raw lines: CRLF output reads the same
        size = len(line) if line.isascii() else len(line.encode("utf-8", "ignis_fffd"))
        if self.used + size > self.limit:
            self._truncate()
            return
        self.used += size
        self.lines.append({"ts": _now_ms(), "stream": stream, "line": line})

    def _truncate(self):
        self.full = True
        for pending in self.pending.values():
            pending.clear()
        line = "[ignis] log output truncated at %d bytes" % self.limit
        self.lines.append({"ts": _now_ms(), "stream": "stderr", "line": line})


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr, installed before user code is imported so that whatever
    holds on to them (logging.StreamHandler, ...) writes through it. Inside an invocation
    it captures; outside (at import, or in a thread without the invocation's context) it
    writes to the real stream, which the host reads as raw output."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name, real):
        self.name, self._stream, self._real = "<%s>" % name, name, real
        self.buffer = _Bytes(self)

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        cap = _capture.get()
        if cap is None or not cap.write(self._stream, text):
            self._real.write(text)
            self._real.flush()
        return len(text)

    def flush(self):
        cap = _capture.get()
        if cap is None or cap.closed:
            self._real.flush()

    def writable(self):
        return True

    def fileno(self):
        # Child processes given sys.stdout write to the real fd: raw output, as they should.
        return self._real.fileno()


class _Bytes:
    """sys.stdout.buffer: bytes written here are decoded and go the way of text."""

    def __init__(self, text):
        self._text = text
        self.flush, self.fileno = text.flush, text.fileno

    def write(self, data):
        self._text.write(bytes(data).decode("utf-8", "replace"))
        return len(data)


# Lambda's logging: the root logger has a handler that writes each record to the logs of the
# call it was made in, with its level, time and request id (Lambda's text format, or one
# JSON object a line when AWS_LAMBDA_LOG_FORMAT is JSON), and the root level is
# AWS_LAMBDA_LOG_LEVEL (INFO when unset). `logging` costs ~9 ms to import, so it is set up
# when user code first imports it, never paid by functions that do not log.

_LEVELS = {"TRACE": 10, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40,
           "FATAL": 50, "CRITICAL": 50}
_streams = {}  # "stdout" / "stderr": the _Stream objects, once main() has made them


def _log_settings():
    """(JSON or not, root level) from the environment; a value that is neither says so on
    stderr (raw output, so it lands in the first call's logs) and the default is used."""
    fmt = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "") or "TEXT"
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "") or "INFO"
    if fmt.upper() not in ("TEXT", "JSON"):
        _warn("AWS_LAMBDA_LOG_FORMAT is %r, not TEXT or JSON: TEXT is used" % fmt)
        fmt = "TEXT"
    if level.upper() not in _LEVELS:
        _warn("AWS_LAMBDA_LOG_LEVEL is %r, not DEBUG, INFO, WARN or ERROR: INFO is used" % level)
        level = "INFO"
    return fmt.upper() == "JSON", _LEVELS[level.upper()]


def _warn(text):
    sys.__stderr__.write("[ignis] %s\n" % text)
    sys.__stderr__.flush()


def _iso_time(created):
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)), int(created * 1000) % 1000)


def _setup_logging(logging):
    """Gives the root logger Lambda's handler (so a later basicConfig() is a no-op, as there)."""
    as_json, level = _log_settings()
    # The attributes every LogRecord has: the others were given with `extra=`.
    standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "aws_request_id"}

    class RequestId(logging.Filter):
        """Gives records `aws_request_id`, as Lambda's filter does (formats may name it)."""

        def filter(self, record):
            cap = _capture.get()
            record.aws_request_id = cap.request_id if cap is not None else ""
            return True

    class TextFormat(logging.Formatter):
        def formatTime(self, record, datefmt=None):
            return _iso_time(record.created)

    class JsonFormat(logging.Formatter):
        def format(self, record):
            message = record.msg if isinstance(record.msg, dict) and not record.args else record.getMessage()
            entry = {"timestamp": _iso_time(record.created), "level": record.levelname, "message": message,
                     "logger": record.name, "requestId": getattr(record, "aws_request_id", "")}
            entry.update((k, v) for k, v in vars(record).items() if k not in standard and not k.startswith("_"))
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                entry["errorType"] = type(exc).__name__
                entry["errorMessage"] = str(exc)
                import traceback

                entry["stackTrace"] = traceback.format_exception(*record.exc_info)
            if record.stack_info:
                entry["stackInfo"] = record.stack_info
            return json.dumps(entry, ensure_ascii=False, default=repr)

    class CallLogs(logging.Handler):
        """Writes a record into its call's capture (through sys.stdout below WARNING,
        sys.stderr from WARNING up), or as raw output when made outside any call."""

        def emit(self, record):
            try:
                text = self.format(record)
                stream = _streams.get("stderr" if record.levelno >= logging.WARNING else "stdout")
                (stream or sys.stderr).write(text + "\n")
            except RecursionError:
                raise
            except Exception:
                self.handleError(record)

    handler = CallLogs()
    handler.addFilter(RequestId())
    if as_json:
        handler.setFormatter(JsonFormat())
    else:
        handler.setFormatter(TextFormat("[%(levelname)s]\t%(asctime)s\t%(aws_request_id)s\t%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


class _LoggingFinder:
    """On sys.meta_path until `logging` is first imported: that import sets it up."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass  # another thread's import got here first
        spec = importlib.util.find_spec("logging")
        if spec is not None and spec.loader is not None:
            spec.loader = _LoggingLoader(spec.loader)
        return spec


class _LoggingLoader:
    """The loader of `logging`, which sets Lambda's handler up once the module has run."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ... as the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _setup_logging(module)


def _hook_logging():
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingFinder())


class _Context:
    """The context of one call, with Ignis's names and all of AWS Lambda's: Lambda handlers
    run as is. What is the same for every call comes from `_Function`."""

    identity = None  # Lambda's Cognito identity: never set for an Ignis call
    client_context = None  # Lambda's mobile client context: likewise

    def __init__(self, request_id, function, deadline_ms):
        self.request_id = self.aws_request_id = request_id
        self.function_name = function.name
        self.function_version = function.version
        self.memory_limit_mb = self.memory_limit_in_mb = function.memory_mb
        self.invoked_function_arn = function.arn
        self.log_group_name = function.log_group
        self.log_stream_name = function.log_stream
        self._deadline_ms = deadline_ms

    def get_remaining_time_ms(self):
        return max(0, int(self._deadline_ms - _now_ms()))

    get_remaining_time_in_millis = get_remaining_time_ms

    def __repr__(self):
        return "<context %s of %s>" % (self.request_id, self.function_name)


class _Function:
    """What every call's context says of the function, read once at load from the
    environment the host set (Lambda's names), the load message's `function` otherwise."""

    def __init__(self, function):
        env = os.environ.get
        self.name = env("AWS_LAMBDA_FUNCTION_NAME") or function["name"]
        self.version = env("AWS_LAMBDA_FUNCTION_VERSION") or str(function["version"])
        memory = env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.memory_mb = int(memory) if memory.isdigit() else int(function["memory_mb"])
        region = env("AWS_REGION") or "us-east-1"
        self.arn = "arn:aws:lambda:%s:000000000000:function:%s" % (region, self.name)
        self.log_group = env("AWS_LAMBDA_LOG_GROUP_NAME") or "/aws/lambda/%s" % self.name
        self.log_stream = env("AWS_LAMBDA_LOG_STREAM_NAME") or "%s/[%s]%s" % (
            time.strftime("%Y/%m/%d", time.gmtime()), self.version, os.urandom(16).hex())


# A finite Decimal is written as the number it holds, as Lambda's runtime writes it: it goes
# through json as this prefix and its text, and the quoted string is then unwrapped.
_DECIMAL = "\0ignis-decimal-%s:" % os.urandom(8).hex()
_DECIMAL_JSON = json.dumps(_DECIMAL)[:-1]  # '"\\u0000ignis-decimal-...:'


def _to_json(value):
    """The handler's return value as JSON text; TypeError / ValueError when it has none."""
    seen = []

    def default(obj):
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(obj, decimal.Decimal) and obj.is_finite():
            seen.append(True)
            return _DECIMAL + str(obj)
        raise TypeError("not JSON")

    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=default)
    if seen:
        import re

        text = re.sub(re.escape(_DECIMAL_JSON) + r'([-+.0-9Ee]+)"', r"\1", text)
    return text


def _why_not_json(value, exc):
    """Says what the handler returned and why JSON cannot hold it (the first part that
    cannot be, and where it is in the value)."""
    try:
        found = _first_not_json(value, "", [])
    except RecursionError:
        return "the handler returned %s nested too deeply to encode" % _what(value)
    if found is None:
        return "the handler returned %s that could not be encoded (%s)" % (_what(value), exc)
    path, obj, why = found
    if not path:
        return "the handler returned %s (%s)" % (_what(obj), why)
    return "the handler returned %s whose %s is %s (%s)" % (_what(value), path, _what(obj), why)


def _first_not_json(obj, path, parents):
    """(path, part, why) for the first part of obj that JSON cannot hold, else None."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return None
    if isinstance(obj, float):
        return None if obj - obj == 0 else (path, obj, "JSON has no NaN or Infinity")
    if isinstance(obj, (dict, list, tuple)):
        if any(p is obj for p in parents):
            return (path, obj, "it contains itself (a circular reference)")
        parents.append(obj)
        if isinstance(obj, dict):
            for key, item in obj.items():
                if key is not None and not isinstance(key, (str, int, float, bool)):
                    return (("%s key %r" % (path, key)).lstrip(), key,
                            "JSON object keys are strings (str, int, float, bool or None)")
                found = _first_not_json(item, "%s[%r]" % (path, key), parents)
                if found is not None:
                    return found
        else:
            for i, item in enumerate(obj):
                found = _first_not_json(item, "%s[%d]" % (path, i), parents)
                if found is not None:
                    return found
        parents.pop()
        return None
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return None if obj.is_finite() else (path, obj, "JSON has no NaN or Infinity")
    return (path, obj, _why_no_form(obj))


def _why_no_form(obj):
    kind = type(obj).__name__
    if isinstance(obj, (set, frozenset)):
        return "JSON has no sets: return a list"
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return "JSON has no bytes: decode them to a str, or base64-encode them"
    if isinstance(obj, type):
        return "a class is not a value: return a dict of the data"
    if kind in ("generator", "async_generator", "coroutine"):
        return "it was never run to the end: return a list (or the awaited result) instead"
    if callable(obj) and hasattr(obj, "__name__"):
        return "a function is not a value: call it, or return what it computes"
    if kind in ("datetime", "date", "time", "timedelta") and type(obj).__module__ == "datetime":
        return "JSON has no dates, and Lambda refuses them too: return .isoformat()"
    return "it has no JSON form: return a dict (dataclasses.asdict(), vars(), ...) or a str"


def _what(obj):
    """`a set`, `a function f`, `an instance of app.Point`, ... for messages."""
    t = type(obj)
    if isinstance(obj, type):
        return "the class %s" % obj.__qualname__
    name = t.__qualname__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__qualname__)
    if callable(obj) and hasattr(obj, "__name__") and t.__module__ == "builtins":
        return "the %s %s" % ("function" if name == "function" else name, getattr(obj, "__qualname__", obj.__name__))
    if isinstance(obj, float) or (t.__module__ == "decimal" and t.__name__ == "Decimal"):
        return "the %s %s" % (name, obj)
    if t.__module__ == "builtins":
        return "%s %s%s" % ("an" if name[0] in "aeiou" else "a", name, " object" if name == "bytes" else "")
    if t.__module__ == "datetime":
        return "a %s" % name
    return "an instance of %s" % name


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# How the host starts every invoke frame (serde writes fields in declaration order; ids
# are UUIDs, never escaped): enough to answer a frame that cannot be decoded.
_INVOKE_HEAD = b'{"t":"invoke","id":"'


def _read_frame(fd):
    head = _read_exact(fd, 4)
    body = head and _read_exact(fd, int.from_bytes(head, "big"))
    if body is None:
        return None
    try:
        return json.loads(body)
    except (RecursionError, ValueError) as exc:
        # An event nested deeper than Python's recursion limit (RecursionError), or any
        # other frame json cannot read: that call fails, the instance serves on.
        return {"t": "unreadable", "id": _invoke_id(body), "error": exc}


def _invoke_id(body):
    """The id of an invoke frame read as bytes, or None when it is not one."""
    if not body.startswith(_INVOKE_HEAD):
        return None
    end = body.find(b'"', len(_INVOKE_HEAD))
    return None if end < 0 else body[len(_INVOKE_HEAD) : end].decode("utf-8", "replace")


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            # fd 1 / fd 2 may have been made non-blocking (by the host or by user code).
            import select

            select.select([], [fd], [])


def _send(fd, msg, value=None):
    body = json.dumps(msg, ensure_ascii=False).encode("utf-8", "ignis_fffd")
    if value is not None:
        # The value is already encoded (its size was checked): splice it in as is.
        body = b"".join([body[:-1], b', "value": ', value, b"}"])
    _write_all(fd, len(body).to_bytes(4, "big") + body)


# A base64 chunk frame stays well under the host's 8 MiB frame limit.
_CHUNK_BYTES = 3 << 20
_HEAD_KEYS = ("statusCode", "headers", "cookies")


def _is_stream(result):
    """Whether a handler's answer is a streamed one: a generator or an async generator."""
    return isinstance(result, (types.GeneratorType, types.AsyncGeneratorType))


class _Streamer:
    """Sends one call's streamed answer as its generator yields: a head first (the first
    item when it is a dict with statusCode, else 200 application/octet-stream), then one
    chunk frame per str / bytes item, at once. Ignis's own extension of Lambda's contract."""

    def __init__(self, send, inv_id):
        self.send, self.id = send, inv_id
        self.head_sent = False

    def drain(self, gen):
        try:
            for item in gen:
                self.item(item)
        finally:
            gen.close()
        self.end()

    async def drain_async(self, gen):
        try:
            async for item in gen:
                self.item(item)
        finally:
            await gen.aclose()
        self.end()

    def item(self, item):
        if not self.head_sent and isinstance(item, dict) and "statusCode" in item:
            return self.head(item)
        if isinstance(item, str):
            data = item.encode("utf-8", "ignis_fffd")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            data = bytes(item)
        else:
            raise TypeError("a streaming handler yields str or bytes (first, optionally, a dict with "
                            "statusCode, headers, cookies); it yielded %s" % _what(item))
        if not self.head_sent:
            self.head({"statusCode": 200})
        import binascii  # an extension module: loaded by streaming functions only

        for off in range(0, len(data), _CHUNK_BYTES):
            chunk = binascii.b2a_base64(data[off : off + _CHUNK_BYTES], newline=False).decode("ascii")
            self.send({"t": "chunk", "id": self.id, "data": chunk})

    def head(self, head):
        unknown = [k for k in head if k not in _HEAD_KEYS]
        if unknown:
            raise TypeError("the stream's head has an unknown key %r (statusCode, headers, cookies); "
                            "yield the body after the head" % (unknown[0],))
        status = head["statusCode"]
        if type(status) is not int or not 200 <= status <= 599:
            raise TypeError("the stream's head statusCode must be an int from 200 to 599, not %r" % (status,))
        headers = head.get("headers") or {}
        if not isinstance(headers, dict):
            raise TypeError("the stream's head headers must be a dict, not %s" % _what(headers))
        out = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError("the stream's head header %r must map a str to a str, not %s" % (name, _what(value)))
            out[name.lower()] = str(value)
        out.setdefault("content-type", "application/octet-stream")
        cookies = head.get("cookies") or []
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise TypeError("the stream's head cookies must be a list of str")
        frame = {"t": "head", "id": self.id, "status": status, "headers": out}
        if cookies:
            frame["cookies"] = cookies
        self.head_sent = True
        self.send(frame)

    def end(self):
        # A generator that yielded nothing still streamed: an empty 200 body.
        if not self.head_sent:
            self.head({"statusCode": 200})


def _is_machinery(filename):
    if filename == _BOOTSTRAP or filename.startswith("<frozen importlib"):
        return True
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and filename.startswith(os.path.dirname(asyncio.__file__))


def _describe(exc):
    """type / message / stack of an exception, the stack starting at the user's code."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the instance down
        message = "<unprintable %s>" % type(exc).__name__
    stack = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"type": type(exc).__name__, "message": message, "stack": stack}


def _user_line(exc, path):
    """The line of the user's file to blame for an exception raised at import."""
    if isinstance(exc, SyntaxError) and exc.filename == path:
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:  # the last match is the deepest frame
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _takes_context(fn):
    """Whether fn is called as fn(event, context) rather than fn(event): it is unless it
    takes exactly one positional parameter."""
    code = getattr(fn, "__code__", None)
    if code is not None and not hasattr(fn, "__wrapped__"):
        # Plain functions and methods, without the cost of importing inspect.
        count = code.co_argcount - (1 if getattr(fn, "__self__", None) is not None else 0)
        return count != 1 or bool(code.co_flags & 0x04)  # CO_VARARGS
    import inspect  # decorated functions (follows __wrapped__), classes, partials, ...

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) != 1


def _load(msg):
    """Imports the user's module; returns (handler, None) or (None, load error)."""
    os.environ.update(msg["env"])
    _hook_logging()  # after the env, which may set the log format and level
    os.chdir(msg["dir"])
    sys.path.insert(0, msg["dir"])
    opt = msg.get("opt")
    if opt:
        # Lambda's layer layout: after the function's own code, before everything else.
        version = "python%d.%d" % sys.version_info[:2]
        for i, p in enumerate([os.path.join(opt, "python"),
                               os.path.join(opt, "python", "lib", version, "site-packages")]):
            sys.path.insert(1 + i, p)
    path = os.path.join(msg["dir"], msg["file"])
    name = os.path.splitext(os.path.basename(msg["file"]))[0]
    code = msg["code"]
    module, error = _import_package(msg, path) if code is None else _import_file(name, code, path)
    if error is not None:
        return None, error
    fn = getattr(module, msg["handler"], None)
    if not callable(fn):
        message = "handler '%s' is not a function in %s" % (msg["handler"], msg["file"])
        return None, {"type": "HandlerNotFound", "message": message, "stack": "", "line": None}
    return fn, None


def _import_file(name, code, path):
    """Runs one file's code, given in the message, as the module `name`; returns (module,
    None) or (None, load error)."""
    try:
        # The code comes in the message, never from a disk the function could write to; it
        # runs under its would-be path, and linecache gives tracebacks its lines.
        import linecache

        linecache.cache[path] = (len(code), None, code.splitlines(True), path)
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, None, origin=path))
        module.__file__ = path
        sys.modules[name] = module  # as a normal import would: pickle, dataclasses need it
        exec(compile(code, path, "exec", dont_inherit=True), module.__dict__)
    except BaseException as exc:  # SystemExit or KeyboardInterrupt at import fail the load too
        error = _describe(exc)
        error["line"] = _user_line(exc, path)
        return None, error
    return module, None


def _import_package(msg, path):
    """Imports the handler's module from a package of files at msg["dir"] (on sys.path, as
    Lambda's task root): `hello_world/app.py` is the module `hello_world.app`, a package's
    `__init__.py` the package itself, so sibling modules and subpackages import as usual."""
    module_path = os.path.splitext(msg["file"])[0]
    if module_path.endswith("/__init__"):
        module_path = module_path[: -len("/__init__")]
    name = module_path.replace("/", ".")
    try:
        importlib.invalidate_caches()  # the folder was empty until the package was shown
        module = importlib.import_module(name)
    except BaseException as exc:  # SystemExit or KeyboardInterrupt at import fail the load too
        error = _describe(exc)
        error["line"] = _user_line(exc, path)
        return None, error
    return module, None


def _is_coroutine_function(fn):
    code = getattr(fn, "__code__", None)
    if code is not None and not hasattr(fn, "__wrapped__"):
        return bool(code.co_flags & 0x80)  # CO_COROUTINE
    import inspect

    return inspect.iscoroutinefunction(inspect.unwrap(fn)) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


class _Headers(dict):
    """Header names looked up in any case, as Flask's headers in OpenFaaS's template."""

    def __init__(self, items):
        super().__init__((str(k).lower(), v) for k, v in (items or {}).items())

    def __getitem__(self, key):
        return super().__getitem__(str(key).lower())

    def __contains__(self, key):
        return super().__contains__(str(key).lower())

    def get(self, key, default=None):
        return super().get(str(key).lower(), default)


class _OpenFaasEvent:
    """OpenFaaS python3-http's event (`body` bytes, `headers`, `method`, `query`, `path`),
    made from a function URL event (payload 2.0 or 1.0) or, for a direct invoke, a POST of
    the event as JSON."""

    def __init__(self, event):
        http = event.get("requestContext", {}).get("http") if isinstance(event, dict) else None
        if isinstance(http, dict):
            self.method, self.path = http.get("method", "GET"), event.get("rawPath", "/")
        elif isinstance(event, dict) and "httpMethod" in event:
            self.method, self.path = event["httpMethod"], event.get("path", "/")
        else:
            self.method, self.path = "POST", "/"
            self.headers = _Headers({"content-type": "application/json"})
            self.query = {}
            self.body = json.dumps(event).encode("utf-8")
            return
        self.headers = _Headers(event.get("headers"))
        self.query = dict(event.get("queryStringParameters") or {})
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            import base64

            self.body = base64.b64decode(body)
        else:
            self.body = body.encode("utf-8")


def _openfaas_answer(res):
    """OpenFaaS python3-http's answer (`{"statusCode", "headers", "body"}`, the template's
    rules) in the shape Lambda's answers take."""
    if hasattr(type(res), "__await__"):
        raise TypeError("handler_style openfaas handlers are plain functions, not coroutines")
    if res is None:
        return {"statusCode": 200, "body": ""}
    if not isinstance(res, dict):
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": str(res)}
    headers = {str(k): str(v) for k, v in (res.get("headers") or {}).items()}
    body = res.get("body", "")
    if not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = "application/json" if isinstance(body, dict) else "text/plain"
    status = res.get("statusCode", 200)
    if isinstance(body, (bytes, bytearray)):
        import base64

        return {"statusCode": status, "headers": headers,
                "body": base64.b64encode(bytes(body)).decode("ascii"), "isBase64Encoded": True}
    if isinstance(body, dict):
        body = json.dumps(body)
    return {"statusCode": status, "headers": headers, "body": "" if body is None else str(body)}


class _Instance:
    def __init__(self, fd, marker, handler, load):
        self.fd = fd
        self.marker = marker
        self.handler = handler
        self.with_context = _takes_context(handler)
        self.function = _Function(load["function"])
        self.log_limit = load["log_limit_bytes"]
        self.max_response = load["max_response_bytes"]
        self.openfaas = load.get("style") == "openfaas"
        self.loop = None  # one event loop for the life of the instance, made on first need

    def invoke(self, msg):
        cap = _Capture(self.log_limit, msg["id"])
        # Each call runs in its own copy of the context: the capture, and any ContextVar
        # the handler sets, belong to this call only.
        self._answer(cap, msg, contextvars.copy_context().run(self._call, cap, msg))

    def refuse(self, inv_id, exc):
        """Fails the call whose frame could not be decoded."""
        error = TypeError("the event could not be read by Python's json module: %s" % exc)
        answer = {"t": "error", "id": inv_id, "error": _describe(error), "logs": []}
        self._deliver(inv_id, answer, None)

    def _handle(self, msg):
        """Calls the handler with the event (and a context when it takes one)."""
        if self.openfaas:
            context = _Context(msg["id"], self.function, msg["deadline_ms"])
            context.hostname = os.environ.get("HOSTNAME", "localhost")
            return _openfaas_answer(self.handler(_OpenFaasEvent(msg["event"]), context))
        if self.with_context:
            return self.handler(msg["event"], _Context(msg["id"], self.function, msg["deadline_ms"]))
        return self.handler(msg["event"])

    def _call(self, cap, msg):
        """Runs the handler; returns the answer without logs, and the encoded value."""
        _capture.set(cap)
        try:
            result = self._handle(msg)
            if hasattr(type(result), "__await__"):
                # The task the loop wraps the coroutine in copies this context: logs of
                # the coroutine (and of tasks it starts) land in this capture.
                result = self._loop().run_until_complete(result)
            if _is_stream(result):
                streamer = _Streamer(self._send_now, msg["id"])
                if isinstance(result, types.AsyncGeneratorType):
                    self._loop().run_until_complete(streamer.drain_async(result))
                else:
                    streamer.drain(result)
                return {"t": "result", "id": msg["id"]}, b"null"
        except BaseException as exc:  # SystemExit in a handler fails the call, not the instance
            return {"t": "error", "id": msg["id"], "error": _describe(exc)}, None
        return self._encode(msg["id"], result)

    def _answer(self, cap, msg, answer_value):
        """Sends a call's answer with its logs, after its end markers."""
        answer, value = answer_value
        answer["logs"] = cap.finish()
        self._deliver(msg["id"], answer, value)

    def _deliver(self, inv_id, answer, value):
        self._end_markers(inv_id)
        _send(self.fd, answer, value)

    def _send_now(self, frame):
        """A head or chunk frame of a streamed answer, sent as soon as it is yielded."""
        _send(self.fd, frame)

    def _encode(self, inv_id, result):
        """The answer for a handler's return value, and the value encoded."""
        try:
            text = _to_json(result)
        except (TypeError, ValueError, RecursionError) as exc:
            message = "the handler's return value is not JSON: %s" % _why_not_json(result, exc)
            return {"t": "error", "id": inv_id, "error": _describe(TypeError(message))}, None
        value = text.encode("utf-8", "ignis_fffd")
        if len(value) > self.max_response:
            return {"t": "too_large", "id": inv_id, "size": len(value)}, None
        return {"t": "result", "id": inv_id}, value

    def _loop(self):
        if self.loop is None:
            import asyncio  # ~30 ms: paid only by functions with async handlers

            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
        return self.loop

    def _end_markers(self, inv_id):
        """Everything written to fd 1 / fd 2 so far belongs to this invocation: flush what
        Python still buffers, then mark the end on both, before the answer is sent."""
        _flush_real()
        data = ("\0ignis-end:%s:%s\n" % (self.marker, inv_id)).encode("utf-8", "ignis_fffd")
        for fd in (1, 2):
            try:
                _write_all(fd, data)
            except OSError:
                pass  # a closed stdout / stderr has nothing left to deliver either


class _ConcurrentInstance(_Instance):
    """Serves up to `concurrency` invocations at once (the host never sends more). Async
    handlers run as tasks of one event loop on a thread of its own; other handlers run on
    a pool of threads. The main thread only reads frames. Each call keeps its own capture
    (a ContextVar, carried into its task or thread), and each answer is written whole,
    after its end markers, under one lock."""

    def __init__(self, fd, marker, handler, load):
        super().__init__(fd, marker, handler, load)
        import threading

        self.send_lock = threading.Lock()
        self.loop_lock = threading.Lock()
        self.is_async = _is_coroutine_function(handler)
        self.loop_ready = threading.Event()
        self.pool = None
        if self.is_async:
            self._start_loop_thread()
        else:
            from concurrent.futures import ThreadPoolExecutor

            # Threads are made on demand, up to one per call in flight.
            self.pool = ThreadPoolExecutor(int(load["concurrency"]), thread_name_prefix="ignis-call")

    def _start_loop_thread(self):
        import asyncio
        import threading

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop_ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="ignis-loop", daemon=True).start()
        self.loop_ready.wait()

    def invoke(self, msg):
        if self.is_async:
            self.loop.call_soon_threadsafe(self._begin_task, msg)
        else:
            self.pool.submit(self._run_in_thread, msg)

    def _begin_task(self, msg):
        # In the loop thread: the task runs in a context of its own.
        self.loop.create_task(self._run_task(msg), context=contextvars.copy_context())

    async def _run_task(self, msg):
        cap = _Capture(self.log_limit, msg["id"])
        _capture.set(cap)
        try:
            result = self._handle(msg)
            if hasattr(type(result), "__await__"):
                result = await result
            if _is_stream(result):
                streamer = _Streamer(self._send_now, msg["id"])
                if isinstance(result, types.AsyncGeneratorType):
                    await streamer.drain_async(result)
                else:
                    streamer.drain(result)  # a sync generator from an async handler blocks the loop
                answer = {"t": "result", "id": msg["id"]}, b"null"
            else:
                answer = self._encode(msg["id"], result)
        except BaseException as exc:
            answer = {"t": "error", "id": msg["id"], "error": _describe(exc)}, None
        self._answer(cap, msg, answer)

    def _run_in_thread(self, msg):
        cap = _Capture(self.log_limit, msg["id"])
        answer = contextvars.copy_context().run(self._call, cap, msg)
        self._answer(cap, msg, answer)

    def _loop(self):
        # A sync handler returned an awaitable: it runs on the shared loop thread while
        # this call's thread waits for it.
        if self.loop is None:
            with self.loop_lock:
                if self.loop is None:
                    self._start_loop_thread()
        return _LoopProxy(self.loop)

    def _deliver(self, inv_id, answer, value):
        # Markers and frame of one call are never interleaved with another call's.
        with self.send_lock:
            super()._deliver(inv_id, answer, value)

    def _send_now(self, frame):
        with self.send_lock:
            super()._send_now(frame)


class _LoopProxy:
    """What `_Instance._call` expects of a loop, backed by a loop running on another thread."""

    def __init__(self, loop):
        self.loop = loop

    def run_until_complete(self, awaitable):
        import asyncio

        async def wrap():
            return await awaitable

        # The task copies this thread's context: the call's capture goes with it.
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()


def _flush_real():
    for real in (sys.__stdout__, sys.__stderr__):
        try:
            real.flush()
        except (AttributeError, OSError, ValueError):
            pass  # None, or closed by user code


def _exit():
    _flush_real()
    # os._exit: threads or atexit hooks left by user code must not keep the instance
    # alive after the host hung up.
    os._exit(0)


# What handlers commonly do, so that the compiler paths a real module takes have run once.
_WARM_MODULE = '''
import json

class Box:
    def __init__(self, v):
        self.v = v

def handler(event, context):
    name = (event or {}).get("name", "World")
    items = [{"x": x, "i": i} for i, x in enumerate(event.get("items", [])) if i >= 0]
    try:
        parsed = json.loads(f'{{"name": "{name}"}}')
    except ValueError as e:
        parsed = {"error": str(e)}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"Hello, {parsed.get('name')}!", "n": len(items), "box": Box(name).v}),
    }
'''


def _warm_up():
    """Runs the load and call paths once on a throwaway module, so that the first real load
    does not pay for their first use (lazy imports such as linecache, the compiler's first
    run): a microvm snapshot's template (`--snapshot`) does it before its hello, so that
    every guest restored from the snapshot starts with it done, and a restored guest that
    waits in the pool runs it again when the host sends `warm` (an emulator's translations
    are not part of a snapshot). (Process instances do not:
    the modules it leaves loaded made warm calls a little slower in the benchmark.)"""
    # What a load does before the import: the environment, the working directory.
    os.environ["IGNIS_WARM"] = "1"
    del os.environ["IGNIS_WARM"]
    os.chdir(os.getcwd())
    path = "/tmp/_ignis_warm.py"
    module, _ = _import_file("_ignis_warm", _WARM_MODULE, path)
    try:
        cap = _Capture(1024, "warm")
        token = _capture.set(cap)
        try:
            if module is not None:
                _to_json(module.handler({"name": "warm", "items": [1, 2.5, "x", None, True]}, None))
            print("warm")
        finally:
            _capture.reset(token)
        cap.finish()
    finally:
        sys.modules.pop("_ignis_warm", None)
        import linecache

        linecache.cache.pop(path, None)


def main():
    args = sys.argv[1:]
    fd = int(args[args.index("--fd") + 1])
    marker = args[args.index("--marker") + 1]
    # Started with -S (no `site`, whose .pth hooks may cost more than CPython's own start):
    # the host names the site-packages directories, which go where `site` would put them.
    sys.path.extend(args[i + 1] for i, a in enumerate(args) if a == "--path")
    # Frames are read and written whole; the socket may arrive non-blocking.
    os.set_blocking(fd, True)
    sys.stdout = _streams["stdout"] = _Stream("stdout", sys.__stdout__)
    sys.stderr = _streams["stderr"] = _Stream("stderr", sys.__stderr__)
    version = "%d.%d.%d" % sys.version_info[:3]
    if "--snapshot" in args:
        _warm_up()
    _send(fd, {"t": "hello", "protocol": 1, "runtime": "python", "version": version})

    load = _read_frame(fd)
    while load is not None and load.get("t") == "warm":
        # A restored microvm guest, warmed ahead of its load (see `_warm_up`).
        _warm_up()
        _send(fd, {"t": "warmed"})
        load = _read_frame(fd)
    if load is None:
        _exit()
    handler, error = _load(load)
    if error is not None:
        _send(fd, {"t": "load_error", "error": error})
        while _read_frame(fd) is not None:
            pass  # nothing to serve; wait for the host to hang up
        _exit()
    _send(fd, {"t": "loaded"})
    concurrent = int(load.get("concurrency", 1)) > 1
    instance = (_ConcurrentInstance if concurrent else _Instance)(fd, marker, handler, load)
    while True:
        msg = _read_frame(fd)
        if msg is None:
            _exit()
        if msg.get("t") == "invoke":
            instance.invoke(msg)
        elif msg.get("t") == "unreadable" and msg["id"] is not None:
            instance.refuse(msg["id"], msg["error"])


if __name__ == "__main__":
    main()
