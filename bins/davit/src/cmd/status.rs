//! `davit status`: per host and service, the release, the image digest, the containers (state,
//! health, uptime, restarts), and the host's CPU, memory and disk. A table for people, `--json` for
//! machines, `--watch` to redraw every `--interval` until interrupted.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use davit_engine::RemoteRef;
use davit_engine::adapters::SshRemote;
use davit_engine::status::HostStatus;
use davit_ops::metrics::{self, HostMetrics, human_bytes, human_duration};

use super::deploy::{ProjectArgs, runtime};
use super::hosts::parse_duration;
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Only these services (repeatable; default: all).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Print `{"project":…,"hosts":[…]}` (with --watch, one such line per refresh).
    #[arg(long)]
    pub json: bool,
    /// Refresh until interrupted (Ctrl-C): the table is redrawn in place on a terminal; elsewhere
    /// each refresh is printed after the previous one.
    #[arg(long)]
    pub watch: bool,
    /// Time between refreshes with --watch (e.g. 500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub interval: String,
}

/// One host in `davit status`.
#[derive(Debug)]
struct HostView {
    status: HostStatus,
    /// CPU, memory and disk (absent when the host could not be read).
    resources: Option<HostMetrics>,
}

impl HostView {
    /// The host's entry in `--json`: the engine's status plus `resources`.
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.status).unwrap_or_default();
        if let (Some(m), Some(obj)) = (&self.resources, v.as_object_mut()) {
            obj.insert(
                "resources".into(),
                serde_json::to_value(m).unwrap_or_default(),
            );
        }
        v
    }
}

/// A host and its connection (or why there is none).
struct Conn {
    url: String,
    host: Result<(davit_ssh::Host, RemoteRef), String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interval = parse_duration(&args.interval)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Usage(format!(
                "--interval {}: not a duration (e.g. 500ms, 2s, 1m)",
                args.interval
            ))
        })?;
    let ready = super::preflight::ready(&args.project, &args.services)?;
    let opts = args.project.ssh.options()?;
    let rt = runtime()?;
    rt.block_on(async {
        let conns: Vec<Conn> = futures_util::future::join_all(ready.urls.iter().map(|u| async {
            Conn {
                url: u.to_string(),
                host: davit_ssh::Host::connect(u, &opts)
                    .await
                    .map(|h| {
                        let r: RemoteRef = Arc::new(SshRemote::new(h.clone()));
                        (h, r)
                    })
                    .map_err(|e| super::secrets::chain(&e)),
            }
        }))
        .await;
        let tty = std::io::stdout().is_terminal();
        loop {
            let views = frame(&ready.name, &conns, &args.services).await;
            let ok = views.iter().all(|v| v.status.ok);
            let mut out = if args.json {
                let mut doc = serde_json::json!({
                    "project": ready.name,
                    "time": davit_engine::release::rfc3339(davit_engine::release::unix_now()),
                    "hosts": views.iter().map(HostView::json).collect::<Vec<_>>(),
                });
                ready.redactor.redact_json(&mut doc);
                format!("{doc}\n")
            } else {
                ready
                    .redactor
                    .redact(&table(&ready.name, &views))
                    .into_owned()
            };
            if args.watch && !args.json {
                let now = davit_engine::release::rfc3339(davit_engine::release::unix_now());
                let head = format!("every {}: davit status  {now}\n\n", args.interval);
                out = if tty {
                    format!("\x1b[H\x1b[2J{head}{out}")
                } else {
                    format!("{head}{out}\n")
                };
            }
            {
                let mut o = std::io::stdout().lock();
                o.write_all(out.as_bytes())?;
                o.flush()?;
            }
            if !args.watch {
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

/// Reads every host at once.
async fn frame(project: &str, conns: &[Conn], services: &[String]) -> Vec<HostView> {
    let futs = conns.iter().map(|c| async move {
        let (host, remote) = match &c.host {
            Ok(h) => h,
            Err(e) => {
                return HostView {
                    status: HostStatus {
                        host: c.url.clone(),
                        ok: false,
                        error: Some(e.clone()),
                        release: None,
                        services: Vec::new(),
                    },
                    resources: None,
                };
            }
        };
        let one = std::slice::from_ref(remote);
        let (mut status, resources) = tokio::join!(
            davit_engine::status::status(project, one, services),
            host_metrics(host)
        );
        let status = status.remove(0);
        HostView {
            resources: status.ok.then_some(resources),
            status,
        }
    });
    futures_util::future::join_all(futs).await
}

/// The host's CPU, memory and disk: the engine's CPU count and data root, then `/proc` and `df`
/// read on the host. What cannot be read stays unknown.
async fn host_metrics(host: &davit_ssh::Host) -> HostMetrics {
    let info = host.docker().info().await.ok();
    let root = info
        .as_ref()
        .and_then(|i| i.docker_root_dir.clone())
        .unwrap_or_else(|| "/var/lib/docker".into());
    let mut m = match host.exec(&metrics::script(&root)).await {
        Ok(out) => metrics::parse(&String::from_utf8_lossy(&out.stdout)),
        Err(e) => {
            tracing::debug!(host = %host.url(), "reading host metrics: {e}");
            HostMetrics::default()
        }
    };
    m.cpus = info
        .as_ref()
        .and_then(|i| i.ncpu)
        .and_then(|n| u64::try_from(n).ok());
    if m.memory_total_bytes.is_none() {
        m.memory_total_bytes = info
            .as_ref()
            .and_then(|i| i.mem_total)
            .and_then(|n| u64::try_from(n).ok());
    }
    m
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

fn resources_line(m: &HostMetrics) -> String {
    let mut parts = Vec::new();
    let mut cpu = String::from("cpu");
    if let Some(n) = m.cpus {
        let _ = write!(cpu, " {n}×");
    }
    if let Some(p) = m.cpu_percent {
        let _ = write!(cpu, " {p:.0}%");
    }
    if let Some([a, b, c]) = m.load {
        let _ = write!(cpu, " load {a:.2} {b:.2} {c:.2}");
    }
    parts.push(cpu);
    if let (Some(u), Some(t)) = (m.memory_used_bytes, m.memory_total_bytes) {
        parts.push(format!(
            "mem {} / {} ({:.0}%)",
            human_bytes(u),
            human_bytes(t),
            u as f64 * 100.0 / t.max(1) as f64
        ));
    } else if let Some(t) = m.memory_total_bytes {
        parts.push(format!("mem {}", human_bytes(t)));
    }
    if let (Some(u), Some(t), Some(a)) = (
        m.disk_used_bytes,
        m.disk_total_bytes,
        m.disk_available_bytes,
    ) {
        parts.push(format!(
            "disk {} / {} ({:.0}%, {} free)",
            human_bytes(u),
            human_bytes(t),
            u as f64 * 100.0 / t.max(1) as f64,
            human_bytes(a)
        ));
    }
    parts.join("  ")
}

/// The table for people: one block per host, one row per container.
fn table(project: &str, views: &[HostView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "project {project}");
    for v in views {
        let h = &v.status;
        let _ = writeln!(out);
        if let Some(e) = &h.error {
            let _ = writeln!(out, "{}  UNREACHABLE: {e}", h.host);
            continue;
        }
        let _ = writeln!(
            out,
            "{}  release {}",
            h.host,
            h.release.as_deref().unwrap_or("none")
        );
        if let Some(m) = &v.resources {
            let _ = writeln!(out, "  {}", resources_line(m));
        }
        if h.services.is_empty() {
            let _ = writeln!(out, "  no containers of {project}");
            continue;
        }
        let mut rows = vec![
            [
                "SERVICE",
                "RELEASE",
                "DIGEST",
                "CONTAINER",
                "STATE",
                "HEALTH",
                "UPTIME",
                "RESTARTS",
            ]
            .map(String::from),
        ];
        for s in &h.services {
            for c in &s.containers {
                rows.push([
                    s.service.clone(),
                    c.release.clone().unwrap_or_else(|| "-".into()),
                    s.digest.as_deref().map_or_else(|| "-".into(), short_digest),
                    c.name.clone(),
                    c.state.clone(),
                    c.health.clone().unwrap_or_else(|| "-".into()),
                    c.uptime_secs.map_or_else(|| "-".into(), human_duration),
                    c.restarts.to_string(),
                ]);
            }
        }
        let widths: Vec<usize> = (0..8)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for r in rows {
            let mut line = String::from(" ");
            for (i, cell) in r.iter().enumerate() {
                let _ = write!(line, " {cell:<w$}", w = widths[i]);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}
