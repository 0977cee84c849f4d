//! `davit logs SERVICE`: the service's container logs from every host at once, each line prefixed
//! by its host (coloured per host on a terminal), secrets masked.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use davit_engine::status::{LogLine, LogsRequest, parse_rfc3339};

use super::deploy::{ProjectArgs, connect, runtime};
use super::hosts::parse_duration;
use crate::Usage;

/// When to colour the host prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service.
    pub service: String,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Keep streaming new lines (until Ctrl-C or the containers stop).
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines of each container.
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<u64>,
    /// Only lines since then: a duration back from now (`10m`, `2h`, `30s`) or an RFC 3339 time
    /// (`2026-11-24T10:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Colour each host's prefix.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: Color,
}

/// `--since`: unix seconds.
fn since(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(d) = parse_duration(s) {
        return Ok(now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    }
    parse_rfc3339(s).ok_or_else(|| {
        Usage(format!(
            "--since {s}: neither a duration (10m, 2h) nor an RFC 3339 time (2026-11-24T10:00:00Z)"
        ))
        .into()
    })
}

/// How a host is named in front of its lines: `host` of `ssh://user@host:port` (with `:port` when
/// not 22), `local`, or the socket path.
fn label(url: &str) -> String {
    match davit_ssh::HostUrl::parse(url) {
        Ok(davit_ssh::HostUrl::Ssh { host, port, .. }) => match port {
            Some(p) if p != 22 => format!("{host}:{p}"),
            _ => host,
        },
        Ok(davit_ssh::HostUrl::Unix { path }) => path.display().to_string(),
        _ => url.to_string(),
    }
}

const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let now = i64::try_from(davit_engine::release::unix_now()).unwrap_or(0);
    let since = args.since.as_deref().map(|s| since(s, now)).transpose()?;
    let ready = super::preflight::ready(&args.project, std::slice::from_ref(&args.service))?;
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let labels: Vec<String> = ready.urls.iter().map(|u| label(&u.to_string())).collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let req = LogsRequest {
        follow: args.follow,
        tail: args.tail,
        since,
    };
    let rt = runtime()?;
    let redactor = ready.redactor.clone();
    rt.block_on(async {
        let hosts = connect(&ready.urls, &args.project.ssh).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(1024);
        let project = ready.name.clone();
        let service = args.service.clone();
        let reader = tokio::spawn(async move {
            davit_engine::status::logs(&project, &service, &hosts, &req, tx).await
        });
        let mut out = std::io::stdout().lock();
        let mut containers: Vec<(usize, String)> = Vec::new();
        loop {
            let line = tokio::select! {
                l = rx.recv() => l,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(line) = line else { break };
            // The container is named only when a host has several for the service.
            if !containers.contains(&(line.host_index, line.container.clone())) {
                containers.push((line.host_index, line.container.clone()));
            }
            let several = containers
                .iter()
                .filter(|(h, _)| *h == line.host_index)
                .count()
                > 1;
            let mut prefix = format!(
                "{:<width$}",
                labels.get(line.host_index).cloned().unwrap_or(line.host)
            );
            if several {
                prefix = format!("{prefix} {}", line.container);
            }
            let text = redactor.redact(&line.text);
            let written = if color {
                let c = COLORS[line.host_index % COLORS.len()];
                writeln!(out, "\x1b[{c}m{prefix} |\x1b[0m {text}")
            } else {
                writeln!(out, "{prefix} | {text}")
            };
            if written.and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        drop(out);
        reader.abort();
        match reader.await {
            Ok(r) => r?,
            Err(e) if e.is_cancelled() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(ExitCode::SUCCESS)
    })
    .map_err(|e| super::preflight::redact_error(&ready.redactor, e))
}
