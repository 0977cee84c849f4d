//! Integration tests of davit-registry against real parts: the lab's registry (instance 5), the local
//! Docker engine, a lab host's engine, and a second registry with htpasswd auth started here.

#[path = "registry/support.rs"]
mod support;

#[path = "registry/push.rs"]
mod push;

#[path = "registry/prune.rs"]
mod prune;

#[path = "registry/auth.rs"]
mod auth;

#[path = "registry/build.rs"]
mod build;
