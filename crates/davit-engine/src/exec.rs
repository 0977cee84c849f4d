//! The real [`Executor`]: a rollout's steps done on hosts' engines, with traffic moved by the host's
//! davit-proxy through its admin API (reached from the host's own loopback over SSH).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use tokio::sync::mpsc;

use davit_proxy::api::{HealthSpec, RouteSpec, RouteStatus, TargetSpec, TargetState, TargetStatus};
use davit_proxy::client::{AdminClient, Connect};
use davit_rollout::{Event, Histogram, Metrics, Step, Strategy, Version};

use crate::driver::Executor;
use crate::hostops;
use crate::model::{ProjectSpec, ServiceSpec};
use crate::remote::{RemoteRef, Stream};

/// The proxy's admin port on every host's loopback.
pub const ADMIN_PORT: u16 = 19900;

/// How often a route change or a drain is re-checked at the proxy (one admin call over SSH).
const PROXY_POLL: Duration = Duration::from_millis(50);
/// Runs independent operations at once; the first error (in order) wins, after all finished.
async fn all<F: std::future::Future<Output = Result<(), String>>>(
    fs: impl IntoIterator<Item = F>,
) -> Result<(), String> {
    join_all(fs).await.into_iter().collect()
}

/// Opens admin API streams through a host (its own loopback).
#[derive(Clone)]
pub struct ViaHost(pub RemoteRef);

impl Connect for ViaHost {
    type Stream = Box<dyn Stream>;
    fn connect(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<Box<dyn Stream>>> + Send {
        let r = self.0.clone();
        async move { r.dial_tcp("127.0.0.1", ADMIN_PORT).await }
    }
}

/// The admin client of the proxy on `remote`.
pub fn admin(remote: RemoteRef) -> AdminClient<ViaHost> {
    AdminClient::new(ViaHost(remote))
}

/// The proxy route of a service.
pub fn route_name(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

/// One host's part in a service rollout.
pub struct HostPart {
    pub remote: RemoteRef,
    /// The containers serving now (the old version).
    pub old: Vec<String>,
    /// Other leftovers of this service (stopped containers of older releases), removed at the end.
    pub leftovers: Vec<String>,
    new: Mutex<Vec<String>>,
    baseline: Mutex<HashMap<String, (u64, u64)>>,
    /// Latency histograms of the targets at the last route change (canary only).
    latency: Mutex<HashMap<String, Histogram>>,
}

impl HostPart {
    pub fn new(remote: RemoteRef, old: Vec<String>, leftovers: Vec<String>) -> HostPart {
        HostPart {
            remote,
            old,
            leftovers,
            new: Mutex::new(Vec::new()),
            baseline: Mutex::new(HashMap::new()),
            latency: Mutex::new(HashMap::new()),
        }
    }
}

/// Executes the steps of one service's rollout.
pub struct ServiceExec {
    pub project: Arc<ProjectSpec>,
    pub svc: ServiceSpec,
    pub release: String,
    pub hosts: HashMap<String, HostPart>,
    /// How long a route change may take to become active (new targets healthy at the proxy).
    pub route_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServiceExec {
    fn part(&self, host: &str) -> Result<&HostPart, String> {
        self.hosts
            .get(host)
            .ok_or_else(|| format!("unknown host {host}"))
    }

    async fn targets(
        &self,
        part: &HostPart,
        names: &[String],
        weight: u32,
    ) -> Result<Vec<TargetSpec>, String> {
        let proxy = self
            .svc
            .proxy
            .as_ref()
            .ok_or("service is not behind the proxy")?;
        let docker = part.remote.docker();
        let seen = join_all(names.iter().map(|n| hostops::inspect(&docker, n))).await;
        let mut out = Vec::new();
        for (n, seen) in names.iter().zip(seen) {
            let ip = seen?
                .ip
                .ok_or_else(|| format!("{n} has no network address"))?;
            let addr: SocketAddr = format!("{ip}:{}", proxy.port)
                .parse()
                .map_err(|e| format!("{n}: bad address {ip}: {e}"))?;
            out.push(TargetSpec::new(n.clone(), addr).with_weight(weight));
        }
        Ok(out)
    }

    async fn route(&self, host: &str, weight: u8) -> Result<(), String> {
        let part = self.part(host)?;
        let proxy = self
            .svc
            .proxy
            .as_ref()
            .ok_or("service is not behind the proxy")?;
        let new = lock(&part.new).clone();
        let w = u32::from(weight);
        let none = Vec::new();
        let (old, new) = tokio::join!(
            self.targets(part, if weight < 100 { &part.old } else { &none }, 100 - w),
            self.targets(part, if weight > 0 { &new } else { &none }, w),
        );
        let mut targets = old?;
        targets.extend(new?);
        let listen: SocketAddr = format!("0.0.0.0:{}", proxy.publish)
            .parse()
            .map_err(|e| format!("bad publish port: {e}"))?;
        let spec = RouteSpec::new(listen, targets.clone())
            .with_health(HealthSpec {
                interval_ms: 500,
                ..HealthSpec::http(proxy.health.clone())
            })
            .with_drain_timeout_ms(30_000);
        let name = route_name(&self.project.name, &self.svc.name);
        let admin = admin(part.remote.clone());
        // The PUT answers with the route's status: often every target is already active.
        let mut status = Some(
            admin
                .put_route(&name, &spec)
                .await
                .map_err(|e| format!("proxy: {e}"))?,
        );
        // Wait until every target that should get traffic is active at the proxy.
        let deadline = tokio::time::Instant::now() + self.route_timeout;
        loop {
            let status = match status.take() {
                Some(s) => s,
                None => admin
                    .route(&name)
                    .await
                    .map_err(|e| format!("proxy: {e}"))?
                    .ok_or_else(|| format!("proxy lost route {name}"))?,
            };
            let pending: Vec<&TargetSpec> = targets
                .iter()
                .filter(|t| t.weight > 0)
                .filter(|t| {
                    status
                        .target(&t.effective_id())
                        .is_none_or(|s| s.state != TargetState::Active)
                })
                .collect();
            if pending.is_empty() {
                {
                    let mut b = lock(&part.baseline);
                    b.clear();
                    for t in &status.targets {
                        b.insert(t.id.clone(), (t.requests, t.responses_5xx));
                    }
                }
                if matches!(self.svc.strategy, Strategy::Canary(_)) {
                    *lock(&part.latency) = self.latencies(&admin, &name).await?;
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let why: Vec<String> = pending
                    .iter()
                    .map(|t| {
                        let last = status
                            .target(&t.effective_id())
                            .and_then(|s| s.last_check.clone())
                            .unwrap_or_else(|| "no check yet".into());
                        format!("{} ({last})", t.effective_id())
                    })
                    .collect();
                return Err(format!(
                    "proxy did not activate {} within {:?}",
                    why.join(", "),
                    self.route_timeout
                ));
            }
            tokio::time::sleep(PROXY_POLL).await;
        }
    }

    async fn drain_old(&self, host: &str) -> Result<(), String> {
        let part = self.part(host)?;
        if self.svc.proxy.is_none() {
            return Ok(());
        }
        // Old targets count until the proxy reports them drained.
        self.wait_until(part, &part.old, |_| true).await
    }

    async fn sample(&self, host: &str) -> Result<Metrics, String> {
        let part = self.part(host)?;
        let name = route_name(&self.project.name, &self.svc.name);
        let status = admin(part.remote.clone())
            .route(&name)
            .await
            .map_err(|e| format!("proxy: {e}"))?
            .ok_or_else(|| format!("proxy has no route {name}"))?;
        let new = lock(&part.new).clone();
        let base = lock(&part.baseline).clone();
        let mut m = Metrics::default();
        for t in status.targets.iter().filter(|t| new.contains(&t.id)) {
            let (r0, e0) = base.get(&t.id).copied().unwrap_or_default();
            m.requests += t.requests.saturating_sub(r0);
            m.errors += t.responses_5xx.saturating_sub(e0);
        }
        // p99 of the new targets' requests since the route change, from the proxy's histograms.
        let now = self.latencies(&admin(part.remote.clone()), &name).await?;
        let before = lock(&part.latency).clone();
        let mut since = Histogram::default();
        for (id, h) in now.iter().filter(|(id, _)| new.contains(id)) {
            since.merge(&h.since(before.get(id).unwrap_or(&Histogram::default())));
        }
        m.p99 = since.quantile(0.99).unwrap_or_default();
        Ok(m)
    }

    /// The latency histogram of every target of route `name`, from the proxy's metrics.
    async fn latencies(
        &self,
        admin: &AdminClient<ViaHost>,
        name: &str,
    ) -> Result<HashMap<String, Histogram>, String> {
        let text = admin
            .metrics()
            .await
            .map_err(|e| format!("proxy metrics: {e}"))?;
        Ok(crate::metrics::histograms(&text, name))
    }

    async fn start_new(&self, host: &str) -> Result<(), String> {
        let part = self.part(host)?;
        let docker = part.remote.docker();
        // The image, networks and volumes do not depend on each other: one round trip for all.
        let project = &self.project.name;
        let nets = self.svc.network_names();
        let (pulled, nets, vols) = tokio::join!(
            hostops::timed(host, "start-new: image present", async {
                hostops::pull(&docker, self.svc.image_ref()).await
            }),
            join_all(
                nets.iter()
                    .map(|n| hostops::ensure_network(&docker, project, n))
            ),
            join_all(
                self.svc
                    .volumes
                    .iter()
                    .filter(|m| m.kind == "volume")
                    .filter_map(|m| m.source.as_ref())
                    .map(|src| hostops::ensure_volume(&docker, project, src))
            ),
        );
        pulled?;
        nets.into_iter()
            .chain(vols)
            .collect::<Result<Vec<()>, String>>()?;
        for n in 1..=self.svc.replicas.max(1) {
            let name = hostops::timed(
                host,
                "start-new: create and start",
                hostops::create_container(&docker, &self.project, &self.svc, &self.release, n),
            )
            .await;
            match name {
                Ok(name) => lock(&part.new).push(name),
                Err(e) => {
                    // Record the would-be name so StopNew removes a half-made container.
                    lock(&part.new).push(format!(
                        "{}-{}-{}-{n}",
                        self.project.name,
                        self.svc.name,
                        hostops::short(&self.release)
                    ));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn stop_new(&self, host: &str) -> Result<(), String> {
        let part = self.part(host)?;
        let docker = part.remote.docker();
        if self.svc.proxy.is_some() && part.old.is_empty() {
            let name = route_name(&self.project.name, &self.svc.name);
            admin(part.remote.clone())
                .delete_route(&name)
                .await
                .map_err(|e| format!("proxy: {e}"))?;
        }
        let new = lock(&part.new).clone();
        if self.svc.proxy.is_some() && !part.old.is_empty() && !new.is_empty() {
            // Switched back: requests still in flight on the new containers finish first. With none
            // made (start-new failed before creating any), the host is untouched: nothing to ask it,
            // so a host that became unreachable meanwhile still counts as restored.
            self.wait_drained(part, &new).await?;
        }
        all(new.iter().map(|n| hostops::remove(&docker, n))).await
    }

    /// Waits until none of `names` has a request in flight at the proxy (they left the route, or
    /// are drained), within the drain timeout.
    async fn wait_drained(&self, part: &HostPart, names: &[String]) -> Result<(), String> {
        self.wait_until(part, names, |t| {
            t.state == TargetState::Draining || t.in_flight > 0
        })
        .await
    }

    /// Polls the proxy until no target of `names` is `busy` short of drained, within the drain
    /// timeout; the error names the busy ones.
    async fn wait_until(
        &self,
        part: &HostPart,
        names: &[String],
        busy: impl Fn(&TargetStatus) -> bool,
    ) -> Result<(), String> {
        let name = route_name(&self.project.name, &self.svc.name);
        let admin = admin(part.remote.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            let status: Option<RouteStatus> = admin
                .route(&name)
                .await
                .map_err(|e| format!("proxy: {e}"))?;
            let busy: Vec<String> = status
                .map(|s| {
                    s.targets
                        .iter()
                        .filter(|t| names.contains(&t.id) && t.state != TargetState::Drained)
                        .filter(|t| busy(t))
                        .map(|t| format!("{} ({} in flight)", t.id, t.in_flight))
                        .collect()
                })
                .unwrap_or_default();
            if busy.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("not drained: {}", busy.join(", ")));
            }
            tokio::time::sleep(PROXY_POLL).await;
        }
    }
}

#[async_trait]
impl Executor for ServiceExec {
    async fn step(&self, host: &str, step: Step) -> Result<Option<Metrics>, String> {
        let part = self.part(host)?;
        let docker = part.remote.docker();
        let grace = self.svc.stop_grace_period;
        let what = format!("step {step}");
        hostops::timed(host, &what, async {
            // The containers of one step are independent: handled at once, not one after another.
            match step {
                Step::StartNew => self.start_new(host).await?,
                Step::Route { weight } => self.route(host, weight).await?,
                Step::DrainOld => self.drain_old(host).await?,
                Step::StopOld => {
                    all(part.old.iter().map(|n| hostops::stop(&docker, n, grace))).await?;
                }
                Step::StartOld => {
                    all(part.old.iter().map(|n| hostops::start(&docker, n))).await?;
                }
                Step::StopNew => self.stop_new(host).await?,
                Step::RemoveOld => {
                    all(part
                        .old
                        .iter()
                        .chain(&part.leftovers)
                        .map(|n| hostops::remove(&docker, n)))
                    .await?;
                }
                Step::Sample => return Ok(Some(self.sample(host).await?)),
            }
            Ok(None)
        })
        .await
    }

    async fn watch(&self, host: &str, version: Version, events: mpsc::Sender<Event>) {
        let Ok(part) = self.part(host) else { return };
        let names = match version {
            Version::Old => part.old.clone(),
            Version::New => lock(&part.new).clone(),
        };
        let (remote, svc) = (part.remote.clone(), self.svc.clone());
        crate::gate::watch(remote, svc, names, host.to_string(), version, events).await;
    }
}
