"""`make bench`: the release server, sandbox on, the seed's hello handlers, real HTTP.

Scenarios (targets for a 2-core machine, from issue 4):
  warm      one keep-alive connection (wrk): p50 <= 200 us, p99 <= 1 ms
  throughput 64 connections (wrk): >= 30,000/s JavaScript, >= 10,000/s Python
  cold      first call of a freshly deployed function, end to end, p50:
            without pre-warming <= 15 ms JS / <= 25 ms Python; with it <= 5 ms;
            and the same without the sandbox: the sandbox's cost <= 5 ms (issue 3)
  burst     200 simultaneous requests, no instance yet, max_instances 50: no 5xx, p99 <= 1 s
  density   PSS per idle instance, and how many fit in 8 GiB
Prints a table and writes target/bench/latest.json. Python 3.11 standard library only.
Knobs: DURATION (wrk, default 10s), SAMPLES (cold starts per case, default 25).
"""

import asyncio
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ignis")
DURATION = os.environ.get("DURATION", "10s")
SAMPLES = int(os.environ.get("SAMPLES", "25"))
HELLO = {
    "python": open(os.path.join(ROOT, "tests/e2e/fixtures/hello.py")).read(),
    "javascript": open(os.path.join(ROOT, "tests/e2e/fixtures/hello.js")).read(),
}
LABEL = {"python": "python", "javascript": "bun"}
EVENT = b'{"name": "bench"}'


class Server:
    def __init__(self, *args):
        self.data = tempfile.mkdtemp(prefix="ignis-bench-")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data", self.data, *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        m = None
        for line in self.proc.stdout:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                break
        if not m:
            raise SystemExit("the server did not start")
        self.url = m.group(1)
        u = urllib.parse.urlparse(self.url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)

    def call(self, method, path, body=None):
        """(status, headers, body bytes) over the keep-alive connection."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        self.conn.request(method, path, data, {"content-type": "application/json"})
        r = self.conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()

    def json(self, method, path, body=None):
        status, _, data = self.call(method, path, body)
        return status, json.loads(data or b"null")

    def deploy(self, name, runtime, **extra):
        status, f = self.json("POST", "/v1/functions?wait=true",
                              {"name": name, "runtime": runtime, "code": HELLO[runtime], **extra})
        if status != 201 or f.get("state") != "ready":
            raise SystemExit("deploy of %s failed: %s %s" % (name, status, f))

    def instances(self, name):
        return self.json("GET", "/v1/functions/" + name)[1]["instances"]

    def metric(self, series):
        _, _, page = self.call("GET", "/metrics")
        for line in page.decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def wait(self, what, f, within=60.0):
        end = time.monotonic() + within
        while not f():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting until " + what)
            time.sleep(0.005)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wrk(url, connections, threads):
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % connections, "-d" + DURATION, "--latency",
         "-s", os.path.join(ROOT, "bench/post.lua"), url],
        capture_output=True, text=True, check=True,
    ).stdout

    def latency(p):
        m = re.search(r"^\s+%d%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        scale = {"us": 1, "ms": 1000, "s": 1_000_000}[m.group(2)]
        return float(m.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"p50_us": latency(50), "p99_us": latency(99), "rps": rps,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def warm(results):
    s = Server()
    try:
        for runtime in HELLO:
            name = "hello-" + runtime[:2]
            # Throughput settings a user would pick for a hot function: enough instances
            # for both cores, and async concurrency where the runtime is async (Bun).
            conc = 16 if runtime == "javascript" else 1
            s.deploy(name, runtime, max_instances=4, min_instances=4, concurrency=conc)
            url = s.url + "/v1/functions/%s/invoke" % name
            one = wrk(url, 1, 1)
            many = wrk(url, 64, 2)
            results["warm"][runtime] = one
            results["throughput"][runtime] = dict(many, settings={"min_instances": 4, "max_instances": 4, "concurrency": conc})
    finally:
        s.close()


def cold(results, prewarm, sandbox=True):
    key = "cold_prewarmed" if prewarm else "cold_no_prewarm" if sandbox else "cold_no_sandbox"
    s = Server("--prewarm", "2" if prewarm else "0", *([] if sandbox else ["--insecure-no-sandbox"]))
    try:
        for runtime in HELLO:
            label = LABEL[runtime]
            wall, init, reasons = [], [], set()
            for i in range(SAMPLES):
                name = "cold-%s-%d" % (runtime[:2], i)
                s.deploy(name, runtime, idle_timeout_secs=0)
                # The deploy check instance is gone, and (with pre-warming) the pool is
                # full again: this sample measures the path it claims to.
                s.wait("no instance is left", lambda: s.instances(name) == {"starting": 0, "idle": 0, "busy": 0})
                if prewarm:
                    s.wait("the pre-warmed pool is full",
                           lambda: s.metric('ignis_prewarmed_instances{runtime="%s"}' % label) == 2)
                start = time.perf_counter()
                status, headers, _ = s.call("POST", "/v1/functions/%s/invoke" % name, EVENT)
                wall.append((time.perf_counter() - start) * 1000)
                assert status == 200 and headers.get("x-ignis-cold-start") == "true", (status, headers)
                init.append(float(headers["x-ignis-init-ms"]))
                s.call("DELETE", "/v1/functions/" + name)
            results[key][runtime] = {
                "p50_ms": statistics.median(wall), "p90_ms": pct(wall, 90),
                "init_p50_ms": statistics.median(init), "samples": SAMPLES,
            }
    finally:
        s.close()


async def one_request(host, port, path, body):
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                 % (path.encode(), host.encode(), len(body), body))
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()  # to the end: connection: close
    writer.close()
    status = int(status_line.split()[1]) if status_line else 0
    return status, (time.perf_counter() - start) * 1000


async def fire(host, port, path, n):
    return await asyncio.gather(*(one_request(host, port, path, EVENT) for _ in range(n)))


def burst(results):
    s = Server()
    try:
        for runtime in HELLO:
            name = "burst-" + runtime[:2]
            s.deploy(name, runtime, max_instances=50, idle_timeout_secs=0)
            s.wait("no instance is left", lambda: s.instances(name) == {"starting": 0, "idle": 0, "busy": 0})
            answers = asyncio.run(fire(s.host, s.port, "/v1/functions/%s/invoke" % name, 200))
            times = [t for _, t in answers]
            statuses = {}
            for st, _ in answers:
                statuses[st] = statuses.get(st, 0) + 1
            cold_calls = sum(s.metric('ignis_cold_starts_total{function="%s",reason="%s"}' % (name, r)) or 0
                          for r in ("first_call", "after_idle", "scale_out", "new_version"))
            results["burst"][runtime] = {
                "requests": 200, "statuses": statuses,
                "5xx": sum(v for k, v in statuses.items() if k >= 500 or k == 0),
                "p50_ms": statistics.median(times), "p99_ms": pct(times, 99), "max_ms": max(times),
                "cold_calls": cold_calls,
            }
    finally:
        s.close()


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            return sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except OSError:
        return 0


def instance_groups(server_pid):
    """{instance cgroup: [pids]} of the server's instances, from /proc/PID/cgroup."""
    groups = {}
    pattern = re.compile(r"/i-(%d-\d+)$" % server_pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = open("/proc/%s/cgroup" % entry).read()
        except OSError:
            continue
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(",") or controllers == "":
                m = pattern.search(path)
                if m:
                    groups.setdefault(m.group(1), set()).add(int(entry))
    return groups


def comm(pid):
    try:
        return open("/proc/%d/comm" % pid).read().strip()
    except OSError:
        return ""


def density(results):
    n = 10
    s = Server("--prewarm", "0")
    try:
        for runtime in HELLO:
            name = "dense-" + runtime[:2]
            before = set(instance_groups(s.proc.pid))
            s.deploy(name, runtime, min_instances=n, max_instances=n)
            s.wait("%d idle instances" % n, lambda: s.instances(name)["idle"] == n)
            interp = "python" if runtime == "python" else "bun"
            groups = {g: pids for g, pids in instance_groups(s.proc.pid).items()
                      if g not in before and any(comm(p).startswith(interp) for p in pids)}
            per = [sum(pss_kb(p) for p in pids) / 1024 for pids in groups.values()]
            avg = statistics.mean(per)
            results["density"][runtime] = {
                "instances": len(per), "pss_mb_avg": avg, "pss_mb_max": max(per),
                "fit_in_8gib": int(8192 // avg),
            }
            s.call("DELETE", "/v1/functions/" + name)
    finally:
        s.close()


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1/hybrid"
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_mb": mem, "kernel": platform.release(), "cgroup": cgroup}


def table(r):
    rows = []

    def row(scenario, runtime, value, target, ok):
        rows.append((scenario, runtime, value, target, "ok" if ok else "MISSED"))

    for rt in HELLO:
        w = r["warm"][rt]
        row("warm, 1 connection", rt, "p50 %.0f us, p99 %.0f us" % (w["p50_us"], w["p99_us"]),
            "p50 <= 200 us, p99 <= 1 ms", w["p50_us"] <= 200 and w["p99_us"] <= 1000)
    for rt in HELLO:
        t = r["throughput"][rt]
        goal = 30000 if rt == "javascript" else 10000
        row("throughput, 64 connections", rt, "%.0f/s (non-2xx %d)" % (t["rps"], t["non_2xx"]),
            ">= %d/s" % goal, t["rps"] >= goal and t["non_2xx"] == 0)
    for rt in HELLO:
        c = r["cold_no_prewarm"][rt]
        goal = 15 if rt == "javascript" else 25
        row("cold start, no pre-warm", rt, "p50 %.1f ms (p90 %.1f, init %.1f)" % (c["p50_ms"], c["p90_ms"], c["init_p50_ms"]),
            "p50 <= %d ms" % goal, c["p50_ms"] <= goal)
    for rt in HELLO:
        cost = r["cold_no_prewarm"][rt]["p50_ms"] - r["cold_no_sandbox"][rt]["p50_ms"]
        row("sandbox cost (cold, no pre-warm)", rt, "+%.1f ms (unsandboxed p50 %.1f ms)" % (cost, r["cold_no_sandbox"][rt]["p50_ms"]),
            "<= 5 ms", cost <= 5)
    for rt in HELLO:
        c = r["cold_prewarmed"][rt]
        row("cold start, pre-warmed", rt, "p50 %.1f ms (p90 %.1f, init %.1f)" % (c["p50_ms"], c["p90_ms"], c["init_p50_ms"]),
            "p50 <= 5 ms", c["p50_ms"] <= 5)
    for rt in HELLO:
        b = r["burst"][rt]
        row("burst 200, max 50", rt, "5xx %d, p50 %.0f ms, p99 %.0f ms, %d cold calls" % (b["5xx"], b["p50_ms"], b["p99_ms"], b["cold_calls"]),
            "no 5xx, p99 <= 1 s", b["5xx"] == 0 and b["p99_ms"] <= 1000)
    for rt in HELLO:
        d = r["density"][rt]
        row("density, idle instance", rt, "PSS %.1f MB, %d fit in 8 GiB" % (d["pss_mb_avg"], d["fit_in_8gib"]), "(reported)", True)
    widths = [max(len(str(x[i])) for x in rows + [("scenario", "runtime", "value", "target", "")]) for i in range(5)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    print(line(("scenario", "runtime", "value", "target", "")))
    for x in rows:
        print(line(x))


def main():
    if not os.path.exists(BIN):
        raise SystemExit("build the release binary first: make build")
    results = {"machine": machine(), "duration": DURATION, "samples": SAMPLES,
               "warm": {}, "throughput": {}, "cold_no_sandbox": {}, "cold_no_prewarm": {}, "cold_prewarmed": {},
               "burst": {}, "density": {}}
    print("machine:", json.dumps(results["machine"]), file=sys.stderr)
    for step, f in [("warm and throughput", warm),
                    ("cold, no sandbox (for the sandbox's cost)", lambda r: cold(r, False, sandbox=False)),
                    ("cold, no pre-warm", lambda r: cold(r, False)),
                    ("cold, pre-warmed", lambda r: cold(r, True)), ("burst", burst), ("density", density)]:
        print("== " + step, file=sys.stderr)
        f(results)
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/latest.json"), "w") as f:
        json.dump(results, f, indent=2)
    table(results)
    print("\nJSON: target/bench/latest.json")


if __name__ == "__main__":
    main()
