"""Times instance starts through the API: each `POST /v1/functions?wait=true` starts one
instance (process, sandbox when on, import of the handler) and answers when it is ready.
Prints the median and p90 in ms for each runtime. Usage: coldstart.py URL N"""

import json
import statistics
import sys
import time
import urllib.request

HELLO = {
    "python": open("tests/e2e/fixtures/hello.py").read(),
    "javascript": open("tests/e2e/fixtures/hello.js").read(),
}


def call(method, url, body=None):
    req = urllib.request.Request(url, json.dumps(body).encode() if body else None, {"content-type": "application/json"}, method=method)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    for runtime, code in HELLO.items():
        times = []
        for i in range(n):
            name = f"cold-{runtime[:2]}-{i}"
            start = time.perf_counter()
            f = call("POST", url + "/v1/functions?wait=true", {"name": name, "runtime": runtime, "code": code})
            times.append((time.perf_counter() - start) * 1000)
            assert f["state"] == "ready", f
            call("DELETE", url + f"/v1/functions/{name}")
        times.sort()
        print(f"{runtime:<11} start p50 {statistics.median(times):6.1f} ms   p90 {times[int(n * 0.9)]:6.1f} ms   (n={n})")


main()
