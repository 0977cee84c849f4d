//! The verdict machine: a pure state machine fed probe results and times.
//!
//! It does no I/O and never reads the clock: every call takes `now`. It answers "what next?" with an
//! [`Action`]: probe now (with a timeout), wait until a time, or a final [`Verdict`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::duration::format_duration;

/// When a target counts as healthy, and when to give up on it.
///
/// The knobs mean what they mean in Kubernetes (`initialDelaySeconds`, `periodSeconds`,
/// `timeoutSeconds`, `successThreshold`, `failureThreshold`), Docker (`start_period`) and Nomad
/// (`min_healthy_time`, `healthy_deadline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// No probe runs before this much time has passed (Kubernetes `initialDelaySeconds`).
    pub initial_delay: Duration,
    /// Failures of probes started within this time are not counted (Docker `start_period`); a
    /// success during it counts as usual.
    pub start_period: Duration,
    /// Time between the starts of two probes (Kubernetes `periodSeconds`).
    pub interval: Duration,
    /// A probe that has not answered after this long is a failure (Kubernetes `timeoutSeconds`).
    pub timeout: Duration,
    /// Consecutive successes before the target counts as passing.
    pub success_threshold: u32,
    /// Consecutive counted failures after which the verdict is unhealthy.
    pub failure_threshold: u32,
    /// How long the target must keep passing, without a single failure, before the verdict is
    /// healthy (Nomad `min_healthy_time`).
    pub min_healthy_time: Duration,
    /// The verdict is unhealthy when the target is not healthy this long after the start (Nomad
    /// `healthy_deadline`). `None`: no deadline.
    pub deadline: Option<Duration>,
}

impl Default for Policy {
    /// Kubernetes' defaults: no delay, 10 s interval, 1 s timeout, 1 success, 3 failures; no min
    /// healthy time and no deadline.
    fn default() -> Self {
        Policy {
            initial_delay: Duration::ZERO,
            start_period: Duration::ZERO,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
            min_healthy_time: Duration::ZERO,
            deadline: None,
        }
    }
}

impl Policy {
    /// Thresholds below 1 are treated as 1 and a zero interval as 1 ms, so that a policy built
    /// from user input can neither pass without a probe nor spin.
    pub(crate) fn normalized(mut self) -> Self {
        self.success_threshold = self.success_threshold.max(1);
        self.failure_threshold = self.failure_threshold.max(1);
        self.interval = self.interval.max(Duration::from_millis(1));
        self.timeout = self.timeout.max(Duration::from_millis(1));
        self
    }
}

/// What one probe attempt found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The target answered as expected.
    Success(String),
    /// The target did not answer, or not as expected.
    Failure(String),
    /// Not yet decided by the target itself (a Docker healthcheck still `starting`): neither a
    /// success nor a counted failure, but it breaks a streak of successes.
    Pending(String),
}

impl Outcome {
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Success(d) | Outcome::Failure(d) | Outcome::Pending(d) => d,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

/// Consecutive probe results, counted as Kubernetes counts them. Shared by [`Machine`] and
/// [`Monitor`](crate::Monitor), so a one-shot verdict and ongoing health agree on every threshold.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Streak {
    pub(crate) successes: u32,
    pub(crate) failures: u32,
}

/// Which threshold a result reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crossed {
    /// `success_threshold` consecutive successes (or more).
    Success,
    /// `failure_threshold` consecutive counted failures (or more).
    Failure,
    /// Neither.
    Neither,
}

impl Streak {
    /// Counts `outcome` of a probe started at `started`, for a target watched since `start`: a
    /// success resets the failures; anything else resets the successes; failures of probes started
    /// within `start_period` are not counted (Docker's rule); a `Pending` is neither.
    pub(crate) fn record(
        &mut self,
        policy: &Policy,
        start: Instant,
        started: Instant,
        outcome: &Outcome,
    ) -> Crossed {
        match outcome {
            Outcome::Success(_) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= policy.success_threshold {
                    return Crossed::Success;
                }
            }
            Outcome::Pending(_) => self.successes = 0,
            Outcome::Failure(_) => {
                self.successes = 0;
                if started.saturating_duration_since(start) >= policy.start_period {
                    self.failures = self.failures.saturating_add(1);
                    if self.failures >= policy.failure_threshold {
                        return Crossed::Failure;
                    }
                }
            }
        }
        Crossed::Neither
    }
}

/// An answer that came after the probe's `timeout` is a failure, whatever it says.
pub(crate) fn in_time(
    outcome: Outcome,
    started: Instant,
    now: Instant,
    timeout: Duration,
) -> Outcome {
    if now.saturating_duration_since(started) > timeout {
        Outcome::Failure(format!("timed out after {}", format_duration(timeout)))
    } else {
        outcome
    }
}

/// Why a target was judged unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `failure_threshold` consecutive failures after the start period.
    Failures { count: u32, last: String },
    /// Not healthy by the deadline.
    Deadline {
        after: Duration,
        last: Option<String>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Failures { count, last } => {
                write!(f, "{count} consecutive failures, last: {last}")
            }
            Reason::Deadline {
                after,
                last: Some(last),
            } => {
                write!(
                    f,
                    "not healthy within the deadline of {}, last: {last}",
                    format_duration(*after)
                )
            }
            Reason::Deadline { after, last: None } => {
                write!(
                    f,
                    "not healthy within the deadline of {} (no probe answered)",
                    format_duration(*after)
                )
            }
        }
    }
}

/// The final word on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy { reason: Reason },
}

impl Verdict {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Verdict::Healthy)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Healthy => f.write_str("healthy"),
            Verdict::Unhealthy { reason } => write!(f, "unhealthy: {reason}"),
        }
    }
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start probe number `attempt` now; it must answer within `timeout` (the policy's timeout,
    /// shortened so that it never runs past the deadline). Report it with [`Machine::record`].
    Probe { attempt: u32, timeout: Duration },
    /// Nothing to do before `until` (or before the in-flight probe answers, if sooner).
    Wait { until: Instant },
    /// Done. The machine answers the same verdict from now on.
    Verdict(Verdict),
}

/// The pure verdict machine. Create it with [`Machine::new`], then loop on [`Machine::poll`].
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    start: Instant,
    next_probe: Instant,
    /// The probe started and not yet answered: its number and start time.
    in_flight: Option<(u32, Instant)>,
    attempts: u32,
    streak: Streak,
    /// Since when the success threshold has been met without a failure.
    passing_since: Option<Instant>,
    last: Option<String>,
    verdict: Option<(Verdict, Instant)>,
}

impl Machine {
    /// A machine starting at `now`.
    pub fn new(policy: Policy, now: Instant) -> Self {
        let policy = policy.normalized();
        Machine {
            next_probe: now + policy.initial_delay,
            policy,
            start: now,
            in_flight: None,
            attempts: 0,
            streak: Streak::default(),
            passing_since: None,
            last: None,
            verdict: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// When the machine started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// How many probes have been started.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the success threshold is currently met (the target passes, though min healthy time
    /// may not have elapsed yet).
    pub fn is_passing(&self) -> bool {
        self.passing_since.is_some()
    }

    /// The verdict and when it was reached, once there is one.
    pub fn verdict(&self) -> Option<(&Verdict, Instant)> {
        self.verdict.as_ref().map(|(v, at)| (v, *at))
    }

    fn deadline(&self) -> Option<Instant> {
        self.policy.deadline.map(|d| self.start + d)
    }

    /// When the verdict will be healthy if no probe fails before then (the success threshold is
    /// met and `min_healthy_time` is running); `None` while the target is not passing.
    pub fn healthy_at(&self) -> Option<Instant> {
        self.passing_since.map(|p| p + self.policy.min_healthy_time)
    }

    fn decide(&mut self, verdict: Verdict, at: Instant) -> Action {
        self.in_flight = None;
        self.verdict = Some((verdict.clone(), at));
        Action::Verdict(verdict)
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Action {
        if let Some((v, _)) = &self.verdict {
            return Action::Verdict(v.clone());
        }
        let deadline = self.deadline();
        // A probe that outlived its timeout is a failure, whether or not its answer ever comes.
        if let Some((attempt, started)) = self.in_flight {
            let timeout = self.timeout_at(started);
            if now >= started + timeout {
                let detail = format!("timed out after {}", format_duration(timeout));
                self.record(attempt, started + timeout, Outcome::Failure(detail));
                if let Some((v, _)) = &self.verdict {
                    return Action::Verdict(v.clone());
                }
            }
        }
        if let Some(at) = self
            .healthy_at()
            .filter(|at| *at <= now && deadline.is_none_or(|d| *at <= d))
        {
            return self.decide(Verdict::Healthy, at);
        }
        if let Some(d) = deadline.filter(|d| now >= *d) {
            return self.give_up(d);
        }
        let mut wake = [deadline, self.healthy_at()].into_iter().flatten().min();
        match self.in_flight {
            Some((_, started)) => {
                let timed_out = started + self.timeout_at(started);
                wake = Some(wake.map_or(timed_out, |w| w.min(timed_out)));
            }
            None if now >= self.next_probe => {
                self.attempts += 1;
                self.in_flight = Some((self.attempts, now));
                return Action::Probe {
                    attempt: self.attempts,
                    timeout: self.timeout_at(now),
                };
            }
            None => wake = Some(wake.map_or(self.next_probe, |w| w.min(self.next_probe))),
        }
        Action::Wait {
            until: wake.unwrap_or(now),
        }
    }

    fn give_up(&mut self, deadline: Instant) -> Action {
        let reason = Reason::Deadline {
            after: self.policy.deadline.unwrap_or_default(),
            last: self.last.clone(),
        };
        self.decide(Verdict::Unhealthy { reason }, deadline)
    }

    /// The timeout of a probe started at `started`: the policy's, cut at the deadline.
    fn timeout_at(&self, started: Instant) -> Duration {
        match self.deadline() {
            Some(d) => self
                .policy
                .timeout
                .min(d.saturating_duration_since(started)),
            None => self.policy.timeout,
        }
    }

    /// Reports that probe `attempt` answered `outcome` at `now`. Answers of probes that already
    /// timed out, or of unknown attempts, are ignored. An answer later than the probe's timeout is a
    /// failure, whatever it says.
    pub fn record(&mut self, attempt: u32, now: Instant, outcome: Outcome) {
        let Some((current, started)) = self.in_flight else {
            return;
        };
        if current != attempt || self.verdict.is_some() {
            return;
        }
        // Healthy before this answer came: the answer is too late to matter.
        if let Some(at) = self
            .healthy_at()
            .filter(|at| *at <= now && self.deadline().is_none_or(|d| *at <= d))
        {
            self.decide(Verdict::Healthy, at);
            return;
        }
        self.in_flight = None;
        let outcome = in_time(outcome, started, now, self.timeout_at(started));
        self.next_probe = (started + self.policy.interval).max(now);
        self.last = Some(outcome.detail().to_string());
        // An answer after the deadline cannot change the verdict the deadline already made.
        if let Some(d) = self.deadline().filter(|d| now > *d) {
            self.give_up(d);
            return;
        }
        if !outcome.is_success() {
            self.passing_since = None;
        }
        match self
            .streak
            .record(&self.policy, self.start, started, &outcome)
        {
            Crossed::Success => {
                self.passing_since.get_or_insert(now);
            }
            Crossed::Failure => {
                let reason = Reason::Failures {
                    count: self.streak.failures,
                    last: outcome.detail().to_string(),
                };
                self.decide(Verdict::Unhealthy { reason }, now);
            }
            Crossed::Neither => {}
        }
    }
}
