//! The stream of probe events that runners emit (progress display, `--json` lines).

use std::time::Duration;

use crate::machine::{Outcome, Verdict};

/// One event of a probe run. Times are since the run started. Serialises as one flat JSON object
/// with an `"event"` tag: `attempt`, `result` or `verdict`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Probe number `attempt` started.
    Attempt {
        attempt: u32,
        at_ms: u64,
        target: String,
    },
    /// Probe number `attempt` answered after `latency_ms`.
    Result {
        attempt: u32,
        at_ms: u64,
        latency_ms: u64,
        outcome: &'static str,
        detail: String,
    },
    /// The final verdict.
    Verdict {
        at_ms: u64,
        healthy: bool,
        reason: Option<String>,
    },
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Event {
    pub fn result(attempt: u32, at: Duration, latency: Duration, outcome: &Outcome) -> Self {
        let kind = match outcome {
            Outcome::Success(_) => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Pending(_) => "pending",
        };
        Event::Result {
            attempt,
            at_ms: ms(at),
            latency_ms: ms(latency),
            outcome: kind,
            detail: outcome.detail().into(),
        }
    }

    pub fn verdict(at: Duration, verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Healthy => Event::Verdict {
                at_ms: ms(at),
                healthy: true,
                reason: None,
            },
            Verdict::Unhealthy { reason } => Event::Verdict {
                at_ms: ms(at),
                healthy: false,
                reason: Some(reason.to_string()),
            },
        }
    }
}
