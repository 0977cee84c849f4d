//! `davit-health`: Kubernetes-grade health probing.
//!
//! - [`Machine`] is the pure verdict machine: fed probe results and times (`now` is always passed
//!   in), it answers what to do next ([`Action`]): probe now, wait until a time, or a [`Verdict`].
//!   It and [`Policy`] need no runtime, so the proxy can gate upstreams with them. [`Monitor`] is
//!   its ongoing counterpart (readiness): a status that flips on the thresholds, never final.
//! - [`Probe`] says what to probe (HTTP(S), TCP, exec in a container, a container's Docker health);
//!   [`parse_target`] reads `davit probe` targets.
//! - [`Prober`] runs one probe through a [`Dial`] (direct TCP here, SSH `direct-tcpip` in the
//!   engine) and a `bollard::Docker`; [`wait_healthy`] drives the machine with it and emits [`Event`]s.
//! - [`ServiceHealth::from_compose`] maps a service's compose healthcheck and proxy health path.
//!
//! The async part (`Prober`, `Dial`, `wait_healthy`) is the default feature `probes`; with
//! `default-features = false` the crate is only the pure part, with no runtime or network stack.

mod compose;
#[cfg(feature = "probes")]
mod dial;
mod duration;
mod error;
mod event;
#[cfg(feature = "probes")]
mod http;
mod machine;
mod monitor;
mod probe;
#[cfg(feature = "probes")]
mod run;

pub use compose::{DEFAULT_DEADLINE, Healthcheck, HttpCheck, ServiceHealth};
#[cfg(feature = "probes")]
pub use dial::{AsyncReadWrite, Dial, DirectDial};
pub use duration::{format_duration, parse_duration};
pub use error::Error;
pub use event::Event;
pub use machine::{Action, Machine, Outcome, Policy, Reason, Verdict};
pub use monitor::{Monitor, Status, Step};
pub use probe::{HttpProbe, Probe, StatusRange, Target, parse_target};
#[cfg(feature = "probes")]
pub use run::{Prober, wait_healthy};

#[cfg(test)]
mod tests;
