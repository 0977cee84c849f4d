//! The proxy's `GET /metrics` (Prometheus text format) as the engine reads it to judge canaries:
//! per-target latency histograms of one route.

use std::collections::HashMap;

use davit_rollout::Histogram;

const BUCKET: &str = "davit_proxy_request_duration_seconds_bucket{";

/// The value of label `key` in a `{k="v",…}` label set (values as the proxy escapes them).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => return Some(&rest[..end]),
            _ => end += 1,
        }
    }
    None
}

/// The latency histogram of every target of `route`, by target id.
pub fn histograms(text: &str, route: &str) -> HashMap<String, Histogram> {
    let mut out: HashMap<String, Histogram> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(BUCKET) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if label(labels, "route") != Some(route) {
            continue;
        }
        let (Some(target), Some(le), Ok(value)) = (
            label(labels, "target"),
            label(labels, "le"),
            value.trim().parse::<u64>(),
        ) else {
            continue;
        };
        let h = out.entry(target.to_string()).or_default();
        if le == "+Inf" {
            h.count = value;
        } else if let Ok(le) = le.parse::<f64>() {
            h.buckets.push((le, value));
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}
