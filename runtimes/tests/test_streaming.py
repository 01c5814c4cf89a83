"""Streamed answers in both bootstraps, against real CPython and real Bun.

`head` and `chunk` frames before a call's final frame (docs/protocol.md, "Streamed
answers"): Lambda's awslambda.streamifyResponse and HttpResponseStream.from in Bun, a
Response with a streamed body, and generator handlers in Python. Run with the other
protocol tests:  python3 -m unittest discover -s runtimes/tests -v
"""

import base64

from test_bootstraps import JS, PY, TS, Case

FINAL = ("result", "error", "too_large")


def frames_until_final(inst, inv_id, seen=None):
    """The frames of call `inv_id` up to and including its final one; frames of other calls
    go to `seen` (a dict of id -> frames)."""
    out = []
    while True:
        frame = inst.frame()
        if frame.get("id") != inv_id:
            assert seen is not None, "a frame of another call: %r" % frame
            seen.setdefault(frame.get("id"), []).append(frame)
            continue
        out.append(frame)
        if frame["t"] in FINAL:
            return out


def released(inst, others):
    """The frames of the releasing call, read to its final one when the released call's
    final frame came first (the two end in either order)."""
    frames = others.get("release", [])
    if not frames or frames[-1]["t"] not in FINAL:
        frames += frames_until_final(inst, "release")
    return frames


def shape(frames):
    """Each frame as a short tuple: ("head", status, headers, cookies), ("chunk", bytes),
    ("result", value) or ("error", type, message)."""
    out = []
    for f in frames:
        if f["t"] == "head":
            out.append(("head", f["status"], f.get("headers"), f.get("cookies")))
        elif f["t"] == "chunk":
            out.append(("chunk", base64.b64decode(f["data"], validate=True)))
        elif f["t"] == "result":
            out.append(("result", f["value"]))
        else:
            out.append(("error", f["error"]["type"], f["error"]["message"]))
    return out


def body(shaped):
    """The bytes of the chunks of shaped frames."""
    return b"".join(f[1] for f in shaped if f[0] == "chunk")


OCTETS = {"content-type": "application/octet-stream"}


class BunStreams(Case):
    def test_head_then_chunks_in_order_then_a_null_result(self):
        ts = """
export const handler = awslambda.streamifyResponse(async (event: any, responseStream: any, context: any) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201, headers: { "Content-Type": "text/plain", "x-n": 7 }, cookies: ["a=1"] });
  console.log("streaming for", context.awsRequestId);
  stream.write("one ");
  stream.write("");
  stream.write(Buffer.from("two "));
  stream.write(new Uint8Array([0xff, 0x00]));
  stream.end();
  return { ignored: true };
});
"""
        inst = self.loaded(TS, ts)
        inst.send_invoke("s1", {})
        frames = frames_until_final(inst, "s1")
        self.assertEqual(shape(frames), [
            ("head", 201, {"content-type": "text/plain", "x-n": "7"}, ["a=1"]),
            ("chunk", b"one "), ("chunk", b"two "), ("chunk", b"\xff\x00"), ("result", None),
        ])
        self.assertTrue(frames[-1]["logs"][0]["line"].endswith("streaming for s1"), frames[-1]["logs"])
        # The instance goes on with ordinary calls of the same handler.
        inst.send_invoke("s2", {})
        self.assertEqual(shape(frames_until_final(inst, "s2"))[0][0], "head")

    def test_the_default_head_and_set_content_type(self):
        js = """
export const handler = awslambda.streamifyResponse((event, stream) => {
  if (event.type) stream.setContentType(event.type);
  setTimeout(() => { stream.write("late"); stream.end(); }, 1);
});
"""
        inst = self.loaded(JS, js)
        inst.send_invoke("d1", {})
        self.assertEqual(shape(frames_until_final(inst, "d1")), [("head", 200, OCTETS, None), ("chunk", b"late"), ("result", None)])
        inst.send_invoke("d2", {"type": "text/html"})
        self.assertEqual(shape(frames_until_final(inst, "d2"))[0], ("head", 200, {"content-type": "text/html"}, None))

    def test_a_resolved_promise_ends_the_stream_and_nothing_written_is_an_empty_body(self):
        inst = self.loaded(JS, "export const handler = awslambda.streamifyResponse(async (e, s) => {});")
        inst.send_invoke("e1", {})
        self.assertEqual(shape(frames_until_final(inst, "e1")), [("head", 200, OCTETS, None), ("result", None)])

    def test_pipeline_into_the_response_stream(self):
        js = """
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import zlib from "node:zlib";
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, { statusCode: 200, headers: { "content-encoding": "gzip" } });
  await pipeline(Readable.from(event.parts), zlib.createGzip(), stream);
});
"""
        import zlib

        inst = self.loaded(JS, js)
        parts = ["part %d\n" % i for i in range(200)]
        inst.send_invoke("p1", {"parts": parts})
        frames = shape(frames_until_final(inst, "p1"))
        self.assertEqual(frames[0], ("head", 200, {"content-type": "application/octet-stream", "content-encoding": "gzip"}, None))
        self.assertEqual(frames[-1], ("result", None))
        self.assertEqual(zlib.decompress(body(frames[1:-1]), 31).decode(), "".join(parts))

    def test_the_commonjs_example_from_lambdas_documentation(self):
        cjs = """
const pipeline = require("util").promisify(require("stream").pipeline);
const { Readable } = require("stream");
exports.handler = awslambda.streamifyResponse(async (event, responseStream, _context) => {
  responseStream.setContentType("application/json");
  await pipeline(Readable.from(Buffer.from(JSON.stringify(event))), responseStream);
});
"""
        inst = self.loaded(("bun", "index.cjs"), cjs)
        inst.send_invoke("c1", {"a": [1, 2]})
        frames = shape(frames_until_final(inst, "c1"))
        self.assertEqual((frames[0], frames[-1]), (("head", 200, {"content-type": "application/json"}, None), ("result", None)))
        self.assertEqual(body(frames), b'{"a":[1,2]}')

    def test_a_response_with_a_readable_stream_body_is_streamed(self):
        js = """
export default {
  fetch(request) {
    let n = 0;
    const body = new ReadableStream({
      pull(c) { n += 1; if (n > 3) c.close(); else c.enqueue(new TextEncoder().encode("piece " + n + ";")); },
    });
    const headers = new Headers({ "x-a": "b" });
    headers.append("set-cookie", "s=1");
    return new Response(body, { status: 202, headers });
  },
};
"""
        inst = self.loaded(JS, js)
        inst.send_invoke("r1", {})
        frames = shape(frames_until_final(inst, "r1"))
        self.assertEqual(frames[0], ("head", 202, {"x-a": "b", "content-type": "application/octet-stream"}, ["s=1"]))
        self.assertEqual(frames[-1], ("result", None))
        self.assertEqual(body(frames), b"piece 1;piece 2;piece 3;")
        self.assertTrue(all(f[0] == "chunk" for f in frames[1:-1]))

    def test_a_body_stream_that_fails_after_a_chunk_ends_the_call_with_error(self):
        js = ("export const handler = () => new Response(new ReadableStream({ async pull(c) {\n"
              "  c.enqueue(new TextEncoder().encode('part')); await new Promise((r) => setTimeout(r, 1));\n"
              "  c.error(new RangeError('the source failed')); } }));\n")
        inst = self.loaded(JS, js)
        inst.send_invoke("f1", {})
        frames = shape(frames_until_final(inst, "f1"))
        self.assertEqual(frames, [("head", 200, OCTETS, None), ("chunk", b"part"), ("error", "RangeError", "the source failed")])

    def test_a_response_with_an_async_generator_body_is_streamed(self):
        js = ("async function* parts() { yield 'x'; yield new TextEncoder().encode('y'); }\n"
              "export const handler = (e) => new Response(e.fn ? parts : parts(), { headers: { 'content-type': 'text/csv' } });\n")
        inst = self.loaded(JS, js)
        for i, event in enumerate([{}, {"fn": True}]):
            with self.subTest(event=event):
                inst.send_invoke("g%d" % i, event)
                frames = shape(frames_until_final(inst, "g%d" % i))
                self.assertEqual((frames[0], frames[-1]), (("head", 200, {"content-type": "text/csv"}, None), ("result", None)))
                self.assertEqual(body(frames), b"xy")

    def test_a_response_with_a_text_body_keeps_the_whole_answer(self):
        js = ("export const handler = (e) => e.sub ? new (class extends Response {})('sub') : new Response('whole', { status: 203 });\n")
        inst = self.loaded(JS, js)
        answer = inst.invoke("w1", {})
        self.assertEqual(answer["t"], "result", answer)
        self.assertEqual((answer["value"]["statusCode"], answer["value"]["body"]), (203, "whole"))
        self.assertEqual(inst.invoke("w2", {"sub": True})["value"]["body"], "sub")

    def test_the_response_constructor_keeps_its_identity(self):
        js = ("export const handler = async () => [new Response('x').constructor === Response, new Response('x') instanceof Response,\n"
              "  (await Response.json({ a: 1 }).json()).a, Object.getPrototypeOf(new Response('x')) === Response.prototype];\n")
        self.assertEqual(self.loaded(JS, js).invoke("i1", {})["value"], [True, True, 1, True])

    def test_an_error_after_the_first_chunk_ends_the_call_with_error(self):
        js = """
export const handler = awslambda.streamifyResponse(async (event, stream) => {
  stream.write("before");
  await new Promise((r) => setTimeout(r, 1));
  if (event.destroy) return stream.destroy(new RangeError("destroyed"));
  throw new TypeError("broke mid-stream");
});
"""
        inst = self.loaded(JS, js)
        inst.send_invoke("x1", {})
        self.assertEqual(shape(frames_until_final(inst, "x1")),
                         [("head", 200, OCTETS, None), ("chunk", b"before"), ("error", "TypeError", "broke mid-stream")])
        inst.send_invoke("x2", {"destroy": True})
        self.assertEqual(shape(frames_until_final(inst, "x2"))[-1], ("error", "RangeError", "destroyed"))

    def test_bad_metadata_fails_the_call_naming_the_field(self):
        js = ("export const handler = awslambda.streamifyResponse(async (event, stream) => {\n"
              "  awslambda.HttpResponseStream.from(stream, event).end(); });\n")
        inst = self.loaded(JS, js)
        cases = [({"statusCode": 101}, "statusCode must be an integer from 200 to 599, not 101"),
                 ({"headers": {"a": {}}}, "header 'a' must be a string"),
                 ({"body": "x"}, "unknown metadata field 'body'"),
                 ({"cookies": "a=1"}, "cookies must be an array of strings")]
        for i, (meta, message) in enumerate(cases):
            with self.subTest(meta=meta):
                inst.send_invoke("m%d" % i, meta)
                (kind, type_, got), = shape(frames_until_final(inst, "m%d" % i))
                self.assertEqual((kind, type_), ("error", "TypeError"))
                self.assertIn(message, got)

    def test_writes_after_the_call_ended_send_no_frame(self):
        js = """
let left;
export const handler = awslambda.streamifyResponse(async (event, stream) => {
  if (event.again) {
    left.write("too late");
    stream.end("fresh");
    return;
  }
  left = stream;
  stream.write("first");
  throw new Error("ends the call, the stream stays open");
});
"""
        inst = self.loaded(JS, js)
        inst.send_invoke("a1", {})
        self.assertEqual(shape(frames_until_final(inst, "a1"))[-1][0], "error")
        inst.send_invoke("a2", {"again": True})
        self.assertEqual(shape(frames_until_final(inst, "a2")), [("head", 200, OCTETS, None), ("chunk", b"fresh"), ("result", None)])

    def test_the_first_chunk_arrives_while_the_handler_still_runs(self):
        js = """
let release;
const gate = new Promise((r) => (release = r));
export const handler = awslambda.streamifyResponse(async (event, stream) => {
  if (event.release) { release(); return stream.end("released"); }
  stream.write("first");
  await gate;
  stream.end("second");
});
"""
        inst = self.loaded(JS, js, concurrency=2)
        inst.send_invoke("slow", {})
        self.assertEqual(shape([inst.frame(), inst.frame()]), [("head", 200, OCTETS, None), ("chunk", b"first")])
        # The handler is blocked on the gate: only the second call can let it go on.
        inst.send_invoke("release", {"release": True})
        others = {}
        rest = frames_until_final(inst, "slow", others)
        self.assertEqual(shape(rest), [("chunk", b"second"), ("result", None)])
        self.assertEqual(shape(released(inst, others))[-1], ("result", None))


class PythonStreams(Case):
    def test_a_generator_streams_its_head_and_items_in_order(self):
        py = """
def handler(event, context):
    print("streaming for", context.aws_request_id)
    yield {"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1"]}
    yield "one "
    yield ""
    yield b"two "
    yield bytearray(b"\\xff")
    yield memoryview(b"\\x00")
"""
        inst = self.loaded(PY, py)
        inst.send_invoke("g1", {})
        frames = frames_until_final(inst, "g1")
        self.assertEqual(shape(frames), [
            ("head", 201, {"content-type": "text/plain"}, ["a=1"]),
            ("chunk", b"one "), ("chunk", b"two "), ("chunk", b"\xff"), ("chunk", b"\x00"), ("result", None),
        ])
        self.assertEqual([l["line"] for l in frames[-1]["logs"]], ["streaming for g1"])

    def test_an_async_generator_and_the_default_head(self):
        py = """
import asyncio

async def handler(event):
    for part in event["parts"]:
        await asyncio.sleep(0)
        print("part", part)
        yield part
"""
        for concurrency in (1, 3):
            with self.subTest(concurrency=concurrency):
                inst = self.loaded(PY, py, concurrency=concurrency)
                inst.send_invoke("a1", {"parts": ["x", "y"]})
                frames = frames_until_final(inst, "a1")
                self.assertEqual(shape(frames),
                                 [("head", 200, OCTETS, None), ("chunk", b"x"), ("chunk", b"y"), ("result", None)])
                self.assertEqual([l["line"] for l in frames[-1]["logs"]], ["part x", "part y"])
                inst.send_invoke("a2", {"parts": []})
                self.assertEqual(shape(frames_until_final(inst, "a2")), [("head", 200, OCTETS, None), ("result", None)])

    def test_a_coroutine_handler_may_return_a_generator(self):
        py = ("async def handler(event):\n    async def body():\n        yield {'statusCode': 202}\n        yield 'ok'\n"
              "    return body()\n")
        for concurrency in (1, 2):
            with self.subTest(concurrency=concurrency):
                inst = self.loaded(PY, py, concurrency=concurrency)
                inst.send_invoke("c1", {})
                self.assertEqual(shape(frames_until_final(inst, "c1")),
                                 [("head", 202, OCTETS, None), ("chunk", b"ok"), ("result", None)])

    def test_an_exception_after_the_first_chunk_ends_the_call_with_error(self):
        py = ("def handler(event):\n    yield 'before'\n    raise ValueError('broke mid-stream')\n")
        inst = self.loaded(PY, py)
        inst.send_invoke("e1", {})
        frames = frames_until_final(inst, "e1")
        self.assertEqual(shape(frames),
                         [("head", 200, OCTETS, None), ("chunk", b"before"), ("error", "ValueError", "broke mid-stream")])
        self.assertIn("line 3", frames[-1]["error"]["stack"])

    def test_items_that_are_neither_text_nor_bytes_fail_naming_their_type(self):
        py = """
closed = []

def handler(event):
    if event == "closed":
        return closed
    def body():
        try:
            yield "ok"
            yield event
        finally:
            closed.append(True)
    return body()
"""
        inst = self.loaded(PY, py)
        cases = [(3, "it yielded an int"), ({"a": 1}, "it yielded a dict"),
                 (None, "it yielded a NoneType")]
        for i, (item, message) in enumerate(cases):
            with self.subTest(item=item):
                inst.send_invoke("t%d" % i, item)
                frames = shape(frames_until_final(inst, "t%d" % i))
                self.assertEqual(frames[:2], [("head", 200, OCTETS, None), ("chunk", b"ok")])
                self.assertEqual(frames[2][:2], ("error", "TypeError"))
                self.assertIn(message, frames[2][2])
        self.assertEqual(inst.invoke("c", "closed")["value"], [True, True, True], "each generator is closed")

    def test_a_bad_head_fails_the_call_naming_the_problem(self):
        py = "def handler(event):\n    yield event\n    yield 'body'\n"
        inst = self.loaded(PY, py)
        cases = [({"statusCode": 700}, "statusCode must be an int from 200 to 599, not 700"),
                 ({"statusCode": 200, "body": "x"}, "unknown key 'body'"),
                 ({"statusCode": 200, "headers": {"a": None}}, "header 'a' must map a str to a str"),
                 ({"statusCode": 200, "cookies": "a=1"}, "cookies must be a list of str")]
        for i, (head, message) in enumerate(cases):
            with self.subTest(head=head):
                inst.send_invoke("h%d" % i, head)
                (kind, type_, got), = shape(frames_until_final(inst, "h%d" % i))
                self.assertEqual((kind, type_), ("error", "TypeError"))
                self.assertIn(message, got)

    def test_the_first_chunk_arrives_while_the_generator_still_runs(self):
        for is_async in (False, True):
            if is_async:
                py = """
import asyncio, threading
gate = threading.Event()

async def slow():
    yield "first"
    await asyncio.get_running_loop().run_in_executor(None, gate.wait)
    yield "second"

def handler(event):
    if event.get("release"):
        gate.set()
        return "released"
    return slow()
"""
            else:
                py = """
import threading
gate = threading.Event()

def slow():
    yield "first"
    gate.wait()
    yield "second"

def handler(event):
    if event.get("release"):
        gate.set()
        return "released"
    return slow()
"""
            with self.subTest(is_async=is_async):
                inst = self.loaded(PY, py, concurrency=2)
                inst.send_invoke("slow", {})
                self.assertEqual(shape([inst.frame(), inst.frame()]), [("head", 200, OCTETS, None), ("chunk", b"first")])
                inst.send_invoke("release", {"release": True})
                others = {}
                self.assertEqual(shape(frames_until_final(inst, "slow", others)), [("chunk", b"second"), ("result", None)])
                self.assertEqual(shape(released(inst, others)), [("result", "released")])

    def test_large_items_are_split_into_frames_under_the_hosts_limit(self):
        py = "def handler(event):\n    yield b'a' * (7 << 20)\n"
        inst = self.loaded(PY, py)
        inst.send_invoke("big", {})
        frames = frames_until_final(inst, "big")
        chunks = [f for f in frames if f["t"] == "chunk"]
        self.assertEqual(len(chunks), 3)
        self.assertTrue(all(len(f["data"]) < 8 << 20 for f in chunks))
        self.assertEqual(body(shape(frames)), b"a" * (7 << 20))
