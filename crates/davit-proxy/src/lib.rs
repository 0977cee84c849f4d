//! `davit-proxy`: the reverse proxy that holds each host's published ports and moves traffic between
//! containers without losing a request. See docs/ARCHITECTURE.md (`crates/davit-proxy`).
//!
//! - [`api`]: the admin API's JSON types ([`api::RouteSpec`], [`api::RouteStatus`]);
//! - [`client`]: a typed admin client over any stream ([`client::AdminClient`]).

pub mod api;
pub mod client;
mod error;

pub use error::Error;

#[cfg(test)]
mod tests;
