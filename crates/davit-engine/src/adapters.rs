//! The engine's ports plugged into the project's other libraries: hosts over `davit-ssh`, image pins
//! from `davit-registry`, and projects from `davit-compose`'s model.

use async_trait::async_trait;

use crate::Error;
use crate::deploy::Resolver;
use crate::model::{MountSpec, PortSpec, ProjectSpec, ProxySpec, ServiceSpec, default_strategy};
use crate::remote::{Remote, Stream};

/// A host reached through `davit-ssh` (`local`, `unix://…`, `ssh://…`).
pub struct SshRemote {
    name: String,
    host: davit_ssh::Host,
}

impl SshRemote {
    pub fn new(host: davit_ssh::Host) -> SshRemote {
        SshRemote {
            name: host.url().to_string(),
            host,
        }
    }

    /// Connects to `url`.
    pub async fn connect(
        url: &davit_ssh::HostUrl,
        opts: &davit_ssh::SshOptions,
    ) -> Result<SshRemote, Error> {
        let host = davit_ssh::Host::connect(url, opts)
            .await
            .map_err(|e| Error::Host {
                host: url.to_string(),
                message: e.to_string(),
            })?;
        Ok(SshRemote::new(host))
    }
}

#[async_trait]
impl Remote for SshRemote {
    fn name(&self) -> &str {
        &self.name
    }
    fn docker(&self) -> bollard::Docker {
        self.host.docker()
    }
    async fn dial_tcp(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.host.dial_tcp(host, port).await?))
    }
}

/// Pins images with `davit-registry` (credentials and insecure registries from its settings).
pub struct RegistryResolver {
    pub settings: davit_registry::Settings,
}

#[async_trait]
impl Resolver for RegistryResolver {
    async fn pin(&self, image: &str) -> Result<String, String> {
        let r = davit_registry::ImageRef::parse(image).map_err(|e| e.to_string())?;
        let digest = davit_registry::Registry::resolve(image, &self.settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("{}/{}@{digest}", r.registry, r.repository))
    }
}

/// The engine's project from a loaded compose project. Bad input (a service without image, a
/// published port range) is an [`Error::Input`].
pub fn from_compose(p: &davit_compose::Project) -> Result<ProjectSpec, Error> {
    // Services something waits on with `service_completed_successfully` are jobs (migrations).
    let jobs: std::collections::BTreeSet<&str> = p
        .services
        .iter()
        .flat_map(|s| &s.depends_on)
        .filter(|d| d.condition == davit_compose::DependencyCondition::CompletedSuccessfully)
        .map(|d| d.service.as_str())
        .collect();
    let mut services = Vec::new();
    for s in &p.services {
        let image = s.image.clone().ok_or_else(|| {
            Error::Input(format!(
                "service {}: no image (davit deploys images from a registry: add `image:` and push it with `davit push`)",
                s.name
            ))
        })?;
        let mut spec = ServiceSpec::new(s.name.clone(), image);
        spec.command = s.command.clone();
        spec.entrypoint = s.entrypoint.clone();
        spec.environment = s
            .environment
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        spec.labels = s.labels.clone();
        for port in &s.ports {
            let published = match &port.published {
                None => None,
                Some(x) => Some(x.parse::<u16>().map_err(|_| {
                    Error::Input(format!(
                        "service {}: published port {x:?}: davit publishes single ports only",
                        s.name
                    ))
                })?),
            };
            spec.ports.push(PortSpec {
                target: port.target,
                published,
                host_ip: port.host_ip.clone(),
                protocol: port.protocol.clone(),
            });
        }
        spec.volumes = s
            .volumes
            .iter()
            .filter(|v| v.kind == "volume" || v.kind == "bind")
            .map(|v| MountSpec {
                kind: v.kind.clone(),
                source: v.source.clone(),
                target: v.target.clone(),
                read_only: v.read_only,
            })
            .collect();
        spec.networks = s.networks.clone();
        spec.replicas = s.replicas.max(1);
        spec.depends_on = s.depends_on.iter().map(|d| d.service.clone()).collect();
        spec.proxy = s.davit.proxy.as_ref().map(|x| ProxySpec {
            port: x.port,
            health: x.health.clone(),
            publish: x.publish,
        });
        spec.strategy = match s.davit.strategy {
            davit_compose::Strategy::Rolling => {
                davit_rollout::Strategy::Rolling { max_parallel: 1 }
            }
            davit_compose::Strategy::BlueGreen => davit_rollout::Strategy::by_name("blue-green")
                .unwrap_or(davit_rollout::Strategy::Rolling { max_parallel: 1 }),
            davit_compose::Strategy::Canary => davit_rollout::Strategy::by_name("canary")
                .unwrap_or(davit_rollout::Strategy::Rolling { max_parallel: 1 }),
            davit_compose::Strategy::Recreate => {
                davit_rollout::Strategy::Recreate { max_parallel: 1 }
            }
            _ => default_strategy(spec.proxy.is_some()),
        };
        spec.stop_grace_period = s.stop_grace_period;
        spec.restart = s.restart.clone();
        spec.user = s.user.clone();
        spec.working_dir = s.working_dir.clone();
        if let Some(uc) = &s.update_config {
            // `parallelism` is how many hosts roll at once; `monitor` how long a new container
            // must stay healthy. (0 means "all at once" in Compose.)
            if let Some(n) = uc.parallelism {
                let n = if n == 0 { usize::MAX } else { n as usize };
                spec.strategy = match spec.strategy {
                    davit_rollout::Strategy::Rolling { .. } => {
                        davit_rollout::Strategy::Rolling { max_parallel: n }
                    }
                    davit_rollout::Strategy::Recreate { .. } => {
                        davit_rollout::Strategy::Recreate { max_parallel: n }
                    }
                    other => other,
                };
            }
            spec.min_healthy_time = uc.monitor;
        }
        if jobs.contains(s.name.as_str()) {
            if spec.proxy.is_some() {
                return Err(Error::Input(format!(
                    "service {}: a service others wait on with `service_completed_successfully` runs once to completion (a job, e.g. a migration); it cannot be behind the proxy: remove its `x-davit.proxy`",
                    s.name
                )));
            }
            spec.job = true;
        }
        spec.healthcheck = s.healthcheck.as_ref().and_then(|h| {
            if h.disable {
                Some(vec!["NONE".to_string()])
            } else if h.test.is_empty() {
                None
            } else {
                Some(h.test.clone())
            }
        });
        spec.healthcheck_timing = s
            .healthcheck
            .as_ref()
            .map(|h| crate::model::HealthTiming {
                interval: h.interval,
                timeout: h.timeout,
                retries: h.retries.map(|r| u32::try_from(r).unwrap_or(u32::MAX)),
                start_period: h.start_period,
            })
            .filter(|t| !t.is_empty());
        services.push(spec);
    }
    Ok(ProjectSpec {
        name: p.name.clone(),
        working_dir: p.working_dir.display().to_string(),
        services,
    })
}
