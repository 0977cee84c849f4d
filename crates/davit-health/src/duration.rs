//! Durations as users write them: `100ms`, `2s`, `1m`, `1h`, `1m30s`, `1.5s`.

use std::time::Duration;

/// Parses `100ms`, `2s`, `1m`, `1h`, `1m30s`, `1.5s` (units `ms`, `s`, `m`, `h`; compose files also
/// use `us` and `ns`). A bare `0` is zero. Returns a message naming what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 100ms, 2s, 1m".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: expected a number before {unit:?} (e.g. 100ms, 2s, 1m)"
            )
        })?;
        let nanos_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (ms, s, m or h), e.g. {num}s"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        let nanos = value * nanos_per_unit;
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(format!("invalid duration {text:?}: too large"));
        }
        total += Duration::from_nanos(nanos.round() as u64);
        rest = tail;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `250ms`, `2s`, `1.5s`, `1m30s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms < 1000 {
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let (m, rem_ms) = (ms / 60_000, ms % 60_000);
    let secs = if rem_ms % 1000 == 0 {
        format!("{}s", rem_ms / 1000)
    } else {
        let s = format!("{:.3}", rem_ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0'))
    };
    match m {
        0 => secs,
        _ if rem_ms == 0 => format!("{m}m"),
        _ => format!("{m}m{secs}"),
    }
}
