//! Per-target counters and a latency histogram, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub(crate) struct TargetStats {
    pub(crate) requests: AtomicU64,
    pub(crate) responses_5xx: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl TargetStats {
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// One target's series, labelled by route and target.
pub(crate) struct Series<'a> {
    pub(crate) route: &'a str,
    pub(crate) target: &'a str,
    pub(crate) state: &'a str,
    pub(crate) stats: &'a TargetStats,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type Counter = (&'static str, &'static str, fn(&TargetStats) -> u64);

/// Renders every series in the Prometheus text exposition format (version 0.0.4).
pub(crate) fn render(series: &[Series<'_>]) -> String {
    let mut out = String::new();
    let counters: [Counter; 4] = [
        (
            "davit_proxy_requests_total",
            "Requests sent to the target.",
            |s| s.requests.load(Relaxed),
        ),
        (
            "davit_proxy_responses_5xx_total",
            "5xx answers, the proxy's own 502/504 included.",
            |s| s.responses_5xx.load(Relaxed),
        ),
        (
            "davit_proxy_connect_errors_total",
            "Failed connection attempts to the target (retried elsewhere).",
            |s| s.connect_errors.load(Relaxed),
        ),
        (
            "davit_proxy_in_flight",
            "Requests and upgraded connections not finished.",
            |s| s.in_flight.load(Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in series {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\",target=\"{}\"}} {}",
                escape(s.route),
                escape(s.target),
                get(s.stats)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP davit_proxy_target_active 1 when the target receives new requests."
    );
    let _ = writeln!(out, "# TYPE davit_proxy_target_active gauge");
    for s in series {
        let _ = writeln!(
            out,
            "davit_proxy_target_active{{route=\"{}\",target=\"{}\",state=\"{}\"}} {}",
            escape(s.route),
            escape(s.target),
            s.state,
            u8::from(s.state == "active")
        );
    }
    let name = "davit_proxy_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a request's arrival to the end of its response."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for s in series {
        let labels = format!(
            "route=\"{}\",target=\"{}\"",
            escape(s.route),
            escape(s.target)
        );
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += s.stats.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = s.stats.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = s.stats.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
    out
}
