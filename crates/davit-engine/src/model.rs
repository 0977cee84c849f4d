//! What the engine deploys: a project of services, in the engine's own terms.
//!
//! **API Boundary:** the engine does not read compose files; the CLI converts the loaded compose model
//! (`davit-compose`) into a [`ProjectSpec`]. Everything here is plain data, serialisable, so a release
//! can store it as its snapshot ([`ProjectSpec::redacted`] takes the environment values out).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use davit_rollout::Strategy;

/// A compose project to deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectSpec {
    /// The compose project name (`com.docker.compose.project`).
    pub name: String,
    /// The project directory, recorded in `com.docker.compose.project.working_dir`.
    #[serde(default)]
    pub working_dir: String,
    /// Services in dependency order (a service after every service it depends on).
    pub services: Vec<ServiceSpec>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// The image as written (`registry/repo:tag`).
    pub image: String,
    /// The image pinned by digest (`registry/repo@sha256:…`), filled in by planning.
    #[serde(default)]
    pub pinned: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The environment. Never printed, never stored in a release snapshot (only its hash).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Ports published by the containers themselves (services not behind the proxy).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Mounts: `(kind, source, target, read_only)` with kind `volume` or `bind`.
    #[serde(default)]
    pub volumes: Vec<MountSpec>,
    /// Networks of the project the service joins (short names; `default` when empty).
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub proxy: Option<ProxySpec>,
    pub strategy: Strategy,
    #[serde(default)]
    pub stop_grace_period: Option<Duration>,
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// A compose `healthcheck:` test (`["CMD", …]`), overriding the image's; `["NONE"]` disables.
    #[serde(default)]
    pub healthcheck: Option<Vec<String>>,
    /// A one-off job (another service depends on it with `service_completed_successfully`, e.g. a
    /// migration): run to completion on one host, under the lock, before its dependents roll out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job: bool,
    /// How long a new container must stay healthy (`deploy.update_config.monitor`), overriding the
    /// deploy's `min_healthy_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<Duration>,
    /// The timing of the compose `healthcheck:` (given to Docker, and followed by the health gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck_timing: Option<HealthTiming>,
}

/// The timing of a compose `healthcheck:`; what is left out takes Docker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTiming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
}

impl HealthTiming {
    pub fn is_empty(&self) -> bool {
        *self == HealthTiming::default()
    }
}

fn one() -> u32 {
    1
}

/// `x-davit.proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxySpec {
    /// Container port receiving traffic.
    pub port: u16,
    /// HTTP path that must answer 2xx/3xx.
    pub health: String,
    /// Host port the proxy listens on.
    pub publish: u16,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub target: u16,
    pub published: Option<u16>,
    #[serde(default)]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// `volume` or `bind`.
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl ServiceSpec {
    /// A minimal service (tests and conversions fill in the rest).
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: image.into(),
            pinned: None,
            command: None,
            entrypoint: None,
            environment: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            networks: Vec::new(),
            replicas: 1,
            depends_on: Vec::new(),
            proxy: None,
            strategy: Strategy::Recreate { max_parallel: 1 },
            stop_grace_period: None,
            restart: None,
            user: None,
            working_dir: None,
            healthcheck: None,
            job: false,
            min_healthy_time: None,
            healthcheck_timing: None,
        }
    }

    /// The hash of the environment (names and values): what a release records instead of values.
    pub fn env_hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.environment {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `com.docker.compose.config-hash`: a hash of everything that makes a container differ (the
    /// pinned image, the environment, the rest of the spec); equal hashes mean nothing to do.
    pub fn config_hash(&self) -> String {
        let mut copy = self.redacted();
        copy.strategy = Strategy::Recreate { max_parallel: 1 };
        let mut text = serde_json::to_string(&copy).unwrap_or_default();
        text.push_str(&self.env_hash());
        sha256_hex(text.as_bytes())
    }

    /// The spec without environment values (the names stay, each value replaced by `***`).
    pub fn redacted(&self) -> ServiceSpec {
        let mut s = self.clone();
        for v in s.environment.values_mut() {
            *v = "***".into();
        }
        s
    }

    /// The image to run: pinned when planning pinned it.
    pub fn image_ref(&self) -> &str {
        self.pinned.as_deref().unwrap_or(&self.image)
    }

    /// The networks the service joins (`default` when none is named).
    pub fn network_names(&self) -> Vec<String> {
        if self.networks.is_empty() {
            vec!["default".into()]
        } else {
            self.networks.clone()
        }
    }
}

impl ProjectSpec {
    /// The project without environment values, for a release snapshot.
    pub fn redacted(&self) -> ProjectSpec {
        ProjectSpec {
            services: self.services.iter().map(ServiceSpec::redacted).collect(),
            ..self.clone()
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The default strategy of a service: rolling behind the proxy, recreate otherwise.
pub fn default_strategy(behind_proxy: bool) -> Strategy {
    if behind_proxy {
        Strategy::Rolling { max_parallel: 1 }
    } else {
        Strategy::Recreate { max_parallel: 1 }
    }
}
