//! Ongoing health (Kubernetes readiness): the same policy knobs as the verdict machine, but no final
//! verdict: the status flips between healthy and unhealthy on consecutive thresholds, for as long as
//! the caller keeps probing (the proxy watching its upstreams). Pure, like [`Machine`](crate::Machine).

use std::time::{Duration, Instant};

use crate::duration::format_duration;
use crate::machine::{Crossed, Outcome, Policy, Streak, in_time};

/// A target's current health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No threshold reached yet.
    Unknown,
    Healthy,
    Unhealthy,
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start probe number `attempt` now, to answer within `timeout`; report it with
    /// [`Monitor::record`].
    Probe { attempt: u32, timeout: Duration },
    /// Nothing to do before `until` (or before the probe in flight answers).
    Wait { until: Instant },
}

/// The pure ongoing-health machine. Uses `initial_delay`, `start_period`, `interval`, `timeout` and
/// the thresholds of its [`Policy`]; `min_healthy_time` and `deadline` are for one-shot verdicts and
/// are ignored here.
#[derive(Debug, Clone)]
pub struct Monitor {
    policy: Policy,
    start: Instant,
    next_probe: Instant,
    in_flight: Option<(u32, Instant)>,
    attempts: u32,
    streak: Streak,
    status: Status,
    last: Option<String>,
}

impl Monitor {
    pub fn new(policy: Policy, now: Instant) -> Self {
        let policy = policy.normalized();
        Monitor {
            next_probe: now + policy.initial_delay,
            policy,
            start: now,
            in_flight: None,
            attempts: 0,
            streak: Streak::default(),
            status: Status::Unknown,
            last: None,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// What the last probe said.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Takes a new policy (new thresholds apply from the next result); the status is kept.
    pub fn reconfigure(&mut self, policy: Policy) {
        self.policy = policy.normalized();
    }

    /// What to do at `now`. A probe in flight past its timeout is recorded as a failure here, which
    /// can change [`status`](Self::status).
    pub fn poll(&mut self, now: Instant) -> Step {
        if let Some((attempt, started)) = self.in_flight {
            let deadline = started + self.policy.timeout;
            if now < deadline {
                return Step::Wait { until: deadline };
            }
            let detail = format!("timed out after {}", format_duration(self.policy.timeout));
            self.record(attempt, deadline, Outcome::Failure(detail));
        }
        if now >= self.next_probe {
            self.attempts += 1;
            self.in_flight = Some((self.attempts, now));
            return Step::Probe {
                attempt: self.attempts,
                timeout: self.policy.timeout,
            };
        }
        Step::Wait {
            until: self.next_probe,
        }
    }

    /// Reports that probe `attempt` answered `outcome` at `now`. Returns the new status when this
    /// result changed it. Answers of other or timed-out attempts are ignored; an answer later than
    /// the timeout is a failure.
    pub fn record(&mut self, attempt: u32, now: Instant, outcome: Outcome) -> Option<Status> {
        let (current, started) = self.in_flight?;
        if current != attempt {
            return None;
        }
        self.in_flight = None;
        self.next_probe = (started + self.policy.interval).max(now);
        let outcome = in_time(outcome, started, now, self.policy.timeout);
        self.last = Some(outcome.detail().to_string());
        let before = self.status;
        match self
            .streak
            .record(&self.policy, self.start, started, &outcome)
        {
            Crossed::Success => self.status = Status::Healthy,
            Crossed::Failure => self.status = Status::Unhealthy,
            Crossed::Neither => {}
        }
        (self.status != before).then_some(self.status)
    }
}
