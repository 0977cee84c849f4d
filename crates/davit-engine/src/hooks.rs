//! Hooks: what runs around a deploy, under its lock. The engine only calls [`Hooks`]; the `davit`
//! binary implements it by running `x-davit.hooks` as local commands with `DAVIT_*` variables.
//!
//! **API Boundary:** the engine spawns no local process of its own; embedders decide what a hook is.

use async_trait::async_trait;
use serde::Serialize;

use crate::release::ReleaseOutcome;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// After the lock is taken on every host, before anything changes. Failing fails the deploy.
    PreDeploy,
    /// After the release is recorded, before the lock is released. Failing is reported only.
    PostDeploy,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::PreDeploy => "pre-deploy",
            Hook::PostDeploy => "post-deploy",
        })
    }
}

/// What a hook is told about the deploy (never an environment value).
#[derive(Debug, Clone, Serialize)]
pub struct HookContext {
    pub project: String,
    pub release: String,
    /// Every host of the deploy.
    pub hosts: Vec<String>,
    /// The services that change.
    pub services: Vec<String>,
    /// Who deploys.
    pub who: String,
    /// Set for `post-deploy`.
    pub outcome: Option<ReleaseOutcome>,
    /// The release a rollback restores.
    pub rollback_of: Option<String>,
}

/// Runs hooks. `Err` carries what to tell the user.
#[async_trait]
pub trait Hooks: Send + Sync {
    async fn run(&self, hook: Hook, ctx: &HookContext) -> Result<(), String>;
}
