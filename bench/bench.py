"""`make bench`: the release server, sandbox on, the seed's hello handlers, real HTTP.

Scenarios (targets for a 2-core machine, from issue 4):
  warm        one keep-alive connection (wrk): p50 <= 200 us, p99 <= 1 ms
  throughput  64 connections (wrk): >= 30,000/s JavaScript, >= 10,000/s Python
  cold        first call of a freshly deployed function, end to end, p50 (and p90):
              without pre-warming (--prewarm 0) <= 15 ms JS / <= 25 ms Python;
              with the default pre-warming <= 5 ms; and without the sandbox, for the
              sandbox's cost (issue 3: <= 5 ms)
  burst       200 simultaneous requests, no instance yet, max_instances 50:
              no 5xx, p99 <= 1 s
  density     PSS per idle instance (init + runtime processes), and how many fit in 8 GiB
  microvm     the microvm tier (a guest per instance, `make microvm`): cold start taking a
              guest restored from a snapshot ahead of time (the default), p50 <= 100 ms
              under TCG; cold start restoring its guest on demand (--microvm-pool 0,
              reported); cold start booting the guest (--no-microvm-snapshots), p50 <=
              1.5 s; warm latency on one connection through virtio-serial (reported); PSS
              per idle restored guest (reported)
  deps        a function with a requirements.txt (numpy, from PyPI through uv): deploy
              time with the dependency set not cached and cached, and the cold start of
              a function importing numpy, pooled (--prewarm 2) and not (reported)

Prints a table and writes target/bench/latest.json. Python 3.11 standard library only.
Knobs (environment):
  DURATION   wrk duration per measurement (default 10s)
  WARMUP     wrk load before measuring, to start the instances (default 2s)
  SAMPLES    cold starts per case (default 25)
  SCENARIOS  comma-separated subset of: warm, cold, burst, density, microvm, deps (default all;
             "warm" covers warm latency and throughput)
  OUT        JSON output (default target/bench/latest.json)
"""

import asyncio
import atexit
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ignis")
POST_LUA = os.path.join(ROOT, "bench", "post.lua")
DURATION = os.environ.get("DURATION", "10s")
WARMUP = os.environ.get("WARMUP", "2s")
SAMPLES = int(os.environ.get("SAMPLES", "25"))
SCENARIOS = [s.strip() for s in os.environ.get("SCENARIOS", "warm,cold,burst,density,microvm,deps").split(",") if s.strip()]
OUT = os.path.join(ROOT, os.environ.get("OUT", "target/bench/latest.json"))

RUNTIMES = ("python", "javascript")
SHORT = {"python": "py", "javascript": "js"}
# The label of ignis_prewarmed_instances, and the interpreter's /proc/PID/comm prefix.
POOL_LABEL = {"python": "python", "javascript": "bun"}
COMM = {"python": "python", "javascript": "bun"}
HELLO = {
    "python": open(os.path.join(ROOT, "tests/e2e/fixtures/hello.py")).read(),
    "javascript": open(os.path.join(ROOT, "tests/e2e/fixtures/hello.js")).read(),
}
EVENT = b'{"name": "bench"}'  # the same event as post.lua
EXPECTED = b"Hello, bench!"

DEFAULT_PREWARM = 2  # the server's default (--prewarm)
# Settings a user would pick for a hot function on 2 cores: room to scale out, and for
# Bun (async) 32 calls per instance, so 64 connections fill two instances, one per core
# (an instance has 1 vCPU by default). Python handlers run one call at a time.
THROUGHPUT_SETTINGS = {
    "python": {"max_instances": 8, "concurrency": 1},
    "javascript": {"max_instances": 8, "concurrency": 32},
}
BURST = {"requests": 200, "max_instances": 50}
DENSITY_INSTANCES = 10
WAIT_TIMEOUT = 60.0


class BenchError(Exception):
    pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def wait_until(what, predicate, within=WAIT_TIMEOUT, every=0.005):
    """Polls `predicate` until it is true; BenchError after `within` seconds."""
    end = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise BenchError("timed out after %.0f s waiting until %s" % (within, what))
        time.sleep(every)


# ---------------------------------------------------------------------------- server

LIVE_SERVERS = []


class Server:
    """One `ignis serve` with its own data directory, stopped by close()."""

    def __init__(self, *, prewarm, sandbox=True, extra=()):
        self.prewarm = prewarm
        self.data = tempfile.mkdtemp(prefix="ignis-bench-")
        self.log_path = os.path.join(self.data, "server.log")
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(self.data, "data"),
                "--prewarm", str(prewarm), *extra]
        if not sandbox:
            args.append("--insecure-no-sandbox")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IGNIS_")}
        env.setdefault("RUST_LOG", "warn")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self.log_file, text=True)
        LIVE_SERVERS.append(self)
        self.conn = None
        m = None
        # The line comes first thing; readline ends at EOF if the server dies.
        for line in self.proc.stdout:
            m = re.search(r"ignis listening on (http://\S+)", line)
            if m:
                break
        if not m:
            self.close()
            raise BenchError("the server did not start: " + self.log_tail())
        self.url = m.group(1)
        # Keep reading stdout so that the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        u = urllib.parse.urlparse(self.url)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.version = self.json("GET", "/healthz")[1].get("version")

    def log_tail(self, n=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def close(self):
        if self not in LIVE_SERVERS:
            return
        LIVE_SERVERS.remove(self)
        if self.conn:
            self.conn.close()  # graceful shutdown waits for open connections
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        # The instances exit once their server is gone; make sure none is left behind.
        try:
            wait_until("the instances of server %d are gone" % self.proc.pid,
                       lambda: not instance_groups(self.proc.pid), within=10, every=0.05)
        except BenchError:
            for pids in instance_groups(self.proc.pid).values():
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        shutil.rmtree(self.data, ignore_errors=True)

    def call(self, method, path, body=None):
        """(status, headers, body) over the keep-alive connection (reopened if dropped)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, data, {"content-type": "application/json"})
                r = self.conn.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()
                if attempt == 2 or self.proc.poll() is not None:
                    raise BenchError("the server is gone: " + self.log_tail())

    def json(self, method, path, body=None):
        status, _, data = self.call(method, path, body)
        return status, json.loads(data or b"null")

    def deploy(self, name, runtime, **settings):
        spec = {"name": name, "runtime": runtime, "code": HELLO[runtime], **settings}
        status, f = self.json("POST", "/v1/functions?wait=true", spec)
        if status != 201 or f.get("state") != "ready":
            raise BenchError("deploy of %s failed: %s %s" % (name, status, f))
        return f

    def delete(self, name):
        self.call("DELETE", "/v1/functions/" + name)

    def instances(self, name):
        return self.json("GET", "/v1/functions/" + name)[1]["instances"]

    def no_instance(self, name):
        return self.instances(name) == {"starting": 0, "idle": 0, "busy": 0}

    def metrics(self):
        """{(name, frozenset of label pairs): value} from /metrics."""
        status, _, page = self.call("GET", "/metrics")
        if status != 200:
            raise BenchError("GET /metrics answered %d" % status)
        out = {}
        for line in page.decode().splitlines():
            m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
            if m:
                labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
                out[(m.group(1), labels)] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        """One series' value, or None when /metrics does not have it."""
        return self.metrics().get((name, frozenset(labels.items())))

    def pool_full(self, runtime):
        return self.metric("ignis_prewarmed_instances", runtime=POOL_LABEL[runtime]) == self.prewarm


def stop_all():
    for s in list(LIVE_SERVERS):
        try:
            s.close()
        except Exception:  # best effort at exit
            pass


def on_signal(signum, _frame):
    raise SystemExit("interrupted by signal %d" % signum)


# ------------------------------------------------------------------------------- wrk

def wrk(url, connections, threads, duration):
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d" + duration, "--latency",
           "-s", POST_LUA, url]
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout
    if p.returncode != 0:
        raise BenchError("wrk failed (%d): %s %s" % (p.returncode, out, p.stderr))

    def latency_us(percent):
        m = re.search(r"^\s+%d%%\s+([\d.]+)(us|ms|s|m)\s*$" % percent, out, re.M)
        if not m:
            raise BenchError("no %d%% latency in the wrk output:\n%s" % (percent, out))
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "connections": connections, "threads": threads, "duration": duration,
        "requests": int(total.group(1)) if total else None,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_us": latency_us(50), "p75_us": latency_us(75), "p90_us": latency_us(90), "p99_us": latency_us(99),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
    }


# ------------------------------------------------------------------------- scenarios

def pct(values, p):
    """Nearest-rank percentile."""
    values = sorted(values)
    return values[max(0, min(len(values) - 1, -(-len(values) * p // 100) - 1))]


def scenario_warm(results):
    """Warm latency on one keep-alive connection, and throughput on 64."""
    s = Server(prewarm=DEFAULT_PREWARM)
    try:
        for runtime in RUNTIMES:
            name = "hello-" + SHORT[runtime]
            settings = THROUGHPUT_SETTINGS[runtime]
            s.deploy(name, runtime, **settings)
            url = s.url + "/v1/functions/%s/invoke" % name
            status, _, body = s.call("POST", "/v1/functions/%s/invoke" % name, EVENT)
            if status != 200 or EXPECTED not in body:
                raise BenchError("%s answered %d %r" % (name, status, body[:200]))
            log("   %s: warm-up (%s, 64 connections)" % (runtime, WARMUP))
            wrk(url, 64, 2, WARMUP)  # starts the instances the load needs
            started = s.instances(name)
            log("   %s: 1 connection, %s" % (runtime, DURATION))
            results["warm"][runtime] = wrk(url, 1, 1, DURATION)
            log("   %s: 64 connections, %s" % (runtime, DURATION))
            many = wrk(url, 64, 2, DURATION)
            many["settings"] = settings
            many["instances_after_warmup"] = started
            many["instances_after"] = s.instances(name)
            results["throughput"][runtime] = many
            s.delete(name)
    finally:
        s.close()


def scenario_cold(results, key, prewarm, sandbox=True):
    """First call of freshly deployed functions, one sample per function."""
    s = Server(prewarm=prewarm, sandbox=sandbox)
    try:
        for runtime in RUNTIMES:
            wall, init = [], []
            pool_waits = []
            for i in range(SAMPLES):
                name = "cold-%s-%d" % (SHORT[runtime], i)
                # idle_timeout_secs 0: the deploy's check instance stops right after.
                s.deploy(name, runtime, idle_timeout_secs=0)
                wait_until("%s has no instance" % name, lambda: s.no_instance(name))
                if prewarm:
                    # The deploy may have used a pre-warmed instance: measure the
                    # pre-warmed path only once the pool is full again.
                    t = time.perf_counter()
                    wait_until("the %s pre-warmed pool is back at %d" % (runtime, prewarm),
                               lambda: s.pool_full(runtime))
                    pool_waits.append((time.perf_counter() - t) * 1000)
                start = time.perf_counter()
                status, headers, body = s.call("POST", "/v1/functions/%s/invoke" % name, EVENT)
                wall.append((time.perf_counter() - start) * 1000)
                if status != 200 or EXPECTED not in body:
                    raise BenchError("%s answered %d %r" % (name, status, body[:200]))
                if headers.get("x-ignis-cold-start") != "true":
                    raise BenchError("%s: the first call was not cold: %s" % (name, headers))
                init.append(float(headers.get("x-ignis-init-ms", "nan")))
                s.delete(name)
            results[key][runtime] = {
                "samples": SAMPLES, "prewarm": prewarm, "sandbox": sandbox,
                "p50_ms": statistics.median(wall), "p90_ms": pct(wall, 90),
                "min_ms": min(wall), "max_ms": max(wall),
                "init_p50_ms": statistics.median(init), "init_p90_ms": pct(init, 90),
                "pool_refill_wait_p50_ms": statistics.median(pool_waits) if pool_waits else None,
                "wall_ms": [round(x, 3) for x in wall], "init_ms": init,
            }
    finally:
        s.close()


async def burst_requests(host, port, path, n):
    """Opens n connections, then sends one request on each at once: [(status, ms, cold)].

    Status 0: the connection failed or closed without an answer."""
    async def connect():
        try:
            return await asyncio.open_connection(host, port)
        except OSError as e:
            return e

    conns = await asyncio.gather(*(connect() for _ in range(n)))
    request = (b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\nconnection: close\r\n\r\n%s"
               % (path.encode(), host.encode(), port, len(EVENT), EVENT))

    async def answer(conn, start):
        if isinstance(conn, Exception):
            return 0, 0.0, False, repr(conn)
        reader, writer = conn
        try:
            raw = await reader.read()  # to the end: connection: close
            ms = (time.perf_counter() - start) * 1000
            head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            status = int(head[0].split()[1]) if head and head[0].startswith("HTTP/") else 0
            cold = any(h.lower().replace(" ", "") == "x-ignis-cold-start:true" for h in head[1:])
            return status, ms, cold, None
        except OSError as e:
            return 0, (time.perf_counter() - start) * 1000, False, repr(e)
        finally:
            writer.close()

    # All the requests leave together: written without yielding in between.
    start = time.perf_counter()
    for conn in conns:
        if not isinstance(conn, Exception):
            conn[1].write(request)
    return await asyncio.gather(*(answer(c, start) for c in conns))


class PeakWatch:
    """Polls /metrics on its own connection while a burst runs: the most instances of
    one function alive at once (starting + idle + busy) and the longest queue."""

    def __init__(self, server, name):
        self.server, self.name = server, name
        self.instances = self.queue = self.polls = 0
        self.done = threading.Event()

    def poll(self):
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        try:
            while True:
                conn.request("GET", "/metrics")
                page = conn.getresponse().read().decode()
                self.polls += 1
                live = queue = 0
                for m in re.finditer(r'^ignis_(instances|queue_depth)\{([^}]*)\} (\S+)$', page, re.M):
                    if 'function="%s"' % self.name in m.group(2):
                        if m.group(1) == "instances":
                            live += int(float(m.group(3)))
                        else:
                            queue = int(float(m.group(3)))
                self.instances = max(self.instances, live)
                self.queue = max(self.queue, queue)
                if self.done.wait(0.002):
                    return
        finally:
            conn.close()

    def __enter__(self):
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(30)


def scenario_burst(results):
    s = Server(prewarm=DEFAULT_PREWARM)
    try:
        for runtime in RUNTIMES:
            name = "burst-" + SHORT[runtime]
            s.deploy(name, runtime, max_instances=BURST["max_instances"], idle_timeout_secs=0)
            wait_until("%s has no instance" % name, lambda: s.no_instance(name))
            wait_until("the %s pre-warmed pool is full" % runtime, lambda: s.pool_full(runtime))
            with PeakWatch(s, name) as peak:
                answers = asyncio.run(burst_requests(s.host, s.port, "/v1/functions/%s/invoke" % name,
                                                     BURST["requests"]))
            statuses = {}
            for status, _, _, _ in answers:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            times = [ms for status, ms, _, _ in answers if status]
            m = s.metrics()
            fn = lambda metric, **labels: m.get((metric, frozenset(dict(function=name, **labels).items())), 0)
            results["burst"][runtime] = {
                "requests": BURST["requests"], "max_instances": BURST["max_instances"],
                "idle_timeout_secs": 0, "statuses": statuses,
                "5xx": sum(v for k, v in statuses.items() if int(k) >= 500),
                "no_answer": statuses.get("0", 0),
                "errors": sorted({e for *_, e in answers if e})[:5],
                "cold_answers": sum(1 for _, _, cold, _ in answers if cold),
                "p50_ms": statistics.median(times) if times else None,
                "p99_ms": pct(times, 99) if times else None,
                "max_ms": max(times) if times else None,
                # Invocations that waited for their instance to start (one per instance
                # started for a waiting call; instances that found the queue empty once
                # started are not counted here, but in peak_instances).
                "cold_invocations": sum(fn("ignis_cold_starts_total", reason=r)
                                        for r in ("first_call", "new_version", "after_idle", "scale_out")),
                "peak_instances": peak.instances, "peak_queue_depth": peak.queue,
                "metrics_polls": peak.polls,
                "throttled": sum(fn("ignis_throttles_total", reason=r)
                                 for r in ("queue_full", "deadline", "capacity_exhausted")),
            }
            s.delete(name)
    finally:
        s.close()


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return 0


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def instance_groups(server_pid):
    """{instance id: {pids}} of one server's instances. Instance cgroups are named
    i-<server pid>-<n> (crates/sandbox/src/cgroup.rs), in the v2 hierarchy or the v1
    memory one; /proc/PID/cgroup tells where each process is."""
    groups = {}
    pattern = re.compile(r"/i-(%d-\d+)$" % server_pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % entry) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and (parts[1] == "" or "memory" in parts[1].split(",")):
                m = pattern.search(parts[2])
                if m:
                    groups.setdefault(m.group(1), set()).add(int(entry))
    return groups


def scenario_density(results):
    n = DENSITY_INSTANCES
    # No pre-warmed instances, so every instance with an interpreter is the function's.
    s = Server(prewarm=0)
    try:
        for runtime in RUNTIMES:
            name = "dense-" + SHORT[runtime]
            # Parked inits (no interpreter yet) may become this function's instances:
            # only groups that already ran an interpreter are someone else's.
            before = {g for g, pids in instance_groups(s.proc.pid).items()
                      if any(comm(p).startswith(tuple(COMM.values())) for p in pids)}
            s.deploy(name, runtime, min_instances=n, max_instances=n)
            wait_until("%s has %d idle instances" % (name, n),
                       lambda: s.instances(name) == {"starting": 0, "idle": n, "busy": 0}, within=120)
            groups = {g: pids for g, pids in instance_groups(s.proc.pid).items()
                      if g not in before and any(comm(p).startswith(COMM[runtime]) for p in pids)}
            if len(groups) != n:
                raise BenchError("%s: found %d instance cgroups with %s, expected %d"
                                 % (name, len(groups), COMM[runtime], n))
            total, runtime_only = [], []
            for pids in groups.values():
                total.append(sum(pss_kb(p) for p in pids) / 1024)
                runtime_only.append(sum(pss_kb(p) for p in pids if comm(p).startswith(COMM[runtime])) / 1024)
            avg = statistics.mean(total)
            results["density"][runtime] = {
                "instances": n, "memory_mb": 128,
                "processes_per_instance": statistics.mean(len(p) for p in groups.values()),
                "pss_mb_avg": avg, "pss_mb_min": min(total), "pss_mb_max": max(total),
                "runtime_process_pss_mb_avg": statistics.mean(runtime_only),
                "fit_in_8gib": int(8192 // avg) if avg else None,
                # What the server admits in 8 GiB of --memory-capacity at memory_mb 128.
                "fit_in_8gib_by_reservation": 8192 // 128,
            }
            s.delete(name)
            wait_until("the instances of %s are gone" % name,
                       lambda: not any(g in groups for g in instance_groups(s.proc.pid)), within=30)
    finally:
        s.close()


MICROVM_SAMPLES = int(os.environ.get("MICROVM_SAMPLES", "10"))


def microvm_cold(s, runtime, tag, pooled=False):
    """Cold calls of freshly deployed microvm functions: [(wall ms, cold-start record)].
    With `pooled`, each call first waits (polling /metrics) for a guest restored ahead of
    time: the cold start then takes it and only loads the function."""
    out = []
    for i in range(MICROVM_SAMPLES):
        name = "vm-%s-%s-%d" % (tag, SHORT[runtime], i)
        s.deploy(name, runtime, isolation="microvm", idle_timeout_secs=0)
        wait_until("%s has no instance" % name, lambda: s.no_instance(name))
        if pooled and i > 0:
            wait_until("a %s guest restored ahead of time" % runtime,
                       lambda: (s.metric("ignis_microvm_pre_restored_guests", runtime=POOL_LABEL[runtime]) or 0) >= 1,
                       within=60)
        start = time.perf_counter()
        status, headers, body = s.call("POST", "/v1/functions/%s/invoke" % name, EVENT)
        wall = (time.perf_counter() - start) * 1000
        if status != 200 or EXPECTED not in body:
            raise BenchError("%s answered %d %r" % (name, status, body[:200]))
        if headers.get("x-ignis-cold-start") != "true":
            raise BenchError("%s: the first call was not cold: %s" % (name, headers))
        record = s.json("GET", "/v1/invocations/" + headers["x-ignis-invocation-id"])[1]
        out.append((wall, record.get("init") or {}))
        s.delete(name)
    return out


def cold_summary(samples):
    wall = [w for w, _ in samples]
    part = lambda k: [c[k] for _, c in samples if c.get(k) is not None]
    summary = {"samples": len(wall), "p50_ms": statistics.median(wall), "p90_ms": pct(wall, 90),
               "min_ms": min(wall), "max_ms": max(wall), "wall_ms": [round(x, 1) for x in wall]}
    for k in ("restore_ms", "boot_ms", "load_ms"):
        if part(k):
            summary[k.replace("_ms", "_p50_ms")] = statistics.median(part(k))
    return summary


def scenario_microvm(results):
    r = results["microvm"]
    # Without guests restored ahead of time: restores on demand, warm calls, idle guests.
    s = Server(prewarm=0, extra=["--microvm-pool", "0"])
    try:
        tier = s.json("GET", "/v1/runtimes")[1].get("isolation", {}).get("microvm", {})
        if not tier.get("available"):
            raise BenchError("the microvm tier is unavailable: %s" % tier.get("reason"))
        r["accelerator"], r["guest_kernel"] = tier.get("accelerator"), tier.get("guest_kernel")
        for runtime in RUNTIMES:
            # The first deploy of a runtime makes its snapshot; time it apart.
            t = time.perf_counter()
            s.deploy("vm-first-" + SHORT[runtime], runtime, isolation="microvm")
            r.setdefault("first_deploy_with_snapshot_ms", {})[runtime] = (time.perf_counter() - t) * 1000
            name = "vm-warm-" + SHORT[runtime]
            s.deploy(name, runtime, isolation="microvm", min_instances=1)
            url = s.url + "/v1/functions/%s/invoke" % name
            wrk(url, 1, 1, WARMUP)
            r.setdefault("warm", {})[runtime] = wrk(url, 1, 1, DURATION)
            s.delete(name)
            s.delete("vm-first-" + SHORT[runtime])
            r.setdefault("cold_restored", {})[runtime] = cold_summary(microvm_cold(s, runtime, "r"))
        # PSS of idle restored guests (their QEMU processes: guest RAM mapped privately
        # from the snapshot's file, so clones share the pages they have not changed).
        n = 3
        name = "vm-dense-py"
        s.deploy(name, "python", isolation="microvm", min_instances=n, max_instances=n)
        wait_until("%s has %d idle instances" % (name, n),
                   lambda: s.instances(name) == {"starting": 0, "idle": n, "busy": 0}, within=120)
        qemus = [p for pids in instance_groups(s.proc.pid).values() for p in pids
                 if comm(p).startswith("qemu-system")]
        if len(qemus) != n:
            raise BenchError("found %d QEMU processes, expected %d" % (len(qemus), n))
        pss = [pss_kb(p) / 1024 for p in qemus]
        r["idle_guest_pss_mb"] = {"guests": n, "avg": statistics.mean(pss), "min": min(pss), "max": max(pss)}
        s.delete(name)
    finally:
        s.close()
    # The default: a cold start takes a guest restored (and warmed up) ahead of time. The
    # first sample of each runtime has none yet (it restores on demand; not counted).
    s = Server(prewarm=0)
    try:
        for runtime in RUNTIMES:
            samples = microvm_cold(s, runtime, "p", pooled=True)[1:]
            r.setdefault("cold_pre_restored", {})[runtime] = cold_summary(samples)
    finally:
        s.close()
    s = Server(prewarm=0, extra=["--no-microvm-snapshots"])
    try:
        for runtime in RUNTIMES:
            r.setdefault("cold_booted", {})[runtime] = cold_summary(microvm_cold(s, runtime, "b"))
    finally:
        s.close()


# ---------------------------------------------------------------------------- report

def machine():
    def first(path, prefix, conv=lambda v: v):
        try:
            with open(path) as f:
                return next((conv(l.split(":", 1)[1].strip()) for l in f if l.startswith(prefix)), None)
        except OSError:
            return None

    try:
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    except OSError:
        wrk_version = None
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "memory_mb": first("/proc/meminfo", "MemTotal", lambda v: int(v.split()[0]) // 1024),
        "kernel": platform.release(),
        "cgroup": "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1",
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(), "wrk": wrk_version,
    }


NUMPY_APP = ("import numpy as np\n\ndef handler(event, context):\n"
             "    return {'sum': int(np.arange(10).sum())}\n")
NUMPY_FILES = {"app.py": NUMPY_APP, "requirements.txt": "numpy==2.1.3\n"}


def scenario_deps(results):
    """Deploys of a numpy function with an empty and a filled dependency cache, then cold
    starts of functions importing numpy (the set cached), pooled and not."""
    cache = tempfile.mkdtemp(prefix="ignis-bench-deps-")
    out = results["deps"]
    try:
        for prewarm in (0, DEFAULT_PREWARM):
            s = Server(prewarm=prewarm, extra=("--deps-cache", cache))
            try:
                if prewarm == 0:
                    for label in ("uncached", "cached"):
                        spec = {"name": "np-" + label, "runtime": "python", "handler": "app.handler",
                                "memory_mb": 256, "files": NUMPY_FILES}
                        start = time.perf_counter()
                        status, f = s.json("POST", "/v1/functions?wait=true", spec)
                        ms = (time.perf_counter() - start) * 1000
                        if status != 201 or f.get("state") != "ready":
                            raise BenchError("deploy of %s failed: %s %s" % (spec["name"], status, f))
                        build = s.json("GET", "/v1/functions/np-%s/versions/1/build" % label)[1]
                        want = "succeeded" if label == "uncached" else "cached"
                        if build["status"] != want:
                            raise BenchError("np-%s: build %s, not %s" % (label, build["status"], want))
                        out["deploy_%s_ms" % label] = ms
                        s.delete("np-" + label)
                wall, init = [], []
                for i in range(min(SAMPLES, 10)):
                    name = "np-cold-%d" % i
                    spec = {"name": name, "runtime": "python", "handler": "app.handler",
                            "memory_mb": 256, "idle_timeout_secs": 0, "files": NUMPY_FILES}
                    status, f = s.json("POST", "/v1/functions?wait=true", spec)
                    if status != 201 or f.get("state") != "ready":
                        raise BenchError("deploy of %s failed: %s %s" % (name, status, f))
                    wait_until("%s has no instance" % name, lambda: s.no_instance(name))
                    if prewarm:
                        wait_until("the python pool is full", lambda: s.pool_full("python"))
                    start = time.perf_counter()
                    status, headers, body = s.call("POST", "/v1/functions/%s/invoke" % name, b"{}")
                    wall.append((time.perf_counter() - start) * 1000)
                    if status != 200 or json.loads(body or b"null") != {"sum": 45}:
                        raise BenchError("%s answered %d %r" % (name, status, body[:200]))
                    if headers.get("x-ignis-cold-start") != "true":
                        raise BenchError("%s: the first call was not cold" % name)
                    init.append(float(headers.get("x-ignis-init-ms", "nan")))
                    s.delete(name)
                out["cold_prewarm_%d" % prewarm] = {
                    "samples": len(wall), "p50_ms": statistics.median(wall), "p90_ms": pct(wall, 90),
                    "init_p50_ms": statistics.median(init), "wall_ms": [round(x, 3) for x in wall],
                }
            finally:
                s.close()
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def rows(r):
    """[(scenario, runtime, value, target, ok)]; ok None = reported only."""
    out = []
    for rt in RUNTIMES:
        w = r["warm"].get(rt)
        if w:
            out.append(("warm, 1 connection", rt, "p50 %.0f us, p99 %.0f us" % (w["p50_us"], w["p99_us"]),
                        "p50 <= 200 us, p99 <= 1 ms", w["p50_us"] <= 200 and w["p99_us"] <= 1000))
    for rt in RUNTIMES:
        t = r["throughput"].get(rt)
        if t:
            goal = 30000 if rt == "javascript" else 10000
            st = t["settings"]
            out.append(("throughput, 64 connections", rt,
                        "%.0f/s, non-2xx %d (max_instances %d, concurrency %d)"
                        % (t["rps"], t["non_2xx"], st["max_instances"], st["concurrency"]),
                        ">= %d/s" % goal, t["rps"] >= goal and t["non_2xx"] == 0))
    for key, title in [("cold_no_prewarm", "cold start, --prewarm 0"),
                       ("cold_prewarmed", "cold start, pre-warmed")]:
        for rt in RUNTIMES:
            c = r[key].get(rt)
            if c:
                goal = 5 if key == "cold_prewarmed" else 15 if rt == "javascript" else 25
                out.append((title, rt, "p50 %.1f ms, p90 %.1f ms (server init p50 %.1f ms)"
                            % (c["p50_ms"], c["p90_ms"], c["init_p50_ms"]),
                            "p50 <= %d ms" % goal, c["p50_ms"] <= goal))
    for rt in RUNTIMES:
        sand, bare = r["cold_no_prewarm"].get(rt), r["cold_no_sandbox"].get(rt)
        if sand and bare:
            cost = sand["p50_ms"] - bare["p50_ms"]
            out.append(("sandbox cost, cold --prewarm 0", rt, "%+.1f ms (unsandboxed p50 %.1f ms)"
                        % (cost, bare["p50_ms"]), "<= 5 ms", cost <= 5))
    for rt in RUNTIMES:
        b = r["burst"].get(rt)
        if b:
            p = lambda v: "%.0f" % v if v is not None else "-"
            out.append(("burst %d, max_instances %d" % (b["requests"], b["max_instances"]), rt,
                        "5xx %d, no answer %d, p50 %s ms, p99 %s ms, peak %d instances"
                        % (b["5xx"], b["no_answer"], p(b["p50_ms"]), p(b["p99_ms"]), b["peak_instances"]),
                        "no 5xx, p99 <= 1 s",
                        b["5xx"] == 0 and b["no_answer"] == 0 and b["p99_ms"] is not None and b["p99_ms"] <= 1000))
    for rt in RUNTIMES:
        d = r["density"].get(rt)
        if d:
            out.append(("density, idle instance", rt, "PSS %.1f MiB, %d fit in 8 GiB"
                        % (d["pss_mb_avg"], d["fit_in_8gib"]), "(reported)", None))
    m = r.get("microvm", {})
    accel = m.get("accelerator") or "?"
    for key, title, goal in [("cold_pre_restored", "microvm cold start, restored ahead of time (%s)" % accel, 100),
                             ("cold_restored", "microvm cold start, restored on demand (%s)" % accel, None),
                             ("cold_booted", "microvm cold start, booted (%s)" % accel, 1500)]:
        for rt in RUNTIMES:
            c = m.get(key, {}).get(rt)
            if c:
                parts = ", ".join("%s %.0f ms" % (k.replace("_p50_ms", ""), c[k])
                                  for k in ("restore_p50_ms", "boot_p50_ms", "load_p50_ms") if k in c)
                out.append((title, rt, "p50 %.0f ms, p90 %.0f ms (%s)" % (c["p50_ms"], c["p90_ms"], parts),
                            "p50 <= %d ms" % goal if goal else "(reported)",
                            c["p50_ms"] <= goal if goal else None))
    for rt in RUNTIMES:
        w = m.get("warm", {}).get(rt)
        if w:
            out.append(("microvm warm, 1 connection (%s)" % accel, rt,
                        "p50 %.0f us, p99 %.0f us" % (w["p50_us"], w["p99_us"]), "(reported)", None))
    if "idle_guest_pss_mb" in m:
        g = m["idle_guest_pss_mb"]
        out.append(("microvm idle restored guest (%s)" % accel, "python",
                    "PSS %.1f MiB avg (%d guests)" % (g["avg"], g["guests"]), "(reported)", None))
    d = r.get("deps", {})
    if "deploy_uncached_ms" in d:
        out.append(("deploy with requirements.txt (numpy)", "python",
                    "not cached %.0f ms, cached %.0f ms" % (d["deploy_uncached_ms"], d["deploy_cached_ms"]),
                    "(reported)", None))
    for prewarm in (0, DEFAULT_PREWARM):
        c = d.get("cold_prewarm_%d" % prewarm)
        if c:
            out.append(("cold start importing numpy, --prewarm %d" % prewarm, "python",
                        "p50 %.1f ms, p90 %.1f ms (server init p50 %.1f ms)"
                        % (c["p50_ms"], c["p90_ms"], c["init_p50_ms"]), "(reported)", None))
    for name, err in r["errors"].items():
        out.append((name, "-", "ERROR: " + err.splitlines()[0][:100], "", False))
    return out


def print_table(table):
    header = ("scenario", "runtime", "value", "target", "")
    cells = [header] + [(a, b, c, d, "pass" if ok else "-" if ok is None else "FAIL") for a, b, c, d, ok in table]
    widths = [max(len(str(row[i])) for row in cells) for i in range(5)]
    for row in cells:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def main():
    if not os.path.exists(BIN):
        raise SystemExit("build the release binary first: make build")
    unknown = set(SCENARIOS) - {"warm", "cold", "burst", "density", "microvm", "deps"}
    if unknown:
        raise SystemExit("unknown SCENARIOS: %s" % ", ".join(sorted(unknown)))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(stop_all)

    results = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"duration": DURATION, "warmup": WARMUP, "samples": SAMPLES, "scenarios": SCENARIOS,
                     "throughput": THROUGHPUT_SETTINGS, "burst": BURST,
                     "density_instances": DENSITY_INSTANCES, "default_prewarm": DEFAULT_PREWARM},
        "warm": {}, "throughput": {}, "cold_no_prewarm": {}, "cold_prewarmed": {}, "cold_no_sandbox": {},
        "burst": {}, "density": {}, "microvm": {}, "deps": {}, "errors": {},
    }
    log("machine: " + json.dumps(results["machine"]))
    steps = {
        "warm": [("warm latency and throughput", scenario_warm)],
        "cold": [("cold start, --prewarm 0", lambda r: scenario_cold(r, "cold_no_prewarm", 0)),
                 ("cold start, --prewarm %d" % DEFAULT_PREWARM,
                  lambda r: scenario_cold(r, "cold_prewarmed", DEFAULT_PREWARM)),
                 ("cold start, --prewarm 0 --insecure-no-sandbox (the sandbox's cost)",
                  lambda r: scenario_cold(r, "cold_no_sandbox", 0, sandbox=False))],
        "burst": [("burst", scenario_burst)],
        "density": [("density", scenario_density)],
        "microvm": [("the microvm tier", scenario_microvm)],
        "deps": [("dependencies (numpy through uv)", scenario_deps)],
    }
    for scenario in SCENARIOS:
        for title, run in steps[scenario]:
            log("== " + title)
            t = time.monotonic()
            try:
                run(results)
            except BenchError as e:
                log("   ERROR: %s" % e)
                results["errors"][title] = str(e)
            except Exception:
                log(traceback.format_exc())
                results["errors"][title] = traceback.format_exc(limit=1)
            log("   (%.0f s)" % (time.monotonic() - t))
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    table = rows(results)
    results["summary"] = [dict(zip(("scenario", "runtime", "value", "target", "pass"), row)) for row in table]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print_table(table)
    print("\nmachine: %(nproc)d cores, %(cpu)s, kernel %(kernel)s, cgroup %(cgroup)s, load %(loadavg_at_start)s"
          % {**results["machine"], "loadavg_at_start": " ".join("%.1f" % x for x in results["machine"]["loadavg_at_start"])})
    print("JSON: " + os.path.relpath(OUT, ROOT))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
