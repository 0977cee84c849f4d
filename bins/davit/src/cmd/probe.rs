//! `davit probe TARGET`: waits until TARGET is healthy (exit 0), or is not by the deadline (exit 1).
//! A target or option that cannot work is refused with exit 2 before anything is probed.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use davit_health::{
    DirectDial, Event, Policy, Probe, Prober, StatusRange, Verdict, format_duration,
    parse_duration, parse_target, wait_healthy,
};

use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to probe: http://…, https://…, tcp://host:port, or container://NAME[@HOST-URL] (the
    /// container's Docker healthcheck status; HOST-URL is local, unix:///path or ssh://user@host).
    #[arg(value_name = "TARGET")]
    target: String,
    /// Time between the starts of two probes.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration)]
    interval: Duration,
    /// A probe that has not answered after this long is a failure.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = duration)]
    timeout: Duration,
    /// Failures during this time after the start are not counted (a success counts).
    #[arg(long, value_name = "D", default_value = "0s", value_parser = duration)]
    start_period: Duration,
    /// No probe before this much time has passed.
    #[arg(long, value_name = "D", default_value = "0s", value_parser = duration)]
    initial_delay: Duration,
    /// Consecutive successes needed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    success_threshold: u32,
    /// Consecutive failures (after the start period) that end the wait as unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    failure_threshold: u32,
    /// How long the target must stay passing, without a failure, to count as healthy.
    #[arg(long, value_name = "D", default_value = "0s", value_parser = duration)]
    min_healthy_time: Duration,
    /// Give up when not healthy this long after the start.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = duration)]
    deadline: Duration,
    /// HTTP status codes that count as healthy: 200, 200-299, 2xx (default 200-399).
    #[arg(long, value_name = "RANGE", value_parser = status_range)]
    expect_status: Option<StatusRange>,
    /// Text the HTTP response body must contain.
    #[arg(long, value_name = "TEXT")]
    expect_body: Option<String>,
    /// An extra HTTP request header (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Accept any TLS certificate (self-signed endpoints). Verification is on by default.
    #[arg(long)]
    insecure: bool,
    /// Probe from this host's side (http, https and tcp targets): the connections are opened by the
    /// server, over SSH, so a container's address works without publishing its port.
    #[arg(long, value_name = "HOST-URL")]
    from: Option<String>,
    /// Print every event as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Private key for ssh:// hosts.
    #[arg(long, value_name = "FILE", env = "DAVIT_IDENTITY")]
    identity: Option<std::path::PathBuf>,
    /// known_hosts file for ssh:// hosts (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE", env = "DAVIT_KNOWN_HOSTS")]
    known_hosts: Option<std::path::PathBuf>,
    /// Record unknown host keys (a changed key is always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn status_range(s: &str) -> Result<StatusRange, String> {
    s.parse()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Everything the user wrote is checked before anything is touched.
    let target = parse_target(&args.target).map_err(|e| Usage(format!("{e}")))?;
    let mut probe = target.probe;
    match &mut probe {
        Probe::Http(h) => {
            if let Some(range) = args.expect_status {
                h.expect_status = range;
            }
            h.expect_body = args.expect_body.clone();
            h.insecure = args.insecure;
            for header in &args.headers {
                let (name, value) = header
                    .split_once(':')
                    .filter(|(n, _)| !n.trim().is_empty())
                    .ok_or_else(|| {
                        Usage(format!("--header {header:?}: write it as \"Name: value\""))
                    })?;
                h.headers
                    .push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        other => {
            let http_only = [
                ("--expect-status", args.expect_status.is_some()),
                ("--expect-body", args.expect_body.is_some()),
                ("--header", !args.headers.is_empty()),
                ("--insecure", args.insecure),
            ];
            if let Some((flag, _)) = http_only.iter().find(|(_, given)| *given) {
                return Err(Usage(format!(
                    "{flag} applies to http:// and https:// targets only, not {other}"
                ))
                .into());
            }
        }
    }
    let host_url = match (&probe, target.docker_host.as_deref()) {
        (Probe::Container { .. }, host) => Some(
            davit_ssh::HostUrl::parse(host.unwrap_or("local"))
                .map_err(|e| Usage(format!("bad probe target {:?}: {e}", args.target)))?,
        ),
        _ => None,
    };
    let from = match (&args.from, &host_url) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            let hint = "name the host in the target instead: container://NAME@HOST-URL";
            return Err(Usage(format!(
                "--from applies to http, https and tcp targets; {hint}"
            ))
            .into());
        }
        (Some(url), None) => Some(
            davit_ssh::HostUrl::parse(url).map_err(|e| Usage(format!("--from {url:?}: {e}")))?,
        ),
    };
    let policy = Policy {
        initial_delay: args.initial_delay,
        start_period: args.start_period,
        interval: args.interval,
        timeout: args.timeout,
        success_threshold: args.success_threshold,
        failure_threshold: args.failure_threshold,
        min_healthy_time: args.min_healthy_time,
        deadline: Some(args.deadline),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut opts = davit_ssh::SshOptions::default();
        opts.identity = args.identity.clone();
        opts.known_hosts = args.known_hosts.clone();
        opts.accept_new_host_keys = args.accept_new_host_keys;
        let connect = |url: &davit_ssh::HostUrl| {
            let (url, opts) = (url.clone(), opts.clone());
            async move {
                davit_ssh::Host::connect(&url, &opts)
                    .await
                    .with_context(|| format!("connecting to {url}"))
            }
        };
        let mut prober = Prober::new(Arc::new(DirectDial));
        if let Some(url) = &from {
            prober = Prober::new(Arc::new(FromHost(connect(url).await?)));
        }
        if let Some(url) = &host_url {
            prober = prober.with_docker(connect(url).await?.docker());
        }
        let prepared = prober.prepare(&probe).map_err(|e| Usage(e.to_string()))?;
        let json = args.json;
        let shown = probe.to_string();
        let verdict = wait_healthy(&prober, &prepared, &policy, |event| show(&event, json)).await;
        if !json {
            match &verdict {
                Verdict::Healthy => println!("healthy: {shown}"),
                Verdict::Unhealthy { reason } => println!("unhealthy: {shown}: {reason}"),
            }
        }
        Ok(if verdict.is_healthy() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// Dials from a host's side: over SSH a `direct-tcpip` channel opened by the server.
struct FromHost(davit_ssh::Host);

#[async_trait::async_trait]
impl davit_health::Dial for FromHost {
    async fn dial(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<Box<dyn davit_health::AsyncReadWrite>> {
        Ok(Box::new(self.0.dial_tcp(host, port).await?))
    }
}

/// One event: a JSON line on stdout with `--json`, else a progress line on stderr.
fn show(event: &Event, json: bool) {
    if json {
        let line = serde_json::to_string(event).expect("events serialise");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        return;
    }
    if let Event::Result {
        attempt,
        at_ms,
        latency_ms,
        outcome,
        detail,
    } = event
    {
        let at = format_duration(Duration::from_millis(*at_ms));
        let latency = format_duration(Duration::from_millis(*latency_ms));
        eprintln!("[{at}] probe #{attempt}: {outcome} in {latency}: {detail}");
    }
}
