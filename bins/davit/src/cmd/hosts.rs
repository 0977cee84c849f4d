//! `davit hosts check`, and [`SshArgs`]: the SSH options every command that reaches hosts flattens in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use davit_ssh::{HostReport, HostUrl, SshOptions};

use crate::Usage;

/// The global SSH options (CONTRACT.md "Names"). Flatten into any command that reaches hosts:
/// `#[command(flatten)] ssh: hosts::SshArgs`, then `args.ssh.options()?`.
#[derive(Debug, Clone, clap::Args)]
pub struct SshArgs {
    /// Private key to offer to SSH servers (ssh-agent keys are offered too when SSH_AUTH_SOCK is set).
    #[arg(long, value_name = "FILE", env = "DAVIT_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
    /// known_hosts file to check host keys against [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE", env = "DAVIT_KNOWN_HOSTS", global = true)]
    pub known_hosts: Option<PathBuf>,
    /// Accept and record host keys not yet in known_hosts (a changed key is always refused).
    #[arg(long, global = true)]
    pub accept_new_host_keys: bool,
    /// Give up on a host that does not answer within this long (e.g. 500ms, 10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", global = true)]
    pub connect_timeout: String,
}

impl SshArgs {
    /// The library options; a bad duration is a usage error.
    pub fn options(&self) -> anyhow::Result<SshOptions> {
        let mut o = SshOptions::default();
        o.identity = self.identity.clone();
        o.known_hosts = self.known_hosts.clone();
        o.accept_new_host_keys = self.accept_new_host_keys;
        o.connect_timeout = parse_duration(&self.connect_timeout).ok_or_else(|| {
            Usage(format!(
                "--connect-timeout {}: not a duration (e.g. 500ms, 10s, 1m)",
                self.connect_timeout
            ))
        })?;
        Ok(o)
    }
}

/// `100ms`, `2s`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// Parses `--host` values; a bad URL is a usage error (exit 2, before any host is touched). No host
/// means `local`.
pub fn parse_hosts(hosts: &[String]) -> anyhow::Result<Vec<HostUrl>> {
    if hosts.is_empty() {
        return Ok(vec![HostUrl::Local]);
    }
    hosts
        .iter()
        .map(|h| HostUrl::parse(h).map_err(|e| Usage(e.to_string()).into()))
        .collect()
}

#[derive(Debug, clap::Subcommand)]
pub enum HostsCommand {
    /// Connect to every host in parallel and report its engine: version, OS, CPUs, memory, free disk.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A host: `local`, `unix:///path/docker.sock` or `ssh://user@host[:port][?socket=/path]`. Repeat for
    /// several hosts [default: local].
    #[arg(long = "host", value_name = "URL")]
    hosts: Vec<String>,
    /// Print `{"hosts":[{"url":…,"ok":…,"engine_version":…},…]}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ssh: SshArgs,
}

pub fn run(cmd: HostsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HostsCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let urls = parse_hosts(&args.hosts)?;
    let opts = args.ssh.options()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let reports = rt.block_on(davit_ssh::check_hosts(&urls, &opts));
    let failed = reports.iter().filter(|r| !r.ok).count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "hosts": reports }))?
        );
    } else {
        for r in &reports {
            println!("{}", human(r));
        }
    }
    if failed > 0 {
        if args.json {
            for r in reports.iter().filter(|r| !r.ok) {
                eprintln!("error: {}", r.error.as_deref().unwrap_or("unknown error"));
            }
        }
        eprintln!("error: {failed} of {} host(s) failed", reports.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn human(r: &HostReport) -> String {
    if !r.ok {
        let e = r.error.as_deref().unwrap_or("unknown error");
        return if e.starts_with(&r.url) {
            format!("FAIL  {e}")
        } else {
            format!("FAIL  {}: {e}", r.url)
        };
    }
    let gib = |b: f64| format!("{:.1} GiB", b / (1u64 << 30) as f64);
    let mut parts = vec![format!(
        "docker {}",
        r.engine_version.as_deref().unwrap_or("?")
    )];
    if let Some(os) = &r.os {
        parts.push(os.clone());
    }
    if let Some(c) = r.cpus {
        parts.push(format!("{c} CPUs"));
    }
    if let Some(m) = r.memory_bytes {
        parts.push(format!("{} memory", gib(m as f64)));
    }
    if let Some(d) = r.free_disk_bytes {
        parts.push(format!("{} free disk", gib(d as f64)));
    }
    format!("ok    {}  {}", r.url, parts.join(" · "))
}
