//! Latency histograms as the proxy exports them (Prometheus `le` buckets), and their quantiles: the
//! pure arithmetic behind a canary's p99 bound. The engine reads the proxy's `/metrics`, keeps a
//! baseline per target at each route change, and reports the quantile of the difference.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A cumulative histogram: `buckets[i] = (le, count of observations ≤ le)`, bounds increasing and
/// finite; `count` is every observation (the `+Inf` bucket).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

impl Histogram {
    /// What was observed after `earlier` (bucket by bucket, matched by bound; a counter that went
    /// down, e.g. after a proxy restart, counts from zero).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let reset = earlier.count > self.count;
        let before = |le: f64| {
            if reset {
                return 0;
            }
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c.saturating_sub(before(*le))))
                .collect(),
            count: if reset {
                self.count
            } else {
                self.count.saturating_sub(earlier.count)
            },
        }
    }

    /// Adds `other`'s observations (bounds matched; bounds only one side has are kept).
    pub fn merge(&mut self, other: &Histogram) {
        for (le, c) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| b == le) {
                Some((_, mine)) => *mine += c,
                None => self.buckets.push((*le, *c)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.count += other.count;
    }

    /// The `q` quantile (0.0..=1.0) as Prometheus' `histogram_quantile` estimates it: linear
    /// within the bucket holding the rank; observations above every finite bound give the highest
    /// bound. `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        for &(le, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below {
                let within = (rank - below as f64) / (cumulative - below) as f64;
                let secs = lower + (le - lower) * within.clamp(0.0, 1.0);
                return Some(Duration::from_secs_f64(secs.max(0.0)));
            }
            lower = le;
            below = cumulative;
        }
        Some(Duration::from_secs_f64(lower.max(0.0)))
    }
}
