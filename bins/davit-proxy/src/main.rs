//! `davit-proxy`: the proxy that holds a host's published ports (admin API on loopback, routes saved to
//! a state file), or, with `--listen` and `--target`, a standalone reverse proxy in front of one target.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// A Unix socket through which this proxy takes the listening sockets of the proxy it replaces
    /// (the one serving this path, if any) instead of binding new ones, then hands its own to the
    /// next: no listening socket closes during an upgrade, so no connection is reset.
    #[arg(long, value_name = "PATH", env = "DAVIT_PROXY_HANDOVER")]
    handover: Option<PathBuf>,
    /// Standalone mode: listen here (with --target).
    #[arg(long, value_name = "ADDR", requires = "target")]
    listen: Option<SocketAddr>,
    /// Standalone mode: the upstream (repeat for several, equal weights).
    #[arg(long, value_name = "ADDR", requires = "listen")]
    target: Vec<SocketAddr>,
    /// Standalone mode: HTTP health path of the targets (a TCP connect check when absent).
    #[arg(long, value_name = "PATH", requires = "listen")]
    health: Option<String>,
    /// On SIGTERM, how long requests in flight may take to finish before the proxy exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    drain_secs: u64,
    /// Threads serving clients, which get each route's new connections in turn (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// One-shot for the engine (run in a host-network container allowed to write /proc/sys before a
    /// proxy upgrade): sets one allow-listed sysctl of the network namespace, then exits.
    #[arg(long, value_name = "KEY=VALUE", hide = true, exclusive = true)]
    set_sysctl: Option<String>,
}

/// The sysctls `--set-sysctl` may set, with the values it accepts.
const SYSCTLS: &[(&str, &[&str])] = &[("net.ipv4.tcp_migrate_req", &["0", "1"])];

/// Sets `KEY=VALUE` (allow-listed) unless it already holds; says which on stdout.
fn set_sysctl(arg: &str) -> anyhow::Result<()> {
    let (key, value) = arg.split_once('=').context("expected KEY=VALUE")?;
    let allowed = SYSCTLS
        .iter()
        .any(|(k, values)| *k == key && values.contains(&value));
    anyhow::ensure!(
        allowed,
        "{arg} is not a sysctl setting davit-proxy may make"
    );
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let read = || {
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map(|v| v.trim().to_owned())
    };
    if read()? == value {
        println!("{key} = {value} (unchanged)");
        return Ok(());
    }
    std::fs::write(&path, value).with_context(|| format!("cannot write {}", path.display()))?;
    anyhow::ensure!(read()? == value, "{key} did not take the value {value}");
    println!("{key} = {value}");
    Ok(())
}

/// One single-threaded runtime per worker thread; they run until the process exits.
fn worker_runtimes(n: usize) -> anyhow::Result<Vec<tokio::runtime::Handle>> {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("davit-proxy-w{i}"))
            .spawn(move || {
                proxy::set_worker_index(i + 1);
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .context("cannot start a worker thread")?;
        handles.push(
            rx.recv()
                .context("a worker thread died")?
                .context("cannot start a worker runtime")?,
        );
    }
    Ok(handles)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
        .max(1);
    let workers = worker_runtimes(threads)?;
    let proxy = Proxy::start(ProxyConfig {
        workers,
        state_file: args.state.clone(),
        handover: args.handover.clone(),
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
    let mut admin_task = match admin {
        Some(addr) => {
            // Taken over from the previous proxy, or SO_REUSEPORT like the routes' listeners: a new
            // proxy can start (and take the admin API over) while this one still runs.
            let listener = proxy
                .admin_listener(addr)
                .with_context(|| format!("cannot open the admin API on {addr}"))?;
            tracing::info!(%addr, "admin API listening");
            let proxy = proxy.clone();
            Some(tokio::spawn(
                async move { proxy.serve_admin(listener).await },
            ))
        }
        None => None,
    };
    // Every listener is open: the next proxy may take them over from now on.
    let handover = match &args.handover {
        Some(path) => Some(proxy.serve_handover(path)?),
        None => None,
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        r = async { match &mut admin_task { Some(t) => t.await, None => std::future::pending().await } } => {
            r.context("admin API task")?.context("admin API stopped")?;
        }
    }
    // The admin API goes first (a proxy taking over gets every admin call from now on), then the
    // listeners; connections are closed gracefully and the requests in flight finish (bounded).
    if let Some(t) = admin_task {
        t.abort();
    }
    if let Some(t) = handover {
        t.abort();
    }
    let left = proxy.shutdown(Duration::from_secs(args.drain_secs)).await;
    if left > 0 {
        tracing::warn!(left, "requests still in flight at exit");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(arg) = &args.set_sysctl {
        return match set_sysctl(arg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("davit-proxy: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
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
