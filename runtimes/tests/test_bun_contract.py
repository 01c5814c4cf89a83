"""Lambda's Node.js handler contract in the Bun bootstrap, against real Bun.

The context's attributes, callback handlers and context.succeed/fail/done, console lines
with their level (Lambda's text and JSON formats), answers JSON cannot hold, and
Workers-style fetch handlers and Response answers. Run with the other protocol tests:
python3 -m unittest discover -s runtimes/tests -v
"""

import base64
import json
import re
import time

from test_bootstraps import JS, TS, TIMEOUT_MS, Case, marker

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]*)\t([A-Z]+)\t(.*)$", re.S)
CONTEXT_JS = """
export const handler = (e, c) => {
  const own = {};
  for (const k of ["identity", "clientContext"]) own[k] = [k in c, c[k] === undefined];
  return {
    requestId: c.requestId, awsRequestId: c.awsRequestId, functionName: c.functionName,
    functionVersion: c.functionVersion, memoryLimitMb: c.memoryLimitMb, memoryLimitInMB: c.memoryLimitInMB,
    invokedFunctionArn: c.invokedFunctionArn, logGroupName: c.logGroupName, logStreamName: c.logStreamName,
    callbackWaitsForEmptyEventLoop: c.callbackWaitsForEmptyEventLoop, own,
    remaining: c.getRemainingTimeInMillis(), methods: ["succeed", "fail", "done"].map((m) => typeof c[m]),
  };
};
"""


def http_event(method="GET", path="/", query="", headers=None, body=None, b64=False, cookies=None):
    """A Lambda function URL event (payload 2.0) as crates/core/src/http.rs builds it."""
    event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
             "headers": {"host": "example.test", **(headers or {})},
             "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                         "sourceIp": "127.0.0.1", "userAgent": ""}, "domainName": "example.test"},
             "isBase64Encoded": b64}
    if body is not None:
        event["body"] = body
    if cookies:
        event["cookies"] = cookies
    return event


def error_of(answer):
    assert answer["t"] == "error", answer
    return answer["error"]["type"], answer["error"]["message"]


class Context(Case):
    def test_every_lambda_attribute_with_fallbacks_when_the_host_sets_no_variable(self):
        inst = self.loaded(JS, CONTEXT_JS)
        values = [inst.invoke(i)["value"] for i in ("req-1", "req-2")]
        streams = {v.pop("logStreamName") for v in values}
        self.assertEqual(len(streams), 1, "one log stream per instance")
        self.assertRegex(streams.pop(), r"^\d{4}/\d\d/\d\d/\[4\][0-9a-f]{32}$")
        for inv_id, v in zip(("req-1", "req-2"), values):
            self.assertTrue(0 < v.pop("remaining") <= TIMEOUT_MS)
            self.assertEqual(v, {
                "requestId": inv_id, "awsRequestId": inv_id, "functionName": "greet", "functionVersion": "4",
                "memoryLimitMb": 128, "memoryLimitInMB": "128",
                "invokedFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:greet",
                "logGroupName": "/aws/lambda/greet", "callbackWaitsForEmptyEventLoop": True,
                "own": {"identity": [True, True], "clientContext": [True, True]},
                "methods": ["function", "function", "function"],
            })

    def test_attributes_come_from_the_variables_the_host_sets(self):
        env = {"AWS_LAMBDA_FUNCTION_NAME": "greet", "AWS_LAMBDA_FUNCTION_VERSION": "4",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_REGION": "eu-west-3",
               "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/greet",
               "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/02/[4]0123456789abcdef0123456789abcdef"}
        v = self.loaded(JS, CONTEXT_JS, env=env).invoke("r")["value"]
        self.assertEqual(v["invokedFunctionArn"], "arn:aws:lambda:eu-west-3:000000000000:function:greet")
        self.assertEqual(v["logStreamName"], env["AWS_LAMBDA_LOG_STREAM_NAME"])
        self.assertEqual(v["memoryLimitInMB"], "128")

    def test_callback_waits_for_empty_event_loop_is_settable_per_call(self):
        js = ("export const handler = (e, c) => { const before = c.callbackWaitsForEmptyEventLoop;\n"
              "  c.callbackWaitsForEmptyEventLoop = false; return [before, c.callbackWaitsForEmptyEventLoop]; };\n")
        inst = self.loaded(JS, js)
        self.assertEqual(inst.invoke("1")["value"], [True, False])
        self.assertEqual(inst.invoke("2")["value"], [True, False], "a fresh context per call")


class Callbacks(Case):
    def test_a_three_parameter_handler_answers_with_its_callback(self):
        js = """
export function handler(event, context, callback) {
  const later = (f) => setTimeout(f, 5);
  switch (event.k) {
    case "ok": return later(() => callback(null, { n: event.n }));
    case "null": return later(() => callback(null));
    case "error": return later(() => callback(new RangeError("too big")));
    case "string": return later(() => callback("plain failure"));
    case "twice": callback(null, "first"); callback(null, "second"); return "returned";
    case "throw": throw new TypeError("thrown");
    case "promise first": return Promise.resolve("from the promise");
    case "callback first": callback(null, "from the callback"); return new Promise((r) => setTimeout(() => r("late"), 5));
    case "promise rejects": return Promise.reject(new Error("rejected"));
  }
}
"""
        inst = self.loaded(JS, js)
        cases = [
            ({"k": "ok", "n": 3}, ("result", {"n": 3})), ({"k": "null"}, ("result", None)),
            ({"k": "error"}, ("error", ("RangeError", "too big"))), ({"k": "string"}, ("error", ("string", "plain failure"))),
            ({"k": "twice"}, ("result", "first")), ({"k": "throw"}, ("error", ("TypeError", "thrown"))),
            ({"k": "promise first"}, ("result", "from the promise")),
            ({"k": "callback first"}, ("result", "from the callback")),
            ({"k": "promise rejects"}, ("error", ("Error", "rejected"))),
        ]
        for i, (event, (kind, expected)) in enumerate(cases):
            with self.subTest(event=event["k"]):
                answer = inst.invoke("c%d" % i, event)
                self.assertEqual(answer["t"], kind, answer)
                self.assertEqual(answer["value"] if kind == "result" else error_of(answer), expected)
        self.assertIn("too big", inst.invoke("stack", {"k": "error"})["error"]["stack"])

    def test_async_and_two_parameter_handlers_answer_with_their_value(self):
        # An async handler with three parameters is not a callback handler (Lambda's rule):
        # its promise answers, unless it calls back first.
        cases = {
            "export const handler = async (e, c, cb) => 'async value';": "async value",
            "export const handler = async (e, c, cb) => { cb(null, 'called back'); return 'value'; };": "called back",
            "export const handler = (e, c) => 'two params';": "two params",
            "export const handler = (e, c) => { c.succeed('succeeded'); return 'ignored'; };": "succeeded",
            "export default { handler(e, c, cb) { setTimeout(() => cb(null, this.tag), 1); }, tag: 'method' };": "method",
        }
        for source, expected in cases.items():
            with self.subTest(expected=expected):
                self.assertEqual(self.loaded(JS, source).invoke("1", {})["value"], expected)

    def test_legacy_succeed_fail_and_done_end_the_call(self):
        js = """
export function handler(event, context) {
  return new Promise(() => setTimeout(() => {
    if (event === "succeed") context.succeed({ via: "succeed" });
    if (event === "fail") context.fail(new SyntaxError("via fail"));
    if (event === "fail string") context.fail("failed as text");
    if (event === "fail nothing") context.fail();
    if (event === "done ok") context.done(null, "via done");
    if (event === "done error") context.done(new Error("done with an error"), "ignored");
  }, 5));
}
"""
        inst = self.loaded(JS, js)
        self.assertEqual(inst.invoke("1", "succeed")["value"], {"via": "succeed"})
        self.assertEqual(error_of(inst.invoke("2", "fail")), ("SyntaxError", "via fail"))
        self.assertEqual(error_of(inst.invoke("3", "fail string")), ("string", "failed as text"))
        self.assertEqual(error_of(inst.invoke("4", "fail nothing")), ("Error", "context.fail was called without an error"))
        self.assertEqual(inst.invoke("5", "done ok")["value"], "via done")
        self.assertEqual(error_of(inst.invoke("6", "done error")), ("Error", "done with an error"))

    def test_the_call_ends_at_the_callback_and_later_output_is_raw(self):
        js = ("export function handler(e, c, cb) {\n  console.log('before');\n  cb(null, 'answered');\n"
              "  setTimeout(() => process.stdout.write('after the answer\\n'), 20);\n}\n")
        inst = self.loaded(JS, js)
        answer = inst.invoke("1", {})
        self.assertEqual(answer["value"], "answered")
        self.assertEqual([LINE.match(l["line"]).group(4) for l in answer["logs"]], ["before"])
        inst.pump(lambda: b"after the answer\n" in inst.out[1], "the late output on fd 1")
        self.assertEqual(inst.out[1], marker("1") + b"after the answer\n")


class Console(Case):
    SOURCE = ("console.warn('at import');\n"
              "export function handler(e) {\n  console.log('log', 1);\n  console.info('info', { a: 1 });\n"
              "  console.warn('warn');\n  console.error(new TypeError('bad'));\n  console.debug('debug');\n"
              "  console.trace('trace');\n  console.log('two\\nlines');\n"
              "  setTimeout(() => console.log('late'), 1);\n  return 'ok';\n}\n")

    def test_each_method_carries_its_level_in_lambdas_text_format(self):
        inst = self.loaded(JS, self.SOURCE)
        before = time.time()
        answer = inst.invoke("req-7", {})
        got = []
        for log in answer["logs"]:
            m = LINE.match(log["line"])
            if m is None:  # continuation lines: the trace's frames, the second line
                got.append((log["stream"], None, None, log["line"].strip()))
                continue
            stamp, request, level, message = m.groups()
            self.assertLess(abs(time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone - before), 5)
            got.append((log["stream"], request, level, message))
        heads = [g for g in got if g[1] is not None]
        self.assertEqual([(s, r, lvl) for s, r, lvl, _ in heads],
                         [("stdout", "req-7", "INFO"), ("stdout", "req-7", "INFO"), ("stderr", "req-7", "WARN"),
                          ("stderr", "req-7", "ERROR"), ("stdout", "req-7", "DEBUG"), ("stderr", "req-7", "TRACE"),
                          ("stdout", "req-7", "INFO")])
        messages = [m for _, _, _, m in heads]
        self.assertEqual(messages[:3], ["log 1", "info { a: 1 }", "warn"])
        self.assertTrue(messages[3].startswith("TypeError: bad"), messages[3])
        self.assertEqual((messages[4], messages[5], messages[6]), ("debug", "Trace: trace", "two"))
        self.assertEqual(got[-1], ("stdout", None, None, "lines"))
        # At import and after the call, raw output, formatted too: "undefined" at import
        # as on Lambda, the request id of the call that left the timer behind after it.
        inst.pump(lambda: b"\tlate\n" in inst.out[1], "the late line")
        self.assertRegex(inst.out[2].decode(), r"^\S+Z\tundefined\tWARN\tat import\n")
        self.assertRegex(inst.out[1].decode(), r"\S+Z\treq-7\tINFO\tlate\n$")

    def test_json_format_one_object_per_call_filtered_by_level(self):
        inst = self.loaded(JS, self.SOURCE, env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN"})
        answer = inst.invoke("req-8", {})
        records = [json.loads(l["line"]) for l in answer["logs"]]
        self.assertEqual([(r["level"], r["requestId"]) for r in records], [("WARN", "req-8"), ("ERROR", "req-8")])
        self.assertEqual(records[0]["message"], "warn")
        self.assertRegex(records[0]["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((records[1]["errorType"], records[1]["errorMessage"]), ("TypeError", "bad"))
        self.assertIsInstance(records[1]["stackTrace"], list)
        everything = self.loaded(JS, self.SOURCE, env={"AWS_LAMBDA_LOG_FORMAT": "json"}).invoke("r", {})
        levels = [json.loads(l["line"])["level"] for l in everything["logs"]]
        self.assertEqual(levels, ["INFO", "INFO", "WARN", "ERROR", "DEBUG", "TRACE", "INFO"], "no filter: all")
        self.assertEqual(json.loads(everything["logs"][-1]["line"])["message"], "two\nlines", "one line per call")


    def test_concurrent_calls_keep_their_own_request_ids(self):
        js = ("export function handler(e, c, cb) {\n  setTimeout(() => { console.info('n', e.n); cb(null, e.n); },"
              " 20 - e.n);\n}\n")
        inst = self.loaded(JS, js, concurrency=20)
        for n in range(20):
            inst.send_invoke("k%d" % n, {"n": n})
        answers = [inst.frame() for _ in range(20)]
        self.assertEqual(sorted(a["id"] for a in answers), sorted("k%d" % n for n in range(20)))
        for a in answers:
            _, request, level, message = LINE.match(a["logs"][0]["line"]).groups()
            self.assertEqual((request, level, message, len(a["logs"])), (a["id"], "INFO", "n %d" % a["value"], 1))
            self.assertEqual(a["id"], "k%d" % a["value"])


class Answers(Case):
    def test_values_json_cannot_hold_are_errors_naming_them(self):
        js = """
class Point { constructor() { this.x = 1; } }
class Empty {}
export function handler(e) {
  switch (e) {
    case "map": return { items: new Map([["a", 1]]) };
    case "set": return new Set([1]);
    case "bigint": return { list: [1, 2n] };
    case "cycle": { const d = { a: 1 }; d.self = d; return d; }
    case "function": return function handler() {};
    case "symbol": return Symbol("s");
    case "nested response": return { res: new Response("x") };
    case "empty instance": return { "odd key": new Empty() };
    case "error object": return new RangeError("as a value");
    case "promise inside": return [Promise.resolve(1)];
  }
}
"""
        inst = self.loaded(JS, js)
        cases = {
            "map": ".items is a Map (JSON.stringify makes it {}; return Object.fromEntries(map))",
            "set": "it is a Set (JSON.stringify makes it {}; return [...set])",
            "bigint": ".list[1] is a BigInt (2n; JSON has none: return a string or a number)",
            "cycle": "it is a circular structure (an object that contains itself)",
            "function": "it is a function (handler), not its result",
            "symbol": "it is a symbol (s)",
            "nested response": ".res is a Response where none is expected (only the handler's own answer may be one)",
            "empty instance": '["odd key"] is an Empty instance with no fields and no toJSON (JSON.stringify makes it {})',
            "error object": "it is an Error object (RangeError: as a value); throw it to fail the call",
            "promise inside": "[0] is a Promise instance with no fields and no toJSON (JSON.stringify makes it {})",
        }
        for i, (event, what) in enumerate(cases.items()):
            with self.subTest(event=event):
                self.assertEqual(error_of(inst.invoke("u%d" % i, event)),
                                 ("TypeError", "the handler's return value is not JSON: " + what))

    def test_values_json_holds_answer_as_on_lambda(self):
        js = """
class Point { constructor() { this.x = 1; this.y = 2; } norm() { return 0; } }
export function handler(e) {
  switch (e) {
    case "instance": return new Point();
    case "nothing": return;
    case "empty": return { a: {}, b: [] };
    case "methods": return { a: 1, f() {}, u: undefined, list: [() => 1] };
    case "date": return { at: new Date(0) };
    case "text {}": return "{}";
  }
}
"""
        inst = self.loaded(JS, js)
        cases = {"instance": {"x": 1, "y": 2}, "nothing": None, "empty": {"a": {}, "b": []},
                 "methods": {"a": 1, "list": [None]}, "date": {"at": "1970-01-01T00:00:00.000Z"}, "text {}": "{}"}
        for i, (event, expected) in enumerate(cases.items()):
            with self.subTest(event=event):
                answer = inst.invoke("v%d" % i, event)
                self.assertEqual((answer["t"], answer.get("value")), ("result", expected), answer)


class Fetch(Case):
    WORKER = """
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const body = request.method === "GET" ? null : await request.text();
    ctx.waitUntil(Promise.resolve());
    if (url.pathname === "/binary") return new Response(new Uint8Array([0, 255, 1]), { headers: { "content-type": "image/png" } });
    const headers = new Headers({ "x-a": "b" });
    headers.append("set-cookie", "a=1");
    headers.append("set-cookie", "b=2");
    return Response.json({ method: request.method, url: request.url, body, cookie: request.headers.get("cookie"),
                           type: request.headers.get("content-type"), mode: env.MODE, id: ctx.awsRequestId },
                         { status: 201, headers });
  },
};
"""

    def test_a_default_export_with_fetch_answers_function_url_events(self):
        inst = self.loaded(JS, self.WORKER, env={"MODE": "worker"})
        event = http_event("POST", "/a/b", "x=1&y=2", {"content-type": "text/plain"}, "hello", cookies=["c=3", "d=4"])
        answer = inst.invoke("f1", event)
        v = answer["value"]
        self.assertEqual((v["statusCode"], v["isBase64Encoded"], v["cookies"]), (201, False, ["a=1", "b=2"]))
        self.assertEqual(v["headers"]["x-a"], "b")
        self.assertTrue(v["headers"]["content-type"].startswith("application/json"), v)
        self.assertNotIn("set-cookie", v["headers"])
        self.assertEqual(json.loads(v["body"]), {"method": "POST", "url": "http://example.test/a/b?x=1&y=2",
                                                 "body": "hello", "cookie": "c=3; d=4", "type": "text/plain",
                                                 "mode": "worker", "id": "f1"})
        b64 = http_event("PUT", "/up", body=base64.b64encode(b"\x00bytes").decode(), b64=True)
        self.assertEqual(json.loads(inst.invoke("f2", b64)["value"]["body"])["body"], "\x00bytes")
        binary = inst.invoke("f3", http_event(path="/binary"))["value"]
        self.assertEqual((binary["isBase64Encoded"], base64.b64decode(binary["body"])), (True, b"\x00\xff\x01"))
        self.assertEqual(binary["headers"]["content-type"], "image/png")

    def test_a_direct_invoke_is_a_post_of_the_event_as_json(self):
        inst = self.loaded(JS, self.WORKER)
        body = json.loads(inst.invoke("d1", {"hello": "world"})["value"]["body"])
        self.assertEqual((body["method"], body["url"], json.loads(body["body"])), ("POST", "http://localhost/", {"hello": "world"}))
        self.assertEqual(body["type"], "application/json")

    def test_a_handler_returning_a_response_and_fetch_errors(self):
        ts = ("export async function handler(event: { rawPath?: string }): Promise<Response> {\n"
              "  if (event.rawPath === '/text') return new Response('plain');\n"
              "  return Response.json({ path: event.rawPath ?? null }, { status: 202 });\n}\n")
        inst = self.loaded(TS, ts)
        v = inst.invoke("r1", http_event(path="/p"))["value"]
        self.assertEqual((v["statusCode"], json.loads(v["body"])), (202, {"path": "/p"}))
        text = inst.invoke("r2", http_event(path="/text"))["value"]
        self.assertEqual((text["body"], text["headers"]["content-type"]), ("plain", "text/plain;charset=utf-8"))
        callback = self.loaded(JS, "export function handler(e, c, cb) { cb(null, new Response('via callback', { status: 203 })); }")
        self.assertEqual(callback.invoke("r3", {})["value"]["statusCode"], 203)
        bad = self.loaded(JS, "export default { fetch() { return { statusCode: 200 }; } };")
        self.assertEqual(error_of(bad.invoke("r4", {})),
                         ("TypeError", "the fetch handler must answer with a Response; it returned Object"))
        named = self.loaded(JS, "export default { fetch: (r) => new Response(r.method) };", handler="fetch")
        self.assertEqual(named.invoke("r5", {})["value"]["body"], "POST")
        preferred = self.loaded(JS, "export default { handler: (e) => 'the named one', fetch: () => new Response('no') };")
        self.assertEqual(preferred.invoke("r6", {})["value"], "the named one")


if __name__ == "__main__":
    import unittest

    unittest.main()
