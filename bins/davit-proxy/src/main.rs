//! `davit-proxy`: the proxy that holds a host's published ports (admin API on loopback, routes saved to
//! a state file), or, with `--listen` and `--target`, a standalone reverse proxy in front of one target.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use proxy::api::{DEFAULT_ADMIN_ADDR, HealthSpec, RouteSpec, TargetSpec};
use proxy::{Proxy, ProxyConfig};
use tokio::signal::unix::{SignalKind, signal};

/// davit's reverse proxy: weighted, health-gated upstreams with draining.
#[derive(Debug, Parser)]
#[command(name = "davit-proxy", version)]
struct Args {
    /// Admin API address (JSON over HTTP/1.1). Keep it on loopback: the engine reaches it over SSH.
    /// Default 127.0.0.1:19900; in standalone mode there is no admin API unless this is given.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Save routes here after every change and restore them at start.
    #[arg(long, value_name = "FILE", env = "DAVIT_PROXY_STATE")]
    state: Option<PathBuf>,
    /// Standalone mode: listen here (with --target).
    #[arg(long, value_name = "ADDR", requires = "target")]
    listen: Option<SocketAddr>,
    /// Standalone mode: the upstream (repeat for several, equal weights).
    #[arg(long, value_name = "ADDR", requires = "listen")]
    target: Vec<SocketAddr>,
    /// Standalone mode: HTTP health path of the targets (a TCP connect check when absent).
    #[arg(long, value_name = "PATH", requires = "listen")]
    health: Option<String>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = Proxy::start(ProxyConfig {
        state_file: args.state.clone(),
    })
    .await
    .context("cannot restore the proxy's routes")?;
    if let Some(listen) = args.listen {
        let targets = args
            .target
            .iter()
            .map(|a| TargetSpec::new("", *a))
            .collect();
        let mut spec = RouteSpec::new(listen, targets);
        if let Some(path) = args.health {
            spec = spec.with_health(HealthSpec::http(path));
        }
        proxy
            .put_route("default", spec)
            .await
            .context("cannot start the standalone route")?;
        tracing::info!(%listen, targets = ?args.target, "standalone proxy");
    }
    let admin = match (args.admin, args.listen) {
        (Some(a), _) => Some(a),
        (None, None) => Some(
            DEFAULT_ADMIN_ADDR
                .parse()
                .expect("valid default admin address"),
        ),
        (None, Some(_)) => None,
    };
    let admin_task = match admin {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot open the admin API on {addr}"))?;
            tracing::info!(%addr, "admin API listening");
            let proxy = proxy.clone();
            Some(tokio::spawn(
                async move { proxy.serve_admin(listener).await },
            ))
        }
        None => None,
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        r = async { match admin_task { Some(t) => t.await, None => std::future::pending().await } } => {
            r.context("admin API task")?.context("admin API stopped")?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAVIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("davit-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("davit-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
