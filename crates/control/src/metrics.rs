//! Per-function counters and histograms, kept in atomics on the invocation path (no lock)
//! and encoded in the Prometheus/OpenMetrics text format by `prometheus-client` at scrape
//! time, from a collector that walks the function table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ignis_pool::{AcquireError, ColdReason, PREWARMED};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::outcome::OutcomeKind;
use crate::Platform;

const REASONS: [ColdReason; 4] = [
    ColdReason::FirstCall,
    ColdReason::NewVersion,
    ColdReason::AfterIdle,
    ColdReason::ScaleOut,
];
/// Why a call was refused without running.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    QueueFull = 0,
    Deadline = 1,
    Capacity = 2,
    /// Its instance could not start.
    StartFailed = 3,
    /// Its version stopped serving (a newer one took over, or the function was deleted)
    /// while it waited.
    Retired = 4,
}
const THROTTLES: [&str; 5] = [
    "queue_full",
    "deadline",
    "capacity_exhausted",
    "start_failed",
    "retired",
];

impl Throttle {
    /// Why the pool refused a call, as its metric reason: one reason per refusal, so a
    /// failed start or a retired version is never counted as a deadline.
    pub(crate) fn of(e: &AcquireError) -> Throttle {
        match e {
            AcquireError::QueueFull => Throttle::QueueFull,
            AcquireError::DeadlinePassed => Throttle::Deadline,
            AcquireError::CapacityExhausted => Throttle::Capacity,
            AcquireError::StartFailed(_) => Throttle::StartFailed,
            AcquireError::Retired => Throttle::Retired,
        }
    }

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        THROTTLES[self as usize]
    }
}

/// Upper bounds of the histogram buckets, in seconds: from 100 µs (a warm call) to the
/// longest timeout.
const BOUNDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    60.0, 300.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts): NOT cumulative, because
    /// `prometheus-client`'s `encode_histogram` adds them up itself. Each count is read
    /// once, so the encoded `+Inf` bucket always equals `_count`.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        #[allow(clippy::cast_precision_loss)] // nanoseconds as f64 seconds: precise enough
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, total, buckets)
    }

    fn encode(&self, mut e: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        e.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// The counters of one function (all its versions).
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    outcomes: [AtomicU64; OutcomeKind::ALL.len()],
    duration: Histogram,
    cold: [AtomicU64; REASONS.len()],
    cold_duration: Histogram,
    throttles: [AtomicU64; THROTTLES.len()],
    /// Incremented by the function's pools when they evict an idle instance.
    pub(crate) evictions: Arc<AtomicU64>,
}

impl FunctionMetrics {
    pub(crate) fn invoked(&self, outcome: OutcomeKind, duration: Duration) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration);
    }

    pub(crate) fn cold_start(&self, reason: ColdReason, init: Duration) {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        self.cold[i].fetch_add(1, Ordering::Relaxed);
        self.cold_duration.observe(init);
    }

    pub(crate) fn throttled(&self, why: Throttle) {
        self.throttles[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The two exposition formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): what Prometheus
    /// servers ask for.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): for every other
    /// client, `promtool check metrics` among them, which reads only this one.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Encodes the platform's metrics in `format`.
pub fn render(platform: &Arc<Platform>, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(PlatformCollector(platform.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(match format {
        Format::OpenMetrics => out,
        Format::Text => openmetrics_to_text(&out),
    })
}

/// Rewrites `prometheus-client`'s OpenMetrics output as the Prometheus text format. For
/// what Ignis exposes (counters without `_created`, gauges and histograms, no exemplars)
/// the samples are the same; only the metadata differs: a counter's `HELP` and `TYPE` name
/// the `_total` series, and there is no `# UNIT` or `# EOF`.
fn openmetrics_to_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + counters.len() * 16);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            Some(_) | None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

struct PlatformCollector(Arc<Platform>);

impl std::fmt::Debug for PlatformCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformCollector")
    }
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

type Functions<'a> = [(&'a String, &'a Arc<crate::Slot>)];

/// One counter family with a series per function and per `label` value.
fn labelled_counters(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    functions: &Functions<'_>,
    (label, values): (&str, &[&str]),
    read: impl Fn(&FunctionMetrics, usize) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (function, slot) in functions {
        for (i, value) in values.iter().enumerate() {
            let labels = [("function", function.as_str()), (label, value)];
            counter(read(&slot.metrics, i)).encode(e.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One histogram family with a series per function.
fn histograms(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    functions: &Functions<'_>,
    read: impl Fn(&FunctionMetrics) -> &Histogram,
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (function, slot) in functions {
        read(&slot.metrics).encode(e.encode_family(&[("function", function.as_str())])?)?;
    }
    Ok(())
}

impl Collector for PlatformCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let table = self.0.table.load();
        let mut functions: Vec<(&String, &Arc<crate::Slot>)> = table.iter().collect();
        functions.sort_by(|a, b| a.0.cmp(b.0));

        let outcomes = OutcomeKind::ALL.map(OutcomeKind::status);
        labelled_counters(
            &mut encoder,
            (
                "ignis_invocations",
                "Finished invocations by function and outcome",
            ),
            &functions,
            ("outcome", &outcomes),
            |m, i| m.outcomes[i].load(Ordering::Relaxed),
        )?;
        histograms(
            &mut encoder,
            (
                "ignis_invocation_duration_seconds",
                "Time in the handler, from dispatch to the instance to its answer",
            ),
            &functions,
            |m| &m.duration,
        )?;
        let reasons = REASONS.map(ColdReason::as_str);
        labelled_counters(
            &mut encoder,
            (
                "ignis_cold_starts",
                "Invocations that waited for their instance to start, by reason",
            ),
            &functions,
            ("reason", &reasons),
            |m, i| m.cold[i].load(Ordering::Relaxed),
        )?;
        histograms(
            &mut encoder,
            (
                "ignis_cold_start_duration_seconds",
                "Instance start time (sandbox, runtime, code load) of cold invocations",
            ),
            &functions,
            |m| &m.cold_duration,
        )?;

        let mut e = encoder.encode_descriptor(
            "ignis_instances",
            "Instances of the serving version by state",
            None,
            MetricType::Gauge,
        )?;
        for (name, slot) in &functions {
            let counts = slot
                .active
                .load()
                .as_ref()
                .map(|a| a.pool.counts())
                .unwrap_or_default();
            for (state, n) in [
                ("starting", counts.starting),
                ("idle", counts.idle),
                ("busy", counts.busy),
            ] {
                let labels = [("function", name.as_str()), ("state", state)];
                gauge(n).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "ignis_queue_depth",
            "Invocations waiting for an instance",
            None,
            MetricType::Gauge,
        )?;
        for (name, slot) in &functions {
            let depth = slot.active.load().as_ref().map_or(0, |a| a.pool.queue_depth());
            gauge(depth).encode(e.encode_family(&[("function", name.as_str())])?)?;
        }

        labelled_counters(
            &mut encoder,
            (
                "ignis_throttles",
                "Invocations refused without running, by reason",
            ),
            &functions,
            ("reason", &THROTTLES),
            |m, i| m.throttles[i].load(Ordering::Relaxed),
        )?;

        let mut e = encoder.encode_descriptor(
            "ignis_evictions",
            "Idle instances stopped to make room for another function",
            None,
            MetricType::Counter,
        )?;
        for (name, slot) in &functions {
            let n = slot.metrics.evictions.load(Ordering::Relaxed);
            counter(n).encode(e.encode_family(&[("function", name.as_str())])?)?;
        }

        let launcher = &self.0.launcher;
        let mut e = encoder.encode_descriptor(
            "ignis_prewarmed_instances",
            "Generic instances waiting for code, by interpreter",
            None,
            MetricType::Gauge,
        )?;
        for runtime in PREWARMED {
            let label = ignis_pool::interpreter_name(runtime);
            gauge(launcher.prewarmed(runtime)).encode(e.encode_family(&[("runtime", label)])?)?;
        }
        let mut e = encoder.encode_descriptor(
            "ignis_microvm_pre_restored_guests",
            "Microvm guests restored from a snapshot ahead of cold starts, waiting for code, by interpreter",
            None,
            MetricType::Gauge,
        )?;
        for runtime in PREWARMED {
            let label = ignis_pool::interpreter_name(runtime);
            gauge(launcher.pre_restored(runtime)).encode(e.encode_family(&[("runtime", label)])?)?;
        }

        let capacity = &self.0.capacity;
        for (name, help, value) in [
            (
                "ignis_memory_capacity_bytes",
                "The memory all instances may reserve (--memory-capacity)",
                capacity.total_mb(),
            ),
            (
                "ignis_memory_reserved_bytes",
                "The memory reserved by live and starting instances",
                capacity.used_mb(),
            ),
        ] {
            // In bytes, the base unit Prometheus names expect (promtool refuses `_mb`).
            let bytes = usize::try_from(value.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
            let e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            gauge(bytes).encode(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes one histogram the way the platform's collector does.
    #[derive(Debug)]
    struct One(Histogram);

    impl Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let e = encoder.encode_descriptor("h_seconds", "test", None, MetricType::Histogram)?;
            self.0.encode(e)
        }
    }

    fn scrape(h: Histogram) -> Vec<(String, f64)> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(One(h)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("a sample line");
                (k.to_owned(), v.parse().expect("a number"))
            })
            .collect()
    }

    fn value(samples: &[(String, f64)], key: &str) -> f64 {
        samples
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key} in {samples:?}"))
            .1
    }

    #[test]
    fn histogram_buckets_are_cumulated_once_and_inf_equals_count() {
        let h = Histogram::default();
        for micros in [300, 300, 300, 2_000, 700_000] {
            h.observe(Duration::from_micros(micros));
        }
        let s = scrape(h);
        assert_eq!(value(&s, "h_seconds_count"), 5.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="+Inf"}"#), 5.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.00025"}"#), 0.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.0005"}"#), 3.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.001"}"#), 3.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.0025"}"#), 4.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.5"}"#), 4.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="1.0"}"#), 5.0);
        assert!((value(&s, "h_seconds_sum") - 0.7029).abs() < 1e-9);
        // Never decreasing, as Prometheus requires.
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(k, _)| k.starts_with("h_seconds_bucket"))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(buckets.len(), BOUNDS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn each_refusal_is_counted_under_its_own_reason() {
        let cases = [
            (AcquireError::QueueFull, "queue_full"),
            (AcquireError::DeadlinePassed, "deadline"),
            (AcquireError::CapacityExhausted, "capacity_exhausted"),
            (
                AcquireError::StartFailed(ignis_pool::StartError::Timeout),
                "start_failed",
            ),
            (AcquireError::Retired, "retired"),
        ];
        for (e, label) in cases {
            assert_eq!(Throttle::of(&e).label(), label, "{e}");
        }
        let m = FunctionMetrics::default();
        m.throttled(Throttle::of(&AcquireError::Retired));
        m.throttled(Throttle::of(&AcquireError::StartFailed(
            ignis_pool::StartError::Timeout,
        )));
        let counts: Vec<u64> = m.throttles.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, [0, 0, 0, 1, 1], "{THROTTLES:?}");
    }

    #[test]
    fn the_text_format_names_counters_by_their_total_series_and_has_no_eof() {
        let open_metrics = "# HELP c Things.\n# TYPE c counter\nc_total{f=\"a\"} 3\n\
            # HELP g Level.\n# TYPE g gauge\n# UNIT g bytes\ng 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(open_metrics),
            "# HELP c_total Things.\n# TYPE c_total counter\nc_total{f=\"a\"} 3\n\
             # HELP g Level.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn an_observation_on_a_bound_counts_in_that_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        let s = scrape(h);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.0005"}"#), 0.0);
        assert_eq!(value(&s, r#"h_seconds_bucket{le="0.001"}"#), 1.0);
    }
}
