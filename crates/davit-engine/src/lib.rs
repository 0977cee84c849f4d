//! `davit-engine`: plans and executes deploys. The only crate that owns a runtime, timers and spawning.
//!
//! - [`model`]: what is deployed ([`ProjectSpec`], [`ServiceSpec`]), in the engine's own terms;
//! - [`deploy`]: plan (pin images, read hosts, diff) then execute (proxy, lock, rollouts held until
//!   every service is through, then committed or all reverted, release);
//! - [`driver`]: runs a `davit-rollout` state machine against an [`driver::Executor`];
//! - [`exec`]: the real executor (Docker engine + the host's davit-proxy);
//! - [`gate`]: the health gate of new containers, with `davit-health`'s probes and policy;
//! - [`metrics`]: the proxy's latency histograms, for a canary's p99;
//! - [`release`]: releases and the deploy lock, kept on the hosts;
//! - [`job`]: one-off jobs (migrations) run under the lock before their dependents;
//! - [`hooks`]: pre- and post-deploy hooks, run through the [`hooks::Hooks`] trait;
//! - [`proxyhost`]: the proxy image built in memory and its container on each host;
//! - [`status`]: what each host runs, and logs;
//! - [`prune`]: stopped containers and the images of old releases, on every host.

pub mod adapters;
pub mod deploy;
pub mod driver;
mod error;
pub mod exec;
pub mod gate;
pub mod hooks;
pub mod hostops;
pub mod job;
pub mod metrics;
pub mod model;
pub mod proxyhost;
pub mod prune;
pub mod release;
pub mod remote;
pub mod status;

pub use deploy::{Options, Plan, Report, Resolver, deploy, plan, prepare};
pub use error::Error;
pub use model::{ProjectSpec, ProxySpec, ServiceSpec};
pub use remote::{Remote, RemoteRef};

#[cfg(test)]
mod tests;
