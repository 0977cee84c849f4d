//! Per-target counters and a latency histogram, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::pool::{SHARDS, shard};

/// Upper bounds of the latency histogram's buckets, in seconds.
pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One thread's share of a target's counters, on cache lines of its own: the request path only
/// writes its own thread's shard (see [`crate::pool::set_worker_index`]), so two threads serving the
/// same target never contend on a counter. Readers sum the shards.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    requests: AtomicU64,
    responses_5xx: AtomicU64,
    connect_errors: AtomicU64,
    /// Incremented and decremented on the same shard (the guard remembers which), so the sum is exact;
    /// wrapping arithmetic lets one shard's share go "negative" meanwhile.
    in_flight: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct TargetStats {
    shards: Box<[Shard]>,
}

impl Default for TargetStats {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

fn sum(shards: &[Shard], get: impl Fn(&Shard) -> &AtomicU64) -> u64 {
    shards
        .iter()
        .fold(0u64, |acc, s| acc.wrapping_add(get(s).load(Relaxed)))
}

impl TargetStats {
    fn at(&self, shard: usize) -> &Shard {
        &self.shards[shard % self.shards.len()]
    }

    pub(crate) fn add_request(&self) {
        self.at(shard()).requests.fetch_add(1, Relaxed);
    }

    /// Takes back a request counted by [`add_request`](Self::add_request) that never reached the
    /// upstream.
    pub(crate) fn undo_request(&self) {
        self.at(shard()).requests.fetch_sub(1, Relaxed);
    }

    pub(crate) fn add_5xx(&self) {
        self.at(shard()).responses_5xx.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_connect_error(&self) {
        self.at(shard()).connect_errors.fetch_add(1, Relaxed);
    }

    /// One more request in flight; pass the returned shard to [`leave`](Self::leave).
    pub(crate) fn enter(&self) -> usize {
        let shard = shard();
        self.at(shard).in_flight.fetch_add(1, Relaxed);
        shard
    }

    /// The request that [`enter`](Self::enter) returned `shard` for is done, after `took`.
    pub(crate) fn leave(&self, shard: usize, took: Duration) {
        let s = self.at(shard);
        s.in_flight.fetch_sub(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i].fetch_add(1, Relaxed);
        }
        s.count.fetch_add(1, Relaxed);
        s.sum_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        sum(&self.shards, |s| &s.requests)
    }

    pub(crate) fn responses_5xx(&self) -> u64 {
        sum(&self.shards, |s| &s.responses_5xx)
    }

    pub(crate) fn connect_errors(&self) -> u64 {
        sum(&self.shards, |s| &s.connect_errors)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        sum(&self.shards, |s| &s.in_flight)
    }

    fn bucket(&self, i: usize) -> u64 {
        sum(&self.shards, |s| &s.buckets[i])
    }

    fn count(&self) -> u64 {
        sum(&self.shards, |s| &s.count)
    }

    fn sum_micros(&self) -> u64 {
        sum(&self.shards, |s| &s.sum_micros)
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
            TargetStats::requests,
        ),
        (
            "davit_proxy_responses_5xx_total",
            "5xx answers, the proxy's own 502/504 included.",
            TargetStats::responses_5xx,
        ),
        (
            "davit_proxy_connect_errors_total",
            "Failed connection attempts to the target (retried elsewhere).",
            TargetStats::connect_errors,
        ),
        (
            "davit_proxy_in_flight",
            "Requests and upgraded connections not finished.",
            TargetStats::in_flight,
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
            cumulative += s.stats.bucket(i);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = s.stats.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = s.stats.sum_micros() as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
    out
}
