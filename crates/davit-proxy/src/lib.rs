//! `davit-proxy`: the reverse proxy that holds each host's published ports and moves traffic between
//! containers without losing a request. See docs/ARCHITECTURE.md (`crates/davit-proxy`).
//!
//! - [`api`]: the admin API's JSON types ([`api::RouteSpec`], [`api::RouteStatus`]);
//! - [`client`]: a typed admin client over any stream ([`client::AdminClient`]);
//! - [`Proxy`]: the proxy itself (routes, listeners, admin API, state file);
//! - [`tls`]: certificates from files behind a resolver trait (the ACME seam).

pub mod api;
pub mod client;
mod drain;
mod error;
mod forward;
mod handover;
mod health;
mod metrics;
mod pool;
mod route;
mod server;
pub mod tls;
mod upstream;

pub use error::Error;
pub use handover::TAKEN_OVER;
pub use pool::set_worker_index;
pub use server::{Proxy, ProxyConfig, bind_listener};

#[cfg(test)]
mod tests;
