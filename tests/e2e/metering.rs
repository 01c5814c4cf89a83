//! Metering against the real server: what each invocation record says it cost, `/metrics`
//! counts, and `GET /v1/usage` (with `ignis usage`), exact to the invocation.

use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::harness::{Server, BIN};

const CODE: &str = "def handler(e):\n    if e.get('fail'):\n        raise ValueError('asked to')\n    return len(bytearray(e.get('bytes', 0)))\n";

fn since_a_minute_ago() -> String {
    (OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&Rfc3339)
        .expect("format")
}

#[test]
fn invocation_records_say_what_they_cost_and_how_their_instance_started() {
    let s = Server::start();
    s.deploy(
        "metered",
        "python",
        CODE,
        json!({"memory_mb": 256, "idle_timeout_secs": 0}),
    );
    let cold = s.invoke("metered", r#"{"bytes": 50000000}"#);
    assert_eq!(cold.status, StatusCode::OK, "{}", cold.body);
    assert!(cold.cold());
    let header_init: f64 = cold.header("x-ignis-init-ms").parse().expect("x-ignis-init-ms");
    let r = s.invocation(cold.header("x-ignis-invocation-id"));
    assert_eq!(r["memory_mb"], 256);
    let duration = r["duration_ms"].as_f64().expect("duration_ms");
    assert_eq!(r["billed_ms"].as_f64(), Some(duration.ceil().max(1.0)), "{r}");
    let peak = r["peak_memory_mb"].as_u64().expect("peak memory is measured");
    assert!(peak >= 50, "the handler allocated 50 MB, peak says {peak} MB");
    let init = &r["init"];
    assert_eq!(init["reason"], "first_call");
    let parts = ["sandbox_ms", "runtime_ms", "load_ms"]
        .iter()
        .map(|k| init[k].as_f64().expect("a part"))
        .sum::<f64>();
    let total = init["init_ms"].as_f64().expect("init_ms");
    assert!((total - parts).abs() < 0.01, "the parts add up: {init}");
    assert!(
        (total - header_init).abs() < 0.01,
        "the header says the same: {init}"
    );
    // The second call starts its own instance again (idle timeout 0): after idleness.
    let again = s.invoke("metered", "{}");
    let r = s.invocation(again.header("x-ignis-invocation-id"));
    assert_eq!(r["init"]["reason"], "after_idle");
}

#[test]
fn a_warm_instance_reports_its_peak_growing_between_calls() {
    // The instance's peak-memory file is opened once and re-read after every call.
    let s = Server::start();
    s.deploy("growing", "python", CODE, json!({"memory_mb": 256}));
    let peak_after = |bytes: u64| {
        let a = s.invoke("growing", &format!(r#"{{"bytes": {bytes}}}"#));
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let r = s.invocation(a.header("x-ignis-invocation-id"));
        (
            a.cold(),
            r["peak_memory_mb"].as_u64().expect("peak memory is measured"),
        )
    };
    let (_, small) = peak_after(1_000_000);
    let (cold, big) = peak_after(100_000_000);
    assert!(!cold, "the second call reuses the instance");
    assert!(
        big >= small + 90,
        "peak went from {small} MB to {big} MB after allocating 100 MB"
    );
}

#[test]
fn metrics_and_usage_count_every_invocation() {
    let s = Server::start();
    let since = since_a_minute_ago();
    s.deploy("counted", "python", CODE, json!({"memory_mb": 512}));
    s.deploy(
        "other",
        "javascript",
        "export function handler() { return 1; }\n",
        json!({}),
    );
    let mut ids = Vec::new();
    let mut cold = 0;
    for event in [
        r#"{}"#,
        r#"{"fail": true}"#,
        r#"{}"#,
        r#"{"fail": true}"#,
        r#"{}"#,
    ] {
        let a = s.invoke("counted", event);
        cold += u64::from(a.cold());
        ids.push(a.header("x-ignis-invocation-id").to_owned());
    }
    assert_eq!(s.invoke("other", "{}").status, StatusCode::OK);

    let m = |series: &str| s.metric(series).unwrap_or_else(|| panic!("no series {series}"));
    assert_eq!(
        m(r#"ignis_invocations_total{function="counted",outcome="succeeded"}"#),
        3.0
    );
    assert_eq!(
        m(r#"ignis_invocations_total{function="counted",outcome="function_error"}"#),
        2.0
    );
    assert_eq!(
        m(r#"ignis_invocation_duration_seconds_count{function="counted"}"#),
        5.0
    );
    let colds: f64 = ["first_call", "new_version", "after_idle", "scale_out"]
        .iter()
        .map(|r| {
            m(&format!(
                "ignis_cold_starts_total{{function=\"counted\",reason=\"{r}\"}}"
            ))
        })
        .sum();
    assert_eq!(colds, cold as f64);
    assert_eq!(m(r#"ignis_instances{function="counted",state="idle"}"#), 1.0);
    assert_eq!(
        m(r#"ignis_invocations_total{function="other",outcome="succeeded"}"#),
        1.0
    );

    let billed: u64 = ids
        .iter()
        .map(|id| s.invocation(id)["billed_ms"].as_u64().expect("billed_ms"))
        .sum();
    let u = s.get(&format!("/v1/usage?since={since}"));
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    let u = u.json();
    let counted = u["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["function"] == "counted")
        .expect("counted is listed")
        .clone();
    assert_eq!(counted["invocations"], 5);
    assert_eq!(counted["errors"], 2);
    assert_eq!(counted["cold_starts"], cold);
    assert_eq!(counted["billed_ms"], billed);
    let gb_s = counted["gb_seconds"].as_f64().expect("gb_seconds");
    assert!((gb_s - 0.5 * billed as f64 / 1000.0).abs() < 1e-9, "{counted}");
    assert_eq!(u["total"]["invocations"], 6, "{u}");

    // A period that ends before anything ran is empty.
    let early = s.get(&format!("/v1/usage?since={since}&until={since}"));
    assert_eq!(early.status, StatusCode::BAD_REQUEST, "until must be after since");
    assert_eq!(early.json()["error"]["field"], "until");
    let before = s.get("/v1/usage?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00%2B01:00");
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    assert_eq!(before.json()["functions"], json!([]));
    assert_eq!(before.json()["until"], "2020-01-01T23:00:00Z");

    let cli = std::process::Command::new(BIN)
        .args(["--url", &s.url, "usage", "--since", &since])
        .env_remove("IGNIS_TOKEN")
        .output()
        .expect("run ignis usage");
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let out = String::from_utf8_lossy(&cli.stdout);
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("counted "))
        .unwrap_or_else(|| panic!("no row for counted: {out}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..5], ["5", "2", &cold.to_string(), &billed.to_string()]);
}

#[test]
fn usage_parameters_are_checked() {
    let s = Server::start();
    for (query, code, field) in [
        ("", "missing_parameter", "since"),
        ("?since=yesterday", "invalid_parameter", "since"),
        ("?since=2026-01-01", "invalid_parameter", "since"),
        (
            "?since=2026-01-01T00:00:00Z&until=soon",
            "invalid_parameter",
            "until",
        ),
        (
            "?since=2026-01-01T00:00:00Z&function=f",
            "unknown_parameter",
            "function",
        ),
    ] {
        let a = s.get(&format!("/v1/usage{query}"));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.body);
        let e: Value = a.json();
        assert_eq!(
            (e["error"]["code"].as_str(), e["error"]["field"].as_str()),
            (Some(code), Some(field)),
            "{query}: {e}"
        );
    }
}
