//! The typed compose model the deploy engine uses.
//!
//! **API Boundary:** these types are built from the canonical JSON that `davit config` prints (the same
//! document as `docker compose config --format json`), so every field here has already been
//! interpolated, merged, extended, filtered by profile and normalised (paths are absolute, short syntax
//! expanded). The full document stays available through [`Project::to_json`] for anything not typed here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A loaded, validated compose project.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Project {
    /// The project name (from `-p`, `COMPOSE_PROJECT_NAME`, the top-level `name:` or the directory).
    pub name: String,
    /// The project directory (absolute): relative paths in the files were resolved against it.
    pub working_dir: PathBuf,
    /// The enabled services, in dependency order: every service comes after all services it
    /// `depends_on`; ties keep name order.
    pub services: Vec<Service>,
    /// Top-level `x-davit.environments`, by name (`davit deploy --env NAME`).
    pub environments: BTreeMap<String, DavitEnvironment>,
    /// Top-level `x-davit.hooks`: local commands run around a deploy.
    pub hooks: DavitHooks,
    /// Warnings Compose would print (unset variables), each at its position.
    pub warnings: Vec<crate::Diagnostic>,
    /// The canonical document, values unescaped (a `$` is a `$`).
    pub(crate) json: serde_json::Value,
    /// Whether variables were interpolated (then `config` output escapes `$` as `$$`).
    pub(crate) interpolated: bool,
}

impl Project {
    /// The canonical document with real values: what `docker compose config --format json` prints,
    /// except that Compose escapes every `$` as `$$` in its output (see [`Project::to_json_string`]).
    #[must_use]
    pub fn to_json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The canonical document exactly as `docker compose config --format json` prints it
    /// (two-space indented; `$` escaped as `$$` unless loaded with interpolation off).
    #[must_use]
    pub fn to_json_string(&self) -> String {
        let s = serde_json::to_string_pretty(&self.json).unwrap_or_default();
        if self.interpolated {
            s.replace('$', "$$")
        } else {
            s
        }
    }

    /// What `docker compose config --format json` prints, or the error it fails with: Compose
    /// cannot print `build.ssh` entries as JSON (its marshaller emits invalid JSON for them).
    ///
    /// # Errors
    /// A service has `build.ssh` entries.
    pub fn config_json(&self) -> Result<String, crate::Error> {
        if let Some(serde_json::Value::Object(services)) = self.json.get("services") {
            for (name, s) in services {
                if s.get("build")
                    .and_then(|b| b.get("ssh"))
                    .is_some_and(|x| x.as_object().is_some_and(|o| !o.is_empty()))
                {
                    return Err(crate::Error::NotRepresentable(format!(
                        "services.{name}.build.ssh cannot be printed as JSON (Compose fails on it too); use --format yaml"
                    )));
                }
            }
        }
        Ok(self.to_json_string())
    }

    /// The canonical document as YAML (`docker compose config --format yaml`).
    #[must_use]
    pub fn to_yaml_string(&self) -> String {
        let s = crate::yaml::to_yaml_string(&self.json);
        if self.interpolated {
            s.replace('$', "$$")
        } else {
            s
        }
    }

    /// The service called `name`, if enabled.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One service of the project.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Service {
    /// The service name (its key under `services:`).
    pub name: String,
    /// `image:` as written (after interpolation), e.g. `10.77.0.1:5000/app:v2`.
    pub image: Option<String>,
    /// `true` when the service has a `build:` section.
    pub has_build: bool,
    /// `command:` (exec form); `None` when the image's command is kept.
    pub command: Option<Vec<String>>,
    /// `entrypoint:` (exec form); `None` when the image's entrypoint is kept.
    pub entrypoint: Option<Vec<String>>,
    /// `container_name:`.
    pub container_name: Option<String>,
    /// `environment:` after `env_file:` entries were read and merged in; `None` means "pass through
    /// from the environment of the engine" (a bare `KEY` entry).
    pub environment: BTreeMap<String, Option<String>>,
    /// `env_file:` entries (absolute paths), already folded into [`Service::environment`].
    pub env_files: Vec<EnvFile>,
    /// `labels:`.
    pub labels: BTreeMap<String, String>,
    /// `ports:`, long syntax.
    pub ports: Vec<Port>,
    /// `volumes:`, long syntax.
    pub volumes: Vec<Volume>,
    /// `healthcheck:`; `None` when absent (the image's own healthcheck applies).
    pub healthcheck: Option<Healthcheck>,
    /// `depends_on:`, long syntax, sorted by service name.
    pub depends_on: Vec<Dependency>,
    /// `deploy.replicas` (or `scale`), default 1.
    pub replicas: u32,
    /// `deploy.update_config`.
    pub update_config: Option<UpdateConfig>,
    /// `restart:`.
    pub restart: Option<String>,
    /// Networks the service joins (names as keys of the top-level `networks:`), sorted.
    pub networks: Vec<String>,
    /// `stop_grace_period:`.
    pub stop_grace_period: Option<Duration>,
    /// `stop_signal:`.
    pub stop_signal: Option<String>,
    /// `user:`.
    pub user: Option<String>,
    /// `working_dir:`.
    pub working_dir: Option<String>,
    /// `profiles:`.
    pub profiles: Vec<String>,
    /// The `x-davit` extension of this service, validated.
    pub davit: DavitService,
}

/// One `env_file:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvFile {
    /// Absolute path.
    pub path: PathBuf,
    /// `required:` (default true).
    pub required: bool,
}

/// One published or exposed port (long syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Port {
    /// The container port.
    pub target: u16,
    /// The host port or range (`"8080"`, `"8000-8010"`); `None` lets the engine pick.
    pub published: Option<String>,
    /// `host_ip`.
    pub host_ip: Option<String>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// `ingress` or `host`.
    pub mode: String,
}

/// One mount (long syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Volume {
    /// `bind`, `volume`, `tmpfs`, `npipe`, `cluster` or `image`.
    pub kind: String,
    /// The source: an absolute host path for binds, a volume name, or `None` (anonymous, tmpfs).
    pub source: Option<String>,
    /// The path in the container.
    pub target: String,
    /// `read_only`.
    pub read_only: bool,
}

/// `healthcheck:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Healthcheck {
    /// `test:` in exec form as Docker takes it: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    /// `interval:`.
    pub interval: Option<Duration>,
    /// `timeout:`.
    pub timeout: Option<Duration>,
    /// `retries:`.
    pub retries: Option<u64>,
    /// `start_period:`.
    pub start_period: Option<Duration>,
    /// `start_interval:`.
    pub start_interval: Option<Duration>,
    /// `disable: true` (or `test: ["NONE"]`).
    pub disable: bool,
}

/// One `depends_on:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// When the dependency counts as satisfied.
    pub condition: DependencyCondition,
    /// `restart:`: restart this service when the dependency is updated.
    pub restart: bool,
    /// `required:` (default true).
    pub required: bool,
}

/// `depends_on.*.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DependencyCondition {
    /// `service_started` (the default).
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    CompletedSuccessfully,
}

/// `deploy.update_config`.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct UpdateConfig {
    /// `parallelism:` (containers updated at once).
    pub parallelism: Option<u64>,
    /// `delay:` between batches.
    pub delay: Option<Duration>,
    /// `failure_action:` (`continue`, `rollback`, `pause`).
    pub failure_action: Option<String>,
    /// `monitor:` duration after each task update.
    pub monitor: Option<Duration>,
    /// `max_failure_ratio:`.
    pub max_failure_ratio: Option<f64>,
    /// `order:` (`stop-first` or `start-first`).
    pub order: Option<String>,
}

/// The per-service `x-davit` extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DavitService {
    /// `x-davit.proxy`: put the service behind the host's proxy.
    pub proxy: Option<Proxy>,
    /// `x-davit.strategy`, else `rolling` behind the proxy and `recreate` otherwise.
    pub strategy: Strategy,
}

/// `x-davit.proxy`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Proxy {
    /// The container port that receives traffic.
    pub port: u16,
    /// The HTTP path that must answer 2xx/3xx before traffic moves (default `/`).
    pub health: String,
    /// The host port the proxy listens on (default 80).
    pub publish: u16,
}

/// A rollout strategy (`x-davit.strategy`, `davit deploy --strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Stop the old containers, then start the new ones.
    #[default]
    Recreate,
    /// Replace containers one batch at a time behind the proxy.
    Rolling,
    /// Start a full new set, switch traffic at once.
    BlueGreen,
    /// Send a share of traffic to one new container first.
    Canary,
}

impl Strategy {
    /// Parses `recreate`, `rolling`, `blue-green` or `canary`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "recreate" => Some(Self::Recreate),
            "rolling" => Some(Self::Rolling),
            "blue-green" => Some(Self::BlueGreen),
            "canary" => Some(Self::Canary),
            _ => None,
        }
    }

    /// The name as written in compose files and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recreate => "recreate",
            Self::Rolling => "rolling",
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
        }
    }
}

/// One named environment of the top-level `x-davit.environments`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DavitEnvironment {
    /// Host URLs (`ssh://user@host[:port]`, `unix:///…`, `local`).
    pub hosts: Vec<String>,
    /// Extra variables for interpolation when this environment is chosen.
    pub variables: BTreeMap<String, String>,
}

/// Top-level `x-davit.hooks`: commands run on the machine that deploys, under the deploy lock.
/// Each is an argv; a string in the file becomes `["sh", "-c", string]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DavitHooks {
    /// `pre-deploy`: after the lock is taken, before anything changes; failing fails the deploy.
    pub pre_deploy: Option<Vec<String>>,
    /// `post-deploy`: after the release is recorded, before the lock is released.
    pub post_deploy: Option<Vec<String>>,
}

// ---------------------------------------------------------------- building from the document

use serde_json::Value as J;

use crate::diag::{Diagnostic, Diagnostics};

fn dur(v: Option<&J>) -> Option<Duration> {
    let ns = crate::normalize::parse_duration(v?.as_str()?)?;
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

fn strs(v: Option<&J>) -> Option<Vec<String>> {
    v?.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    })
}

fn str_of(v: Option<&J>) -> Option<String> {
    v.and_then(J::as_str).map(String::from)
}

fn service_from(name: &str, s: &J, side: Option<&J>, errs: &mut Diagnostics) -> Service {
    let env_files = side.and_then(|x| x.get("env_file"));
    let g = |k: &str| s.get(k);
    let mut svc = Service {
        name: name.to_owned(),
        image: str_of(g("image")),
        has_build: g("build").is_some(),
        command: strs(g("command")),
        entrypoint: strs(g("entrypoint")),
        container_name: str_of(g("container_name")),
        restart: str_of(g("restart")),
        stop_signal: str_of(g("stop_signal")),
        user: str_of(g("user")),
        working_dir: str_of(g("working_dir")),
        stop_grace_period: dur(g("stop_grace_period")),
        profiles: strs(g("profiles")).unwrap_or_default(),
        replicas: 1,
        ..Service::default()
    };
    if let Some(J::Object(e)) = g("environment") {
        svc.environment = e
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(String::from)))
            .collect();
    }
    if let Some(J::Array(files)) = env_files {
        svc.env_files = files
            .iter()
            .map(|f| EnvFile {
                path: PathBuf::from(f.get("path").and_then(J::as_str).unwrap_or_default()),
                required: f.get("required").and_then(J::as_bool).unwrap_or(true),
            })
            .collect();
    }
    if let Some(J::Object(l)) = g("labels") {
        svc.labels = l
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
    }
    if let Some(J::Array(ports)) = g("ports") {
        svc.ports = ports
            .iter()
            .map(|p| Port {
                target: p
                    .get("target")
                    .and_then(J::as_u64)
                    .and_then(|t| u16::try_from(t).ok())
                    .unwrap_or(0),
                published: str_of(p.get("published")),
                host_ip: str_of(p.get("host_ip")),
                protocol: str_of(p.get("protocol")).unwrap_or_else(|| "tcp".into()),
                mode: str_of(p.get("mode")).unwrap_or_else(|| "ingress".into()),
            })
            .collect();
    }
    if let Some(J::Array(vols)) = g("volumes") {
        svc.volumes = vols
            .iter()
            .map(|v| Volume {
                kind: str_of(v.get("type")).unwrap_or_else(|| "volume".into()),
                source: str_of(v.get("source")),
                target: str_of(v.get("target")).unwrap_or_default(),
                read_only: v.get("read_only").and_then(J::as_bool).unwrap_or(false),
            })
            .collect();
    }
    if let Some(h) = g("healthcheck") {
        let disable = h.get("disable").and_then(J::as_bool).unwrap_or(false);
        let test = strs(h.get("test")).unwrap_or_default();
        svc.healthcheck = Some(Healthcheck {
            disable: disable || test.first().is_some_and(|t| t == "NONE"),
            test,
            interval: dur(h.get("interval")),
            timeout: dur(h.get("timeout")),
            retries: h.get("retries").and_then(J::as_u64),
            start_period: dur(h.get("start_period")),
            start_interval: dur(h.get("start_interval")),
        });
    }
    if let Some(J::Object(d)) = g("depends_on") {
        svc.depends_on = d
            .iter()
            .map(|(k, v)| Dependency {
                service: k.clone(),
                condition: match v.get("condition").and_then(J::as_str) {
                    Some("service_healthy") => DependencyCondition::Healthy,
                    Some("service_completed_successfully") => {
                        DependencyCondition::CompletedSuccessfully
                    }
                    _ => DependencyCondition::Started,
                },
                restart: v.get("restart").and_then(J::as_bool).unwrap_or(false),
                required: v.get("required").and_then(J::as_bool).unwrap_or(true),
            })
            .collect();
        svc.depends_on.sort_by(|a, b| a.service.cmp(&b.service));
    }
    if let Some(r) = g("deploy")
        .and_then(|d| d.get("replicas"))
        .and_then(J::as_u64)
        .or_else(|| g("scale").and_then(J::as_u64))
    {
        svc.replicas = u32::try_from(r).unwrap_or(u32::MAX);
    }
    if let Some(u) = g("deploy").and_then(|d| d.get("update_config")) {
        svc.update_config = Some(UpdateConfig {
            parallelism: u.get("parallelism").and_then(J::as_u64),
            delay: dur(u.get("delay")),
            failure_action: str_of(u.get("failure_action")),
            monitor: dur(u.get("monitor")),
            max_failure_ratio: u.get("max_failure_ratio").and_then(J::as_f64),
            order: str_of(u.get("order")),
        });
    }
    if let Some(J::Object(n)) = g("networks") {
        svc.networks = n.keys().cloned().collect();
        svc.networks.sort();
    }
    svc.davit = davit_service(name, side.and_then(|x| x.get("x-davit")), errs);
    svc
}

fn davit_err(errs: &mut Diagnostics, msg: String, hint: &str) {
    errs.push(Diagnostic::error("", 0, 0, msg).with_hint(hint));
}

fn davit_hooks(h: &J, errs: &mut Diagnostics) -> DavitHooks {
    let mut out = DavitHooks::default();
    let Some(o) = h.as_object() else {
        davit_err(
            errs,
            "x-davit.hooks must be a mapping".into(),
            "write `hooks: {pre-deploy: ./scripts/check.sh}`",
        );
        return out;
    };
    for (k, v) in o {
        let argv = match v {
            J::String(cmd) if !cmd.trim().is_empty() => {
                Some(vec!["sh".to_string(), "-c".to_string(), cmd.clone()])
            }
            J::Array(a) if !a.is_empty() && a.iter().all(J::is_string) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
            ),
            _ => None,
        };
        let Some(argv) = argv else {
            davit_err(
                errs,
                format!(
                    "x-davit.hooks.{k} must be a command: a non-empty string or list of strings"
                ),
                "e.g. `pre-deploy: ./scripts/check.sh` or `pre-deploy: [./check, --strict]`",
            );
            continue;
        };
        match k.as_str() {
            "pre-deploy" => out.pre_deploy = Some(argv),
            "post-deploy" => out.post_deploy = Some(argv),
            _ => davit_err(
                errs,
                format!("x-davit.hooks: unknown hook {k:?}"),
                "the hooks are `pre-deploy` and `post-deploy`",
            ),
        }
    }
    out
}

fn davit_service(name: &str, x: Option<&J>, errs: &mut Diagnostics) -> DavitService {
    let mut out = DavitService::default();
    let Some(x) = x else { return out };
    let Some(o) = x.as_object() else {
        davit_err(
            errs,
            format!("services.{name}.x-davit must be a mapping"),
            "write `x-davit: {proxy: {port: 8080}}`",
        );
        return out;
    };
    for k in o.keys() {
        if k != "proxy" && k != "strategy" {
            davit_err(
                errs,
                format!("services.{name}.x-davit: unknown key {k:?}"),
                "x-davit takes `proxy` and `strategy`",
            );
        }
    }
    if let Some(p) = o.get("proxy") {
        let port = p.get("port").and_then(num_u16);
        let publish = match p.get("publish") {
            None => Some(80),
            Some(v) => num_u16(v),
        };
        let health = match p.get("health") {
            None => Some("/".to_owned()),
            Some(J::String(h)) if h.starts_with('/') => Some(h.clone()),
            Some(_) => None,
        };
        if let Some(po) = p.as_object() {
            for k in po.keys() {
                if !matches!(k.as_str(), "port" | "health" | "publish") {
                    davit_err(
                        errs,
                        format!("services.{name}.x-davit.proxy: unknown key {k:?}"),
                        "proxy takes `port`, `health` and `publish`",
                    );
                }
            }
        }
        if port.is_none() {
            davit_err(
                errs,
                format!("services.{name}.x-davit.proxy.port must be a port number (1-65535)"),
                "set `port:` to the container port that receives traffic",
            );
        }
        if publish.is_none() {
            davit_err(
                errs,
                format!("services.{name}.x-davit.proxy.publish must be a port number (1-65535)"),
                "set `publish:` to the host port, or leave it out for 80",
            );
        }
        if health.is_none() {
            davit_err(
                errs,
                format!("services.{name}.x-davit.proxy.health must be a path starting with /"),
                "e.g. `health: /health`",
            );
        }
        if let (Some(port), Some(publish), Some(health)) = (port, publish, health) {
            out.proxy = Some(Proxy {
                port,
                health,
                publish,
            });
        }
    }
    out.strategy = if out.proxy.is_some() {
        Strategy::Rolling
    } else {
        Strategy::Recreate
    };
    if let Some(s) = o.get("strategy") {
        match s.as_str().and_then(Strategy::parse) {
            Some(st) => out.strategy = st,
            None => davit_err(
                errs,
                format!("services.{name}.x-davit.strategy: unknown strategy {s}"),
                "use recreate, rolling, blue-green or canary",
            ),
        }
    }
    out
}

fn num_u16(v: &J) -> Option<u16> {
    let n = match v {
        J::Number(n) => n.as_u64()?,
        J::String(s) => s.parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p > 0)
}

/// Orders services so that every service comes after its dependencies (ties by name). Cycles are
/// refused earlier, so every service is placed.
fn dependency_order(mut services: Vec<Service>) -> Vec<Service> {
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let names: std::collections::HashSet<String> =
        services.iter().map(|s| s.name.clone()).collect();
    let mut placed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out: Vec<Service> = Vec::with_capacity(services.len());
    while !services.is_empty() {
        let ready = |s: &Service| {
            s.depends_on
                .iter()
                .all(|d| placed.contains(&d.service) || !names.contains(&d.service))
        };
        let idx = services.iter().position(ready).unwrap_or(0);
        let s = services.remove(idx);
        placed.insert(s.name.clone());
        out.push(s);
    }
    out
}

/// Builds the typed project from the canonical document.
pub(crate) fn build(
    mut json: J,
    working_dir: PathBuf,
    interpolated: bool,
) -> Result<Project, Diagnostics> {
    let mut errs = Diagnostics::default();
    let env_files = json
        .as_object_mut()
        .and_then(|o| o.remove(crate::normalize::ENV_FILES_KEY))
        .unwrap_or(J::Null);
    let name = json
        .get("name")
        .and_then(J::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut services = Vec::new();
    if let Some(J::Object(sv)) = json.get("services") {
        for (k, v) in sv {
            services.push(service_from(k, v, env_files.get(k), &mut errs));
        }
    }
    let mut environments = BTreeMap::new();
    if let Some(x) = json.get("x-davit")
        && let Some(J::Object(envs)) = x.get("environments")
    {
        for (k, v) in envs {
            let hosts = strs(v.get("hosts"));
            let Some(hosts) = hosts.filter(|h| !h.is_empty()) else {
                davit_err(
                    &mut errs,
                    format!("x-davit.environments.{k}.hosts must be a non-empty list of host URLs"),
                    "e.g. `hosts: [ssh://root@10.0.0.1]`",
                );
                continue;
            };
            let variables = v
                .get("variables")
                .and_then(J::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| {
                            (
                                a.clone(),
                                b.as_str().map_or_else(|| b.to_string(), String::from),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            environments.insert(k.clone(), DavitEnvironment { hosts, variables });
        }
    }
    let hooks = json
        .get("x-davit")
        .and_then(|x| x.get("hooks"))
        .map(|h| davit_hooks(h, &mut errs))
        .unwrap_or_default();
    if errs.has_errors() {
        return Err(errs);
    }
    Ok(Project {
        name,
        working_dir,
        services: dependency_order(services),
        environments,
        hooks,
        json,
        interpolated,
        warnings: Vec::new(),
    })
}
