//! The thin async runners: one probe ([`Prober::check`]) and the loop that feeds the verdict
//! machine ([`wait_healthy`]). All the deciding is in [`Machine`].

use std::sync::Arc;
use std::time::Instant;

use bollard::Docker;
use bollard::models::{ExecConfig, HealthStatusEnum};
use futures_util::StreamExt;

use crate::Error;
use crate::dial::{Dial, DirectDial};
use crate::event::Event;
use crate::machine::{Action, Machine, Outcome, Policy, Verdict};
use crate::probe::Probe;

/// Runs probes: network probes through its dialer, container probes through its Docker engine.
#[derive(Clone)]
pub struct Prober {
    dialer: Arc<dyn Dial>,
    docker: Option<Docker>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("docker", &self.docker.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new(Arc::new(DirectDial))
    }
}

impl Prober {
    /// A prober dialing through `dialer`, without a Docker engine.
    pub fn new(dialer: Arc<dyn Dial>) -> Self {
        Prober {
            dialer,
            docker: None,
        }
    }

    /// The same, with `docker` for container and exec probes.
    pub fn with_docker(mut self, docker: Docker) -> Self {
        self.docker = Some(docker);
        self
    }

    /// Checks what `probe` needs before any probing (a bad TLS root, a missing engine).
    pub fn prepare(&self, probe: &Probe) -> Result<Prepared, Error> {
        let tls = match probe {
            Probe::Http(h) if h.is_https() => Some(crate::http::tls_config(h)?),
            Probe::Exec { .. } | Probe::Container { .. } if self.docker.is_none() => {
                return Err(Error::NoDocker {
                    target: probe.to_string(),
                });
            }
            _ => None,
        };
        Ok(Prepared {
            probe: probe.clone(),
            tls,
        })
    }

    /// Runs `probe` once, without a timeout of its own (the caller bounds it).
    pub async fn check(&self, probe: &Prepared) -> Outcome {
        match &probe.probe {
            Probe::Http(h) => crate::http::check(self.dialer.as_ref(), h, probe.tls.as_ref()).await,
            Probe::Tcp { host, port } => match self.dialer.dial(host, *port).await {
                Ok(_) => Outcome::Success(format!("connected to {host}:{port}")),
                Err(e) => Outcome::Failure(format!("connect to {host}:{port}: {e}")),
            },
            Probe::Container { container } => match &self.docker {
                Some(d) => container_health(d, container).await,
                None => Outcome::Failure("no Docker engine".into()),
            },
            Probe::Exec { container, command } => match &self.docker {
                Some(d) => exec(d, container, command).await,
                None => Outcome::Failure("no Docker engine".into()),
            },
        }
    }
}

/// A probe ready to run: its TLS configuration is built once, not per attempt.
#[derive(Debug, Clone)]
pub struct Prepared {
    probe: Probe,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Prepared {
    pub fn probe(&self) -> &Probe {
        &self.probe
    }
}

async fn container_health(docker: &Docker, container: &str) -> Outcome {
    let info = match docker.inspect_container(container, None).await {
        Ok(i) => i,
        Err(e) => return Outcome::Failure(format!("inspecting container {container}: {e}")),
    };
    let state = info.state.unwrap_or_default();
    if state.running != Some(true) {
        let status = state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        return Outcome::Failure(format!("container {container} is not running ({status})"));
    }
    let health = state.health.unwrap_or_default();
    let last_log = || {
        health
            .log
            .as_ref()
            .and_then(|l| l.last())
            .and_then(|l| l.output.as_deref())
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
    };
    match health.status {
        Some(HealthStatusEnum::HEALTHY) => Outcome::Success("docker healthcheck: healthy".into()),
        Some(HealthStatusEnum::UNHEALTHY) => Outcome::Failure(match last_log() {
            Some(out) => format!("docker healthcheck: unhealthy: {out}"),
            None => "docker healthcheck: unhealthy".into(),
        }),
        Some(HealthStatusEnum::STARTING) => Outcome::Pending("docker healthcheck: starting".into()),
        _ => Outcome::Success("running (the container has no healthcheck)".into()),
    }
}

async fn exec(docker: &Docker, container: &str, command: &[String]) -> Outcome {
    let config = ExecConfig {
        cmd: Some(command.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = match docker.create_exec(container, config).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("exec in {container}: {e}")),
    };
    let mut output = String::new();
    match docker.start_exec(&created.id, None).await {
        Ok(bollard::exec::StartExecResults::Attached {
            output: mut stream, ..
        }) => {
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(log) if output.len() < 4096 => {
                        output.push_str(&String::from_utf8_lossy(&log.into_bytes()))
                    }
                    Ok(_) => {}
                    Err(e) => return Outcome::Failure(format!("exec in {container}: {e}")),
                }
            }
        }
        Ok(bollard::exec::StartExecResults::Detached) => {}
        Err(e) => return Outcome::Failure(format!("exec in {container}: {e}")),
    }
    let inspected = match docker.inspect_exec(&created.id).await {
        Ok(i) => i,
        Err(e) => return Outcome::Failure(format!("exec in {container}: {e}")),
    };
    let output = output.trim();
    match inspected.exit_code {
        Some(0) => Outcome::Success("exit 0".into()),
        Some(code) if output.is_empty() => Outcome::Failure(format!("exit {code}")),
        Some(code) => Outcome::Failure(format!("exit {code}: {output}")),
        None => Outcome::Failure("the exec did not report an exit code".into()),
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Probes until the machine reaches a verdict, emitting every attempt, result and the verdict.
/// Never returns later than the policy's deadline (plus the time to notice it). Uses tokio's clock,
/// so it follows a paused test clock.
pub async fn wait_healthy(
    prober: &Prober,
    probe: &Prepared,
    policy: &Policy,
    mut on_event: impl FnMut(Event) + Send,
) -> Verdict {
    let mut machine = Machine::new(policy.clone(), now());
    let start = machine.start();
    let target = probe.probe.to_string();
    loop {
        // The same instant for the machine and the attempt's event, so events show exactly the
        // spacing the machine chose.
        let polled = now();
        match machine.poll(polled) {
            Action::Probe { attempt, timeout } => {
                let started = polled;
                on_event(Event::Attempt {
                    attempt,
                    at_ms: crate::event::ms(started - start),
                    target: target.clone(),
                });
                // The probe races the moment the target becomes healthy (min healthy time running
                // out while this probe is in flight): the verdict does not wait for the probe.
                let healthy_at = machine.healthy_at().map(tokio::time::Instant::from_std);
                let checked = tokio::time::timeout(timeout, prober.check(probe));
                let outcome = tokio::select! {
                    result = checked => match result {
                        Ok(o) => o,
                        Err(_) => Outcome::Failure(format!("timed out after {}", crate::format_duration(timeout))),
                    },
                    () = sleep_until_some(healthy_at) => continue,
                };
                let finished = now();
                on_event(Event::result(
                    attempt,
                    finished - start,
                    finished - started,
                    &outcome,
                ));
                machine.record(attempt, finished, outcome);
            }
            Action::Wait { until } => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await
            }
            Action::Verdict(v) => {
                let at = machine.verdict().map_or(now(), |(_, at)| at);
                on_event(Event::verdict(at - start, &v));
                return v;
            }
        }
    }
}
