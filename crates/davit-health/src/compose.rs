//! A service's health check from its compose definition, given as plain values so that this crate
//! does not depend on the compose model (the engine maps `healthcheck:` and `x-davit.proxy.health`
//! onto [`ServiceHealth`]).

use std::time::Duration;

use crate::machine::Policy;
use crate::probe::{HttpProbe, Probe};

/// Docker's defaults for a healthcheck's timing (`docker inspect` shows 0 for "default").
pub const DOCKER_INTERVAL: Duration = Duration::from_secs(30);
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DOCKER_RETRIES: u32 = 3;
/// Nomad's default `healthy_deadline`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// A compose `healthcheck:`, as plain values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// `test` in its normal form: `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`. Empty: the
    /// image's own healthcheck (compose may set only the timing).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
    /// `disable: true`.
    pub disable: bool,
}

impl Healthcheck {
    /// Whether this healthcheck turns health checking off (`disable: true` or `test: ["NONE"]`).
    pub fn is_disabled(&self) -> bool {
        self.disable || self.test.first().is_some_and(|t| t == "NONE")
    }
}

/// `x-davit.proxy` health: `GET http://HOST:PORT/PATH` must answer 2xx/3xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Where the container is reached from the dialer's side (its address on the host's network).
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// How to tell that one container of a service is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub probe: Probe,
    pub policy: Policy,
}

impl ServiceHealth {
    /// The check for `container`: the proxy's HTTP health path when the service has one (that is
    /// what gates traffic), else the container's Docker healthcheck status when it has one, else
    /// `None` (the engine then only waits for the container to run).
    ///
    /// The timing comes from the compose healthcheck when present (Docker's defaults for what it
    /// leaves out), else Kubernetes' defaults; the deadline is Nomad's 5 minutes, or longer when
    /// the healthcheck's start period and retries need more.
    pub fn from_compose(
        container: &str,
        healthcheck: Option<&Healthcheck>,
        http: Option<&HttpCheck>,
    ) -> Option<Self> {
        let hc = healthcheck.filter(|h| !h.is_disabled());
        if let Some(http) = http {
            let path = if http.path.starts_with('/') {
                http.path.clone()
            } else {
                format!("/{}", http.path)
            };
            let host = if http.host.contains(':') {
                format!("[{}]", http.host)
            } else {
                http.host.clone()
            };
            let url = url::Url::parse(&format!("http://{host}:{}{path}", http.port)).ok()?;
            let probe = Probe::Http(HttpProbe::new(url).ok()?);
            let policy = match hc {
                Some(h) => Policy {
                    interval: h.interval.unwrap_or(DOCKER_INTERVAL),
                    timeout: h.timeout.unwrap_or(DOCKER_TIMEOUT),
                    failure_threshold: h.retries.unwrap_or(DOCKER_RETRIES),
                    start_period: h.start_period.unwrap_or_default(),
                    ..Policy::default()
                },
                None => Policy::default(),
            };
            let deadline = deadline_for(&policy);
            return Some(ServiceHealth {
                probe,
                policy: Policy {
                    deadline: Some(deadline),
                    ..policy
                },
            });
        }
        let h = hc?;
        // Docker runs the test itself and reports its verdict (`starting` during its start period,
        // `unhealthy` after `retries` failures): we only read that status, often and cheaply.
        let docker_policy = Policy {
            interval: h.interval.unwrap_or(DOCKER_INTERVAL),
            timeout: h.timeout.unwrap_or(DOCKER_TIMEOUT),
            failure_threshold: h.retries.unwrap_or(DOCKER_RETRIES),
            start_period: h.start_period.unwrap_or_default(),
            ..Policy::default()
        };
        let policy = Policy {
            interval: Duration::from_secs(1).min(docker_policy.interval),
            timeout: Duration::from_secs(5),
            failure_threshold: 1,
            deadline: Some(deadline_for(&docker_policy)),
            ..Policy::default()
        };
        Some(ServiceHealth {
            probe: Probe::Container {
                container: container.to_string(),
            },
            policy,
        })
    }
}

/// Long enough for the start period and enough probes to pass or fail, and at least 5 minutes.
fn deadline_for(p: &Policy) -> Duration {
    let probes = p
        .failure_threshold
        .max(p.success_threshold)
        .saturating_add(1);
    let needed = p.start_period + (p.interval + p.timeout) * probes;
    needed.max(DEFAULT_DEADLINE)
}
