/// Errors of `davit-rollout`: a rollout that cannot be set up as asked. `Display` describes this
/// crate's level; the machine itself never fails once built (failures of hosts are outcomes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rollout needs at least one host.
    #[error("a rollout needs at least one host")]
    NoHosts,
    /// Two hosts with the same name.
    #[error("host {0:?} is listed twice")]
    DuplicateHost(String),
    /// `max_parallel` of a rolling rollout is 0.
    #[error("rolling: max_parallel must be at least 1")]
    ZeroParallel,
    /// Canary steps must be increasing weights ending at 100.
    #[error("canary: steps must be increasing weights in 1..=100 ending at 100, got {0:?}")]
    CanarySteps(Vec<u8>),
    /// A strategy name that is not one of `recreate`, `rolling`, `blue-green`, `canary`.
    #[error("unknown strategy {0:?}: expected recreate, rolling, blue-green or canary")]
    UnknownStrategy(String),
}
