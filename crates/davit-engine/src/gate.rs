//! The health gate of a rollout: whether a host's new (or, on rollback, restarted old) containers
//! are healthy, judged by `davit-health`'s probes and policy exactly as `davit probe` would judge
//! them, from the host's side of the SSH connection (the container's address, dialled by the host).
//!
//! What is probed and the policy come from [`ServiceHealth::from_compose`]: the service's
//! `x-davit.proxy.health` path on the container's address when it is behind the proxy, else the
//! container's Docker health status; thresholds, timeout and start period from its compose
//! `healthcheck:` (Docker's defaults for what it leaves out, Kubernetes' when there is none).
//!
//! The rollout machine keeps what it decides: `min_healthy_time` and the healthy deadline are its
//! gates ([`davit_rollout::Gates`]), so the health policy here has neither. Two more rules:
//!
//! - **Pace.** Waiting a whole probe period (10 s by Kubernetes' default, 30 s by Docker's) for a
//!   container that is already up would make every batch that slow, so the gate probes every
//!   [`START_EVERY`] until the container first passes, then every [`WATCH_EVERY`] at most, and
//!   scales the failure threshold so that a container is never judged unhealthy sooner than the
//!   policy would (`failure_threshold × interval` of failures after the start period).
//! - **Docker's own verdict is final.** A container that exited, or whose Docker healthcheck says
//!   `unhealthy` (Docker applied its retries already), is unhealthy at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use davit_health::{
    Action, AsyncReadWrite, Dial, Healthcheck, HttpCheck, Machine, Monitor, Outcome, Policy, Probe,
    Prober, ServiceHealth, Status, Verdict,
};
use tokio::sync::mpsc;

use crate::hostops;
use crate::model::ServiceSpec;
use crate::remote::RemoteRef;

/// How often a container is probed until it first passes.
pub const START_EVERY: Duration = Duration::from_millis(200);
/// How often, at most, a container that passed is probed while the rollout watches it.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Dials from the host's side (SSH `direct-tcpip`), so container addresses work unpublished.
pub struct HostDial(pub RemoteRef);

#[async_trait::async_trait]
impl Dial for HostDial {
    async fn dial(&self, host: &str, port: u16) -> std::io::Result<Box<dyn AsyncReadWrite>> {
        let s = self.0.dial_tcp(host, port).await?;
        Ok(Box::new(s))
    }
}

/// The compose healthcheck of `svc`, as `davit-health` takes it.
pub fn healthcheck(svc: &ServiceSpec) -> Option<Healthcheck> {
    let timing = svc.healthcheck_timing.clone().unwrap_or_default();
    if svc.healthcheck.is_none() && timing.is_empty() {
        return None;
    }
    let test = svc.healthcheck.clone().unwrap_or_default();
    Some(Healthcheck {
        disable: test.first().is_some_and(|t| t == "NONE"),
        test,
        interval: timing.interval,
        timeout: timing.timeout,
        retries: timing.retries,
        start_period: timing.start_period,
    })
}

/// What tells that `container` (at `ip` on the host's network) of `svc` is healthy, as `davit probe`
/// would check it; a container with neither a proxy health path nor a compose healthcheck is
/// watched through its Docker status (running, and its image's healthcheck if it has one).
pub fn service_health(svc: &ServiceSpec, container: &str, ip: Option<&str>) -> ServiceHealth {
    let hc = healthcheck(svc);
    let http = match (&svc.proxy, ip) {
        (Some(p), Some(ip)) => Some(HttpCheck {
            host: ip.to_string(),
            port: p.port,
            path: p.health.clone(),
        }),
        _ => None,
    };
    ServiceHealth::from_compose(container, hc.as_ref(), http.as_ref()).unwrap_or_else(|| {
        ServiceHealth {
            probe: Probe::Container {
                container: container.to_string(),
            },
            policy: Policy {
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
                failure_threshold: 1,
                ..Policy::default()
            },
        }
    })
}

/// `policy` probed every `every` at most, judging failures over the same time as the policy
/// (its failure threshold scaled by `interval / every`), without min healthy time or deadline
/// (the rollout machine's gates).
pub fn paced(policy: &Policy, every: Duration) -> Policy {
    let mut p = Policy {
        min_healthy_time: Duration::ZERO,
        deadline: None,
        ..policy.clone()
    };
    if p.interval > every && !every.is_zero() {
        let ratio = p.interval.as_secs_f64() / every.as_secs_f64();
        let scaled = (f64::from(p.failure_threshold.max(1)) * ratio).ceil();
        p.failure_threshold = if scaled >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            scaled as u32
        };
        p.interval = every;
    }
    p
}

enum Phase {
    /// Not yet passed: the verdict machine.
    Starting(Machine),
    /// Passed: readiness, until it flips to unhealthy.
    Passing(Monitor),
}

/// One watched container and how it is probed.
struct Target {
    name: String,
    probe: Probe,
    /// The address the probe dials (the container's, as Docker last gave it).
    ip: Option<String>,
    /// What Docker last saw of the container.
    seen: Option<hostops::Seen>,
}

struct Watched {
    target: Target,
    watch_policy: Policy,
    phase: Phase,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Docker's verdict on what it sees of container `name`: `Err` when it is final (exited, or its
/// Docker healthcheck failed).
fn verdict(name: &str, seen: &hostops::Seen) -> Result<(), String> {
    if !seen.running {
        let exit = seen.exit.as_deref().unwrap_or("is not running");
        return Err(match seen.restarts {
            0 => format!("{name} {exit}"),
            n => format!("{name} {exit} (Docker restarted it {})", times(n)),
        });
    }
    if seen.health.as_deref() == Some("unhealthy") {
        return Err(format!("{name}: its Docker healthcheck fails"));
    }
    Ok(())
}

/// Docker's view first: `Err` when its verdict is final, else what Docker sees of the container
/// (`None` when the engine did not answer: the probe decides then).
async fn docker_verdict(
    docker: &bollard::Docker,
    name: &str,
) -> Result<Option<hostops::Seen>, String> {
    match hostops::inspect(docker, name).await {
        Ok(seen) => verdict(name, &seen).map(|()| Some(seen)),
        Err(_) => Ok(None),
    }
}

fn times(n: i64) -> String {
    if n == 1 {
        "once".into()
    } else {
        format!("{n} times")
    }
}

/// What Docker last saw of a container that failed its probes, for the reason given.
fn docker_saw(seen: Option<&hostops::Seen>) -> String {
    match seen {
        None => String::new(),
        Some(s) => format!(
            " (Docker sees it running{}{})",
            s.ip.as_deref()
                .map(|ip| format!(" at {ip}"))
                .unwrap_or_default(),
            match s.restarts {
                0 => String::new(),
                n => format!(", restarted {}", times(n)),
            }
        ),
    }
}

/// One probe of one container, bounded by `timeout`; `Err` when Docker's verdict is final. A
/// container that Docker restarted may have a new address: the probe follows it.
async fn probe_once(
    docker: &bollard::Docker,
    prober: &Prober,
    svc: &ServiceSpec,
    w: &mut Target,
    timeout: Duration,
) -> Result<Outcome, String> {
    let name = w.name.as_str();
    if !matches!(w.probe, Probe::Container { .. })
        && let Some(seen) = docker_verdict(docker, name).await?
    {
        if seen.ip.is_some() && seen.ip != w.ip {
            w.probe = service_health(svc, name, seen.ip.as_deref()).probe;
            w.ip = seen.ip.clone();
        }
        w.seen = Some(seen);
    }
    let probe = &w.probe;
    // Checked when the watch started: preparing again only clones the probe (no TLS here).
    let prepared = prober.prepare(probe).map_err(|e| format!("{name}: {e}"))?;
    Ok(
        match tokio::time::timeout(timeout, prober.check(&prepared)).await {
            Ok(Outcome::Failure(d)) => Outcome::Failure(format!("{name}: {d}")),
            Ok(o) => o,
            Err(_) => Outcome::Failure(format!(
                "{name}: {probe} timed out after {}",
                davit_health::format_duration(timeout)
            )),
        },
    )
}

/// Watches `names` on `remote` and reports [`davit_rollout::Event::Healthy`] once every one passed,
/// then [`davit_rollout::Event::Unhealthy`] (and returns) when one fails; runs until aborted.
pub async fn watch(
    remote: RemoteRef,
    svc: ServiceSpec,
    names: Vec<String>,
    host: String,
    version: davit_rollout::Version,
    events: mpsc::Sender<davit_rollout::Event>,
) {
    let unhealthy = |reason: String| davit_rollout::Event::Unhealthy {
        host: host.clone(),
        version,
        reason,
    };
    if names.is_empty() {
        let _ = events.send(unhealthy("no containers".into())).await;
        return;
    }
    let docker = remote.docker();
    let prober = Prober::new(Arc::new(HostDial(remote.clone()))).with_docker(docker.clone());
    // Each container's address, once it is known (it is as soon as the container started).
    let mut watched = Vec::new();
    for name in &names {
        let seen = loop {
            match hostops::inspect(&docker, name).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(START_EVERY).await,
            }
        };
        if let Err(why) = verdict(name, &seen) {
            let _ = events.send(unhealthy(why)).await;
            return;
        }
        let health = service_health(&svc, name, seen.ip.as_deref());
        if let Err(e) = prober.prepare(&health.probe) {
            let _ = events.send(unhealthy(format!("{name}: {e}"))).await;
            return;
        }
        watched.push(Watched {
            target: Target {
                name: name.clone(),
                probe: health.probe.clone(),
                ip: seen.ip.clone(),
                seen: Some(seen),
            },
            watch_policy: paced(&health.policy, WATCH_EVERY),
            phase: Phase::Starting(Machine::new(paced(&health.policy, START_EVERY), now())),
        });
    }
    let mut reported = false;
    loop {
        let mut wake = now() + WATCH_EVERY;
        for w in &mut watched {
            match &mut w.phase {
                Phase::Starting(m) => match m.poll(now()) {
                    Action::Probe { attempt, timeout } => {
                        match probe_once(&docker, &prober, &svc, &mut w.target, timeout).await {
                            Ok(outcome) => m.record(attempt, now(), outcome),
                            Err(why) => {
                                let _ = events.send(unhealthy(why)).await;
                                return;
                            }
                        }
                        wake = now();
                    }
                    Action::Wait { until } => wake = wake.min(until),
                    Action::Verdict(Verdict::Healthy) => {
                        w.phase = Phase::Passing(Monitor::new(w.watch_policy.clone(), now()));
                        wake = now();
                    }
                    Action::Verdict(Verdict::Unhealthy { reason }) => {
                        let saw = docker_saw(w.target.seen.as_ref());
                        let _ = events
                            .send(unhealthy(format!("{}: {reason}{saw}", w.target.name)))
                            .await;
                        return;
                    }
                },
                Phase::Passing(m) => match m.poll(now()) {
                    davit_health::Step::Probe { attempt, timeout } => {
                        match probe_once(&docker, &prober, &svc, &mut w.target, timeout).await {
                            Ok(outcome) => {
                                if m.record(attempt, now(), outcome) == Some(Status::Unhealthy) {
                                    let saw = docker_saw(w.target.seen.as_ref());
                                    let last = format!("{}{saw}", m.last().unwrap_or("failing"));
                                    let _ = events.send(unhealthy(last)).await;
                                    return;
                                }
                            }
                            Err(why) => {
                                let _ = events.send(unhealthy(why)).await;
                                return;
                            }
                        }
                        wake = now();
                    }
                    davit_health::Step::Wait { until } => wake = wake.min(until),
                },
            }
        }
        if !reported && watched.iter().all(|w| matches!(w.phase, Phase::Passing(_))) {
            reported = true;
            let ev = davit_rollout::Event::Healthy {
                host: host.clone(),
                version,
            };
            if events.send(ev).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}
