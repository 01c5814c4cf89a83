//! `/metrics` read by the real thing: Debian's `prometheus` scrapes a test server and its
//! query answers (counts, rates, the median bucket) agree with the invocation records;
//! `promtool check metrics` accepts a scrape; every histogram's `+Inf` bucket is its count;
//! each refusal is counted under its own reason.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

/// Sleeps `ms` milliseconds, then fails when asked to: calls whose durations spread over
/// several buckets, and two outcomes.
const PACE: &str = "import time\ndef handler(event, context):\n    time.sleep(event.get('ms', 0) / 1000)\n    if event.get('fail'):\n        raise ValueError('asked to fail')\n    return event.get('ms', 0)\n";

/// The server's histogram bounds, in seconds (see crates/control/src/metrics.rs).
const BOUNDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    60.0, 300.0,
];

/// A Prometheus server scraping one target; killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    http: Client,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (`host:port`) every 200 ms, with its data in a
    /// temporary directory, and waits until it is ready.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
                 scrape_configs:\n  - job_name: ignis\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write the config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (a test dependency: `make test-packages` installs it)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        wait_until("prometheus is ready", Duration::from_secs(60), || {
            p.http
                .get(format!("{}/-/ready", p.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        p
    }

    /// The data of an instant query at `time` (Unix seconds; now when None).
    fn query(&self, query: &str, time: Option<f64>) -> Value {
        let mut params = vec![("query", query.to_owned())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let answer: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&params)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {query}: {e}\n{}", self.log()));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"].clone()
    }

    /// The single value of an instant query, if it has one.
    fn scalar(&self, query: &str, time: Option<f64>) -> Option<f64> {
        let data = self.query(query, time);
        let result = data["result"].as_array().expect("a vector");
        assert!(result.len() <= 1, "{query}: one series expected: {data}");
        result.first().map(|s| number(&s["value"][1]))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A sample value as Prometheus writes it: a string ("21", "0.0125", "NaN").
fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a sample value: {v}"))
}

/// Runs `promtool check metrics` on `page`; its verdict and what it printed.
fn promtool_check(page: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool (installed with prometheus by `make test-packages`)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches('/')
}

#[test]
fn prometheus_queries_agree_with_the_invocation_records() {
    let s = Server::start();
    s.deploy("pace", "python", PACE, json!({}));
    let prometheus = Prometheus::start(host_port(&s.url));
    let succeeded = r#"ignis_invocations_total{function="pace",outcome="succeeded"}"#;
    // The first sample is taken before any call, so rates below start from zero.
    wait_until(
        "prometheus scraped the idle server",
        Duration::from_secs(60),
        || prometheus.scalar(succeeded, None) == Some(0.0),
    );

    // 24 calls: 7 quick, 7 of 10 ms, 7 of 40 ms (all succeeding), 3 quick failures.
    let mut events = Vec::new();
    for _ in 0..7 {
        events.extend([json!({"ms": 0}), json!({"ms": 10}), json!({"ms": 40})]);
    }
    events.extend(std::iter::repeat_n(json!({"fail": true}), 3));
    for e in &events {
        let a = s.invoke("pace", &e.to_string());
        assert!(a.status.is_success() || a.status.as_u16() == 500, "{}", a.body);
    }

    let list = s.get("/v1/functions/pace/invocations?limit=1000").json();
    let records = list["invocations"].as_array().expect("invocations");
    assert_eq!(records.len(), events.len(), "{list}");
    let count = |status: &str| records.iter().filter(|r| r["status"] == status).count();
    let (ok, failed) = (count("succeeded"), count("function_error"));
    assert_eq!((ok, failed), (21, 3), "{list}");
    let mut durations: Vec<f64> = records
        .iter()
        .map(|r| r["duration_ms"].as_f64().expect("duration_ms") / 1000.0)
        .collect();
    durations.sort_by(f64::total_cmp);

    // The exposition itself: promtool accepts it, and every histogram's +Inf bucket is
    // its count (they were cumulated twice before).
    let page = s.get("/metrics");
    let (clean, said) = promtool_check(&page.body);
    assert!(clean && said.trim().is_empty(), "promtool check metrics: {said}");
    for family in [
        "ignis_invocation_duration_seconds",
        "ignis_cold_start_duration_seconds",
    ] {
        let inf = s.metric(&format!(r#"{family}_bucket{{le="+Inf",function="pace"}}"#));
        let n = s.metric(&format!(r#"{family}_count{{function="pace"}}"#));
        assert_eq!(inf, n, "{family}: +Inf is the count");
    }
    assert_eq!(
        s.metric(r#"ignis_invocation_duration_seconds_count{function="pace"}"#),
        Some(24.0)
    );

    // Prometheus has them all: take the time of its newest sample, so that a rate over a
    // window holding every sample since the first is exact (no extrapolation at either end).
    let failed_series = r#"ignis_invocations_total{function="pace",outcome="function_error"}"#;
    let count_series = r#"ignis_invocation_duration_seconds_count{function="pace"}"#;
    wait_until("prometheus scraped every call", Duration::from_secs(60), || {
        prometheus.scalar(succeeded, None) == Some(21.0)
            && prometheus.scalar(failed_series, None) == Some(3.0)
            && prometheus.scalar(count_series, None) == Some(24.0)
    });
    let samples = prometheus.query(&format!("{succeeded}[10m]"), None);
    let values = samples["result"][0]["values"].as_array().expect("a range");
    let (first, last) = (&values[0], &values[values.len() - 1]);
    assert_eq!(
        number(&first[1]),
        0.0,
        "the series starts before the calls: {samples}"
    );
    let at = last[0].as_f64().expect("a sample time");

    let window = 600.0;
    let rate = |series: &str| {
        prometheus
            .scalar(&format!("rate({series}[10m])"), Some(at))
            .unwrap_or_else(|| panic!("a rate of {series}"))
    };
    for (series, recorded) in [(succeeded, ok), (failed_series, failed)] {
        let calls = rate(series) * window;
        assert!(
            (calls - recorded as f64).abs() < 1e-6,
            "rate({series}) × {window} s = {calls}, the records say {recorded}"
        );
    }
    let total = prometheus
        .scalar(
            r#"sum(rate(ignis_invocations_total{function="pace"}[10m]))"#,
            Some(at),
        )
        .expect("a total rate")
        * window;
    assert!((total - records.len() as f64).abs() < 1e-6, "{total}");

    // Each bucket counts the records that took at most its bound.
    let buckets = prometheus.query(
        r#"ignis_invocation_duration_seconds_bucket{function="pace"}"#,
        Some(at),
    );
    let buckets = buckets["result"].as_array().expect("a vector");
    assert_eq!(buckets.len(), BOUNDS.len() + 1);
    for b in buckets {
        let le = b["metric"]["le"].as_str().expect("le");
        let bound: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().expect("a bound")
        };
        let recorded = durations.iter().filter(|d| **d <= bound).count();
        assert_eq!(number(&b["value"][1]), recorded as f64, "bucket le={le}");
    }

    // The median Prometheus computes lies in the bucket of the records' median: with 24
    // calls, the 12th fastest (rank 0.5 × 24).
    let median = durations[11];
    let upper = BOUNDS
        .iter()
        .copied()
        .find(|b| median <= *b)
        .expect("under 300 s");
    let lower = BOUNDS.iter().copied().rev().find(|b| *b < median).unwrap_or(0.0);
    let q = prometheus
        .scalar(
            r#"histogram_quantile(0.5, ignis_invocation_duration_seconds_bucket{function="pace"})"#,
            Some(at),
        )
        .expect("a median");
    assert!(
        lower <= q && q <= upper,
        "histogram_quantile(0.5) = {q}, outside ({lower}, {upper}] where the records' median {median} lies"
    );
    assert!(
        (0.01..=0.025).contains(&q),
        "the median call slept 10 ms: {q} (records {durations:?})"
    );
}

/// A call waiting for an instance when a new version takes over is refused as `retired`,
/// not counted as a passed deadline (its deadline is 30 s away).
#[test]
fn a_call_waiting_when_its_version_retires_is_throttled_as_retired() {
    let s = Server::start();
    let sleepy = "import time\ndef handler(event, context):\n    time.sleep(event.get('secs', 0))\n    return 'done'\n";
    let extra = json!({"max_instances": 1, "timeout_secs": 30});
    s.deploy("turn", "python", sleepy, extra.clone());
    let metric = |series: &str| s.metric(series).unwrap_or(-1.0);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| s.invoke("turn", r#"{"secs": 5}"#));
        wait_until("the one instance is busy", Duration::from_secs(30), || {
            metric(r#"ignis_instances{function="turn",state="busy"}"#) == 1.0
        });
        let waiting = scope.spawn(|| s.invoke("turn", "{}"));
        wait_until("the second call waits", Duration::from_secs(30), || {
            metric(r#"ignis_queue_depth{function="turn"}"#) == 1.0
        });
        let mut v2 = json!({"name": "turn", "runtime": "python", "code": sleepy});
        v2["max_instances"] = extra["max_instances"].clone();
        v2["timeout_secs"] = json!(29);
        let updated = s.update("turn", &v2);
        assert_eq!(updated.status.as_u16(), 200, "{}", updated.body);
        assert_eq!(updated.json()["active_version"], 2, "{}", updated.body);
        let refused = waiting.join().expect("thread");
        assert_eq!(
            (refused.status.as_u16(), refused.error_code()),
            (503, "not_ready".to_owned()),
            "{}",
            refused.body
        );
        let ran = first.join().expect("thread");
        assert_eq!(
            ran.status.as_u16(),
            200,
            "the call in flight finishes: {}",
            ran.body
        );
    });
    let reason = |r: &str| {
        metric(&format!(
            r#"ignis_throttles_total{{function="turn",reason="{r}"}}"#
        ))
    };
    assert_eq!(
        (reason("retired"), reason("deadline"), reason("start_failed")),
        (1.0, 0.0, 0.0)
    );
}
