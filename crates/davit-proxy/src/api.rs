//! The admin API's types: what the engine sends (`RouteSpec`) and what the proxy reports (`RouteStatus`).
//!
//! JSON over HTTP/1.1. Durations are whole milliseconds in fields ending in `_ms`. Every field that has a
//! default may be left out, so `{"listen":"0.0.0.0:80","targets":[{"addr":"172.30.1.5:8080"}]}` is a whole
//! route.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The admin API's default address: loopback only, reached by the engine through an SSH channel.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:19900";

/// The cookie that keeps a client on one target while a route has several (canaries).
pub const STICKY_COOKIE: &str = "davit_target";

/// The whole desired state of one route (`PUT /routes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Where the proxy listens for this route's clients, e.g. `0.0.0.0:80`. One route per address.
    pub listen: SocketAddr,
    /// The upstreams and their weights. A new target gets traffic only after its health check passes;
    /// targets left out are drained.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    /// How a target's health is checked.
    #[serde(default)]
    pub health: HealthSpec,
    /// How long a removed target may keep its in-flight requests before it counts as drained.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Client and upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Largest request body accepted, in bytes (413 beyond).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// TLS for this route's listener (certificates from files); plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Maintenance mode: when set, every request is answered 503 with this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

impl RouteSpec {
    /// A route on `listen` to `targets`, everything else at its default.
    #[must_use]
    pub fn new(listen: SocketAddr, targets: Vec<TargetSpec>) -> Self {
        Self {
            listen,
            targets,
            health: HealthSpec::default(),
            drain_timeout_ms: defaults::drain_timeout_ms(),
            timeouts: Timeouts::default(),
            max_body_bytes: defaults::max_body_bytes(),
            tls: None,
            maintenance: None,
        }
    }

    /// The same route with this health check.
    #[must_use]
    pub fn with_health(mut self, health: HealthSpec) -> Self {
        self.health = health;
        self
    }

    /// The same route with this drain timeout.
    #[must_use]
    pub fn with_drain_timeout_ms(mut self, ms: u64) -> Self {
        self.drain_timeout_ms = ms;
        self
    }
}

/// One upstream of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// A stable name (e.g. the container name); the sticky cookie carries it. Defaults to `addr`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `ip:port` the proxy connects to (a container's bridge address).
    pub addr: SocketAddr,
    /// Relative share of new clients; 0 keeps the target warm but sends it no new client.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

impl TargetSpec {
    /// A target of weight 100 named `id` (its address when `id` is empty).
    #[must_use]
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            addr,
            weight: defaults::weight(),
        }
    }

    /// The same target with this weight.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The id the proxy uses: `id`, or the address when `id` is empty.
    #[must_use]
    pub fn effective_id(&self) -> String {
        if self.id.is_empty() {
            self.addr.to_string()
        } else {
            self.id.clone()
        }
    }
}

/// How targets are checked before and while they get traffic.
///
/// The verdict is `davit-health`'s ongoing policy ([`davit_health::Monitor`]), fed with this
/// spec as a [`davit_health::Policy`] (see [`HealthSpec::policy`]): the knobs mean what they mean
/// there (Kubernetes `periodSeconds`, `timeoutSeconds`, `successThreshold`, `failureThreshold`,
/// Docker `start_period`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// HTTP path that must answer 2xx/3xx (`GET`); a plain TCP connect when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between the starts of two checks.
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    /// A check that has not answered after this long is a failure.
    #[serde(default = "defaults::check_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that make a target healthy.
    #[serde(default = "defaults::one")]
    pub success_threshold: u32,
    /// Consecutive counted failures that make a target unhealthy (it then gets no new requests).
    #[serde(default = "defaults::three")]
    pub failure_threshold: u32,
    /// Failures of checks started within this time after the target was added are not counted
    /// (Docker's `start_period`); a success in it counts as usual.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period_ms: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            path: None,
            interval_ms: defaults::interval_ms(),
            timeout_ms: defaults::check_timeout_ms(),
            success_threshold: 1,
            failure_threshold: 3,
            start_period_ms: 0,
        }
    }
}

impl HealthSpec {
    /// An HTTP check of `path` with default timing.
    #[must_use]
    pub fn http(path: impl Into<String>) -> Self {
        Self {
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// The health crate's policy this spec stands for: what gates the target.
    #[must_use]
    pub fn policy(&self) -> davit_health::Policy {
        davit_health::Policy {
            start_period: Duration::from_millis(self.start_period_ms),
            interval: Duration::from_millis(self.interval_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            success_threshold: self.success_threshold,
            failure_threshold: self.failure_threshold,
            ..davit_health::Policy::default()
        }
    }

    /// A check of `path` (a TCP connect when `None`) with the timing and thresholds of `policy`, e.g.
    /// the one `davit_health::ServiceHealth::from_compose` derives from a service's healthcheck.
    /// What the proxy cannot use for an ongoing check (`initial_delay`, `min_healthy_time`,
    /// `deadline`: the engine's own gates) is left out.
    #[must_use]
    pub fn from_policy(path: Option<String>, policy: &davit_health::Policy) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            path,
            interval_ms: ms(policy.interval),
            timeout_ms: ms(policy.timeout),
            success_threshold: policy.success_threshold,
            failure_threshold: policy.failure_threshold,
            start_period_ms: ms(policy.start_period),
        }
    }
}

/// Timeouts of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to an upstream.
    #[serde(default = "defaults::connect_ms")]
    pub connect_ms: u64,
    /// From a request's arrival to the upstream's response head (504 beyond).
    #[serde(default = "defaults::request_ms")]
    pub request_ms: u64,
    /// A client keep-alive connection with no request is closed after this long.
    #[serde(default = "defaults::idle_ms")]
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: defaults::connect_ms(),
            request_ms: defaults::request_ms(),
            idle_ms: defaults::idle_ms(),
        }
    }
}

/// TLS from PEM files (a chain and its key). ACME would come in as another certificate resolver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Maintenance mode of a route (`POST /routes/{name}/maintenance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// HTML served with the 503; a built-in page when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// Body of `POST /routes/{name}/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// Where a target is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Its health check has not passed yet (no threshold reached): no traffic.
    Pending,
    /// Healthy, but not serving yet (the switch waits for every new target) or its weight is 0.
    Healthy,
    /// Receives traffic.
    Active,
    /// Failed `failure_threshold` checks in a row (not counting the start period): no new requests
    /// until it passes `success_threshold` in a row again. A target that never passed stays out of
    /// the route; one that did keeps the route served while it is the only one left.
    Unhealthy,
    /// Removed from the route: no new requests, in-flight ones finish.
    Draining,
    /// No request in flight any more (or the drain timeout passed): the engine may stop it.
    Drained,
}

/// What `GET /routes/{name}` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub name: String,
    pub spec: RouteSpec,
    pub targets: Vec<TargetStatus>,
}

impl RouteStatus {
    /// The status of the target named `id`.
    #[must_use]
    pub fn target(&self, id: &str) -> Option<&TargetStatus> {
        self.targets.iter().find(|t| t.id == id)
    }

    /// True when every target of the spec is active and every other target is drained: the switch is done.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.targets.iter().all(|t| {
            let desired = self.spec.targets.iter().any(|s| s.effective_id() == t.id);
            if desired {
                t.state == TargetState::Active || t.weight == 0
            } else {
                t.state == TargetState::Drained
            }
        })
    }
}

/// One target as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub id: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: TargetState,
    /// Requests (and upgraded connections) not finished yet.
    pub in_flight: u64,
    pub requests: u64,
    pub responses_5xx: u64,
    /// The last health check's outcome, e.g. `200 OK` or `connect: connection refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
}

/// The body of every admin error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

mod defaults {
    pub(super) fn drain_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn max_body_bytes() -> u64 {
        100 * 1024 * 1024
    }
    pub(super) fn weight() -> u32 {
        100
    }
    pub(super) fn interval_ms() -> u64 {
        1_000
    }
    pub(super) fn check_timeout_ms() -> u64 {
        2_000
    }
    pub(super) fn one() -> u32 {
        1
    }
    pub(super) fn three() -> u32 {
        3
    }
    pub(super) fn connect_ms() -> u64 {
        3_000
    }
    pub(super) fn request_ms() -> u64 {
        60_000
    }
    pub(super) fn idle_ms() -> u64 {
        60_000
    }
}
