//! `davit-rollout`: rollout strategies as sans-IO state machines.
//!
//! A [`Rollout`] replaces the *old* containers of one service by *new* ones on a set of hosts. It does
//! no I/O, reads no clock and spawns nothing: the driver (the engine, or a test loop on a fake clock)
//! feeds it [`Event`]s and the current time, and executes the [`Action`]s it emits, the way
//! `quinn-proto` is written:
//!
//! ```text
//! let mut r = Rollout::new(config, hosts)?;
//! r.start(now);
//! loop {
//!     while let Some(action) = r.poll_action() { /* execute, later report an Event */ }
//!     if let Some(outcome) = r.outcome() { break }
//!     /* wait for an event or until r.poll_timeout() */
//!     r.handle(now, event)  /  r.handle_timeout(now)
//! }
//! ```
//!
//! Every [`Action::Do`] is answered by exactly one [`Event::Completed`] or [`Event::Failed`] for the same
//! host and step ([`Step::Sample`] by [`Event::Sampled`]). [`Action::Watch`] starts a health watcher
//! that reports [`Event::Healthy`] / [`Event::Unhealthy`] transitions until [`Action::Unwatch`].
//! The last action is always [`Action::Finished`].
//!
//! Time is a [`Duration`] since any epoch the driver chooses (the engine uses the deploy's start).

mod error;
mod latency;
mod machine;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::Error;
pub use latency::Histogram;
pub use machine::Rollout;

/// A point in time: the duration since an epoch chosen by the driver.
pub type Time = Duration;

/// How new containers replace old ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop the old containers, then start the new ones (downtime; for services not behind the proxy).
    /// Hosts are done `max_parallel` at a time.
    Recreate { max_parallel: usize },
    /// Per host: start new beside old, wait healthy, switch the proxy, drain and stop old; at most
    /// `max_parallel` hosts in progress at once (like Nomad's `max_parallel`).
    Rolling { max_parallel: usize },
    /// Start the whole new set, wait until every host is healthy, switch every host at once; the old
    /// set keeps running for an instant switch-back until promoted (by [`Rollout::promote`] or after
    /// `promote_after`).
    BlueGreen { promote_after: Option<Duration> },
    /// Start the whole new set, then move traffic by weight steps (e.g. 10, 50, 100); each step is
    /// held for `hold`, then the proxy's metrics for the new version must stay within bounds.
    Canary(Canary),
}

/// Bounds of a canary rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// Weights (percent of traffic to the new version), increasing, ending at 100.
    pub steps: Vec<u8>,
    /// How long each step is held before its metrics are judged.
    pub hold: Duration,
    /// Highest acceptable share of failed requests (0.0..=1.0) on the new version.
    pub max_error_rate: f64,
    /// Highest acceptable p99 latency on the new version.
    pub max_p99: Duration,
}

impl Default for Canary {
    fn default() -> Self {
        Canary {
            steps: vec![10, 50, 100],
            hold: Duration::from_secs(10),
            max_error_rate: 0.01,
            max_p99: Duration::from_millis(500),
        }
    }
}

impl Strategy {
    /// The strategy called `name` (`recreate`, `rolling`, `blue-green`, `canary`) with default
    /// parameters.
    pub fn by_name(name: &str) -> Result<Strategy, Error> {
        Ok(match name {
            "recreate" => Strategy::Recreate { max_parallel: 1 },
            "rolling" => Strategy::Rolling { max_parallel: 1 },
            "blue-green" | "bluegreen" => Strategy::BlueGreen {
                promote_after: Some(Duration::from_secs(5)),
            },
            "canary" => Strategy::Canary(Canary::default()),
            other => return Err(Error::UnknownStrategy(other.to_string())),
        })
    }

    /// The strategy's name, as accepted by [`Strategy::by_name`].
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Recreate { .. } => "recreate",
            Strategy::Rolling { .. } => "rolling",
            Strategy::BlueGreen { .. } => "blue-green",
            Strategy::Canary(_) => "canary",
        }
    }

    /// Whether the strategy moves traffic with the proxy (all but `recreate`).
    pub fn uses_proxy(&self) -> bool {
        !matches!(self, Strategy::Recreate { .. })
    }
}

/// Health gates, as Nomad names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    /// A new container must stay healthy this long before it counts as healthy.
    pub min_healthy_time: Duration,
    /// A new container must count as healthy (including `min_healthy_time`) within this long after it
    /// is watched, else the rollout fails.
    pub healthy_deadline: Duration,
    /// The rollout must make progress (some host finishing a step) at least this often, else it
    /// fails. Not counted while a gate holds on purpose (canary hold, blue-green before promotion).
    pub progress_deadline: Duration,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min_healthy_time: Duration::from_secs(2),
            healthy_deadline: Duration::from_secs(60),
            progress_deadline: Duration::from_secs(120),
        }
    }
}

/// A rollout's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub strategy: Strategy,
    pub gates: Gates,
}

/// One host taking part in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// The host's name (its URL in the engine).
    pub name: String,
    /// Whether the host runs an old version of the service (false on a first deploy).
    pub has_old: bool,
}

impl HostSpec {
    pub fn new(name: impl Into<String>, has_old: bool) -> Self {
        HostSpec {
            name: name.into(),
            has_old,
        }
    }
}

/// Which set of containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Version {
    Old,
    New,
}

/// A unit of work the driver performs on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Create and start the new containers, receiving no traffic yet.
    StartNew,
    /// Set the proxy's weights: `weight` percent of new requests to the new containers, the rest to
    /// the old ones (100: switched; 0: switched back).
    Route { weight: u8 },
    /// Wait until the old containers, out of rotation, have finished their in-flight requests.
    DrainOld,
    /// Stop the old containers (kept, so a rollback can start them again).
    StopOld,
    /// Start the old containers again (rollback).
    StartOld,
    /// Stop and remove the new containers and their proxy targets (rollback).
    StopNew,
    /// Remove the old containers (the point of no return is passed).
    RemoveOld,
    /// Read the proxy's metrics for the new containers since the last route change; answered by
    /// [`Event::Sampled`].
    Sample,
}

/// Traffic the proxy saw for the new version since the last route change.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub requests: u64,
    pub errors: u64,
    pub p99: Duration,
}

/// What the rollout asks the driver to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Perform `step` on `host`; report [`Event::Completed`] or [`Event::Failed`].
    Do { host: String, step: Step },
    /// Start watching the health of `version`'s containers on `host`; report transitions.
    Watch { host: String, version: Version },
    /// Stop watching.
    Unwatch { host: String, version: Version },
    /// The rollout is over: nothing more will be emitted.
    Finished { outcome: Outcome },
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Completed {
        host: String,
        step: Step,
    },
    Failed {
        host: String,
        step: Step,
        reason: String,
    },
    Sampled {
        host: String,
        metrics: Metrics,
    },
    Healthy {
        host: String,
        version: Version,
    },
    Unhealthy {
        host: String,
        version: Version,
        reason: String,
    },
}

/// Why a rollout was aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Cause {
    /// A step failed on a host.
    StepFailed {
        host: String,
        step: Step,
        message: String,
    },
    /// A watched container turned unhealthy.
    Unhealthy { host: String, message: String },
    /// A new container was not healthy (for `min_healthy_time`) within `healthy_deadline`.
    HealthyDeadline { host: String },
    /// No progress within `progress_deadline`.
    ProgressDeadline,
    /// A canary step's metrics were out of bounds.
    CanaryBounds {
        weight: u8,
        requests: u64,
        errors: u64,
        p99_ms: u64,
    },
    /// The driver cancelled the rollout (Ctrl-C) or asked to switch back.
    Aborted { why: String },
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every host runs the new version; `warnings` lists cleanup steps that failed after the point of
    /// no return (e.g. removing an old container).
    Succeeded { warnings: Vec<String> },
    /// The rollout failed and every host is back on the old version.
    RolledBack { cause: Cause },
    /// The rollout failed and these hosts could not be put back on the old version.
    RollbackIncomplete { cause: Cause, hosts: Vec<String> },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Old => "old",
            Version::New => "new",
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::StartNew => f.write_str("start-new"),
            Step::Route { weight } => write!(f, "route new={weight}%"),
            Step::DrainOld => f.write_str("drain-old"),
            Step::StopOld => f.write_str("stop-old"),
            Step::StartOld => f.write_str("start-old"),
            Step::StopNew => f.write_str("stop-new"),
            Step::RemoveOld => f.write_str("remove-old"),
            Step::Sample => f.write_str("sample"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Do { host, step } => write!(f, "{host}: {step}"),
            Action::Watch { host, version } => write!(f, "{host}: watch {version}"),
            Action::Unwatch { host, version } => write!(f, "{host}: unwatch {version}"),
            Action::Finished { outcome } => write!(f, "finished: {outcome}"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Completed { host, step } => write!(f, "{host}: {step} done"),
            Event::Failed { host, step, reason } => write!(f, "{host}: {step} failed: {reason}"),
            Event::Sampled { host, metrics } => write!(
                f,
                "{host}: sampled {} requests, {} errors, p99 {}ms",
                metrics.requests,
                metrics.errors,
                metrics.p99.as_millis()
            ),
            Event::Healthy { host, version } => write!(f, "{host}: {version} healthy"),
            Event::Unhealthy {
                host,
                version,
                reason,
            } => write!(f, "{host}: {version} unhealthy: {reason}"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::StepFailed {
                host,
                step,
                message,
            } => write!(f, "{step} failed on {host}: {message}"),
            Cause::Unhealthy { host, message } => write!(f, "unhealthy on {host}: {message}"),
            Cause::HealthyDeadline { host } => {
                write!(
                    f,
                    "new containers on {host} not healthy within the deadline"
                )
            }
            Cause::ProgressDeadline => f.write_str("no progress within the progress deadline"),
            Cause::CanaryBounds {
                weight,
                requests,
                errors,
                p99_ms,
            } => write!(
                f,
                "canary at {weight}% out of bounds: {errors} errors in {requests} requests, p99 {p99_ms}ms"
            ),
            Cause::Aborted { why } => write!(f, "aborted: {why}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded { warnings } if warnings.is_empty() => f.write_str("succeeded"),
            Outcome::Succeeded { warnings } => {
                write!(f, "succeeded with warnings: {}", warnings.join("; "))
            }
            Outcome::RolledBack { cause } => write!(f, "rolled back ({cause})"),
            Outcome::RollbackIncomplete { cause, hosts } => {
                write!(f, "rollback incomplete on {} ({cause})", hosts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests;
