"""Protocol tests of Lambda's Python handler contract in the CPython bootstrap: the whole
context, `logging` as on Lambda (text and JSON formats, level filter, per-call attribution
with several calls in flight) and return values that JSON cannot hold.

Run from the repository root:  python3 -m unittest discover -s runtimes/tests -v
"""

import json
import re
import time

from test_bootstraps import PY, TIMEOUT_MS, Case, logs

# Lambda's text format: [LEVEL]\t<ISO time with ms>Z\t<request id>\t<message>
TEXT_LINE = re.compile(r"^\[(\w+)\]\t(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]*)\t(.*)$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "greet", "AWS_LAMBDA_FUNCTION_VERSION": "4",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/greet",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2030/01/02/[4]0123456789abcdef0123456789abcdef",
    "AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "eu-west-3",
}


def records(answer):
    """(stream, level, request id, message) of each Lambda-format line of a call's logs."""
    out = []
    for stream, line in logs(answer):
        m = TEXT_LINE.match(line)
        if m:
            out.append((stream, m.group(1), m.group(3), m.group(4)))
    return out


class Context(Case):
    SOURCE = ("def handler(e, c):\n"
              "    names = ['request_id', 'aws_request_id', 'function_name', 'function_version',\n"
              "             'invoked_function_arn', 'memory_limit_mb', 'memory_limit_in_mb', 'log_group_name',\n"
              "             'log_stream_name', 'identity', 'client_context']\n"
              "    out = {n: getattr(c, n) for n in names}\n"
              "    out['millis'] = c.get_remaining_time_in_millis()\n"
              "    out['ms'] = c.get_remaining_time_ms()\n"
              "    return out\n")

    def check_remaining(self, value):
        for key in ("millis", "ms"):
            remaining = value.pop(key)
            self.assertIsInstance(remaining, int)
            self.assertTrue(0 < remaining <= TIMEOUT_MS, remaining)

    def test_every_lambda_context_attribute_from_the_hosts_environment(self):
        inst = self.loaded(PY, self.SOURCE, env=LAMBDA_ENV)
        for inv_id in ("req-1", "req-2"):
            value = inst.invoke(inv_id)["value"]
            self.check_remaining(value)
            self.assertEqual(value, {
                "request_id": inv_id, "aws_request_id": inv_id, "function_name": "greet", "function_version": "4",
                "invoked_function_arn": "arn:aws:lambda:eu-west-3:000000000000:function:greet",
                "memory_limit_mb": 128, "memory_limit_in_mb": 128, "log_group_name": "/aws/lambda/greet",
                "log_stream_name": LAMBDA_ENV["AWS_LAMBDA_LOG_STREAM_NAME"], "identity": None, "client_context": None,
            })

    def test_the_same_values_without_the_environment(self):
        inst = self.loaded(PY, self.SOURCE)
        first, second = inst.invoke("a")["value"], inst.invoke("b")["value"]
        for value in (first, second):
            self.check_remaining(value)
        self.assertEqual(first["invoked_function_arn"], "arn:aws:lambda:us-east-1:000000000000:function:greet")
        self.assertEqual(first["log_group_name"], "/aws/lambda/greet")
        self.assertEqual((first["function_version"], first["memory_limit_in_mb"]), ("4", 128))
        self.assertRegex(first["log_stream_name"], r"^\d{4}/\d\d/\d\d/\[4\][0-9a-f]{32}$")
        self.assertEqual(first["log_stream_name"], second["log_stream_name"], "one log stream per instance")
        self.assertEqual((first["identity"], first["client_context"]), (None, None))


class Logging(Case):
    def test_records_reach_the_calls_logs_in_lambdas_text_format(self):
        py = ("import logging\n"
              "logging.basicConfig(level=logging.DEBUG, format='%(message)s')  # a no-op, as on Lambda\n"
              "log = logging.getLogger(__name__)\n"
              "def handler(e):\n"
              "    logging.getLogger().info('root info %s', e)\n"
              "    logging.info('module-level info')\n"
              "    log.warning('module logger warning')\n"
              "    log.debug('debug is below the default level')\n"
              "    try:\n"
              "        1 / 0\n"
              "    except ZeroDivisionError:\n"
              "        log.exception('it failed')\n"
              "    print('plain print')\n"
              "    return 'ok'\n")
        inst = self.loaded(PY, py)
        for inv_id in ("call-1", "call-2"):
            before = time.time()
            answer = inst.invoke(inv_id, 7)
            self.assertEqual(answer["value"], "ok")
            self.assertEqual(records(answer), [
                ("stdout", "INFO", inv_id, "root info 7"),
                ("stdout", "INFO", inv_id, "module-level info"),
                ("stderr", "WARNING", inv_id, "module logger warning"),
                ("stderr", "ERROR", inv_id, "it failed"),
            ])
            lines = logs(answer)
            error_at = lines.index(next(l for l in lines if l[1].startswith("[ERROR]")))
            traceback = [l for _, l in lines[error_at + 1:]]
            self.assertEqual(traceback[0], "Traceback (most recent call last):")
            self.assertIn("ZeroDivisionError: division by zero", traceback)
            self.assertEqual(lines[-1], ("stdout", "plain print"))
            stamp = TEXT_LINE.match(lines[0][1]).group(2)
            got = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            self.assertTrue(before - 2 <= got <= time.time() + 1, (stamp, before))

    def test_records_at_import_are_raw_output_for_the_next_call(self):
        py = ("import logging\nlogging.warning('at import')\ndef handler(e):\n    return 'ok'\n")
        inst = self.loaded(PY, py)
        self.assertEqual(logs(inst.invoke("first")), [])
        inst.drain_now()
        raw = inst.out[2].decode().split("\n")
        self.assertTrue(any(TEXT_LINE.match(l) and l.endswith("\t\tat import") and l.startswith("[WARNING]")
                            for l in raw), raw)

    def test_level_filter_and_the_request_id_in_a_users_format(self):
        py = ("import logging\nroot = logging.getLogger()\n"
              "root.handlers[0].setFormatter(logging.Formatter('%(aws_request_id)s|%(levelname)s|%(message)s'))\n"
              "def handler(e):\n"
              "    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):\n"
              "        root.log(level, 'at %s', logging.getLevelName(level))\n"
              "    return 'ok'\n")
        expected = {
            "DEBUG": ["DEBUG", "INFO", "WARNING", "ERROR"], "info": ["INFO", "WARNING", "ERROR"],
            "WARN": ["WARNING", "ERROR"], "ERROR": ["ERROR"],
        }
        for level, levels in expected.items():
            with self.subTest(level=level):
                inst = self.loaded(PY, py, env={"AWS_LAMBDA_LOG_LEVEL": level})
                got = [l for _, l in logs(inst.invoke("id-" + level))]
                self.assertEqual(got, ["id-%s|%s|at %s" % (level, lv, lv) for lv in levels])

    def test_a_level_or_format_that_is_none_says_so_and_defaults_apply(self):
        py = "import logging\ndef handler(e):\n    logging.debug('no')\n    logging.info('yes')\n    return 'ok'\n"
        inst = self.loaded(PY, py, env={"AWS_LAMBDA_LOG_LEVEL": "LOUD", "AWS_LAMBDA_LOG_FORMAT": "yaml"})
        self.assertEqual([r[3] for r in records(inst.invoke("x"))], ["yes"])
        inst.drain_now()
        raw = inst.out[2].decode()
        self.assertIn("[ignis] AWS_LAMBDA_LOG_FORMAT is 'yaml', not TEXT or JSON: TEXT is used\n", raw)
        self.assertIn("[ignis] AWS_LAMBDA_LOG_LEVEL is 'LOUD', not DEBUG, INFO, WARN or ERROR: INFO is used\n", raw)

    def test_json_format(self):
        py = ("import logging\nlog = logging.getLogger('app.db')\n"
              "def handler(e):\n"
              "    log.debug('filtered out')\n"
              "    log.info('hello %s', 'world', extra={'table': 'users'})\n"
              "    logging.getLogger().warning({'structured': [1, 2]})\n"
              "    try:\n"
              "        raise KeyError('missing')\n"
              "    except KeyError:\n"
              "        log.exception('lookup failed')\n"
              "    print('plain print stays plain')\n"
              "    return 'ok'\n")
        inst = self.loaded(PY, py, env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
        answer = inst.invoke("req-json")
        lines = logs(answer)
        self.assertEqual(len(lines), 4, lines)
        self.assertEqual(lines[3], ("stdout", "plain print stays plain"))
        entries = [json.loads(l) for _, l in lines[:3]]
        self.assertEqual([s for s, _ in lines[:3]], ["stdout", "stderr", "stderr"])
        for entry in entries:
            self.assertRegex(entry.pop("timestamp"), ISO_MS)
            self.assertEqual(entry.pop("requestId"), "req-json")
        self.assertEqual(entries[0], {"level": "INFO", "message": "hello world", "logger": "app.db", "table": "users"})
        self.assertEqual(entries[1], {"level": "WARNING", "message": {"structured": [1, 2]}, "logger": "root"})
        stack = entries[2].pop("stackTrace")
        self.assertEqual(entries[2], {"level": "ERROR", "message": "lookup failed", "logger": "app.db",
                                      "errorType": "KeyError", "errorMessage": "'missing'"})
        self.assertEqual(stack[0], "Traceback (most recent call last):\n")
        self.assertIn("raise KeyError('missing')", "".join(stack))

    def test_concurrent_calls_each_get_only_their_own_records(self):
        # Both calls are in flight at once (each waits for the other) and log in between.
        sync = ("import logging, threading\nlog = logging.getLogger(__name__)\nboth = threading.Barrier(2)\n"
                "def handler(e):\n    log.info('before %s', e)\n    both.wait(timeout=10)\n"
                "    log.warning('after %s', e)\n    both.wait(timeout=10)\n    log.error('end %s', e)\n    return e\n")
        asynchronous = ("import asyncio, logging\nlog = logging.getLogger(__name__)\narrived = []\n"
                        "async def handler(e):\n    log.info('before %s', e)\n    arrived.append(e)\n"
                        "    while len(arrived) < 2:\n        await asyncio.sleep(0.001)\n"
                        "    log.warning('after %s', e)\n    await asyncio.sleep(0)\n    log.error('end %s', e)\n    return e\n")
        for kind, source in (("threads", sync), ("asyncio", asynchronous)):
            with self.subTest(kind=kind):
                inst = self.loaded(PY, source, concurrency=2)
                inst.send_invoke("one", "one")
                inst.send_invoke("two", "two")
                answers = {a["id"]: a for a in (inst.frame(), inst.frame())}
                for inv_id in ("one", "two"):
                    self.assertEqual(answers[inv_id]["value"], inv_id)
                    self.assertEqual(records(answers[inv_id]), [
                        ("stdout", "INFO", inv_id, "before " + inv_id),
                        ("stderr", "WARNING", inv_id, "after " + inv_id),
                        ("stderr", "ERROR", inv_id, "end " + inv_id),
                    ])

    def test_functions_that_never_log_do_not_import_logging(self):
        inst = self.loaded(PY, "import sys\ndef handler(e):\n    return 'logging' in sys.modules\n")
        self.assertIs(inst.invoke("x")["value"], False)


class ReturnValues(Case):
    def test_values_json_cannot_hold_are_errors_that_say_what_was_returned(self):
        py = ("import datetime, decimal\nclass Point:\n    pass\ndef helper():\n    pass\n"
              "def handler(e):\n    cycle = {}\n    cycle['me'] = cycle\n    return {\n"
              "        'function': helper, 'lambda': lambda: 1, 'class': Point, 'instance': Point(),\n"
              "        'set': {1, 2}, 'bytes': b'abc', 'cycle': cycle, 'nan': float('nan'),\n"
              "        'deep nan': {'a': [1, float('inf')]}, 'datetime': datetime.datetime(2024, 1, 2),\n"
              "        'decimal nan': decimal.Decimal('NaN'), 'tuple key': {(1, 2): 'x'},\n"
              "        'generator': {'g': (i for i in range(3))},\n    }[e]\n")
        expected = {
            "function": "the handler returned the function helper (a function is not a value: call it",
            "lambda": "the handler returned the function handler.<locals>.<lambda> (a function is not a value",
            "class": "the handler returned the class Point (a class is not a value",
            "instance": "the handler returned an instance of main.Point (it has no JSON form",
            "set": "the handler returned a set (JSON has no sets: return a list)",
            "bytes": "the handler returned a bytes object (JSON has no bytes",
            "cycle": "the handler returned a dict whose ['me'] is a dict (it contains itself (a circular reference))",
            "nan": "the handler returned the float nan (JSON has no NaN or Infinity)",
            "deep nan": "the handler returned a dict whose ['a'][1] is the float inf (JSON has no NaN or Infinity)",
            "datetime": "the handler returned a datetime.datetime (JSON has no dates, and Lambda refuses them too",
            "decimal nan": "the handler returned the decimal.Decimal NaN (JSON has no NaN or Infinity)",
            "tuple key": "the handler returned a dict whose key (1, 2) is a tuple (JSON object keys are strings",
            # Returned as the answer itself, a generator streams (test_streaming.py).
            "generator": "the handler returned a dict whose ['g'] is a generator (it was never run to the end",
        }
        inst = self.loaded(PY, py)
        for event, message in expected.items():
            with self.subTest(event=event):
                answer = inst.invoke("id", event)
                self.assertEqual(answer["t"], "error", answer)
                self.assertEqual(answer["error"]["type"], "TypeError")
                self.assertTrue(answer["error"]["message"].startswith("the handler's return value is not JSON: " + message),
                                answer["error"]["message"])
        self.assertEqual(inst.invoke("after", "set")["t"], "error", "the instance serves on")

    def test_decimals_are_numbers_as_on_lambda(self):
        py = ("from decimal import Decimal\ndef handler(e):\n"
              "    return {'price': Decimal('19.90'), 'big': [Decimal('-1E+3'), Decimal('0.000001')], 'text': e}\n")
        inst = self.loaded(PY, py)
        # The text that looks like the internal marker stays a string.
        answer = inst.invoke("d", "\u0000ignis-decimal-0:1")
        self.assertEqual(answer["t"], "result", answer)
        self.assertEqual(answer["value"], {"price": 19.90, "big": [-1000, 0.000001], "text": "\u0000ignis-decimal-0:1"})
