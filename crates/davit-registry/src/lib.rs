//! `davit-registry`: the OCI registry client of davit.
//!
//! - [`Registry`]: one registry with its credentials ([`Settings`], found as Docker finds them) and
//!   scheme (plain HTTP only for loopback and registries marked insecure).
//! - [`resolve_digest`] / [`Registry::resolve_digest`]: a tag to the digest deploys pin.
//! - [`push_image`]: an image from any Docker engine (a `bollard::Docker`) to a registry, sending only
//!   the blobs the registry lacks, several at a time, with [`Progress`] events.
//! - [`Registry::tags`], [`Registry::delete_manifest`], [`prune`]: listing and pruning tags.
//! - [`tags`](mod@tags): tag strategies for CI (`latest`, the git SHA, `branch-sha`, semver, moving tags).
//! - [`build`](mod@build): building images through the engine's build API.

pub mod auth;
pub mod build;
mod client;
mod error;
pub mod prune;
mod push;
pub mod tags;
mod tarstream;

pub use auth::{Credentials, Settings};
pub use client::{
    ImageRef, MANIFEST_TYPES, Registry, resolve_digest, validate_repository, validate_tag,
};
pub use error::{Cause, Error};
pub use prune::{PruneOptions, PrunePlan, prune};
pub use push::{BlobSource, Progress, ProgressFn, PushOptions, PushReport, push_image};

#[cfg(test)]
mod tests;
