//! `davit-demo`: the app davit deploys in its tests, its README demo and for users trying it out.
//!
//! - `GET /` answers `davit-demo <version>` (from `$DAVIT_DEMO_VERSION`);
//! - `GET /health` answers 200, or 500 when `$DAVIT_DEMO_BROKEN` is set;
//! - `GET /slow?ms=N` answers after N milliseconds (to test draining);
//! - on SIGTERM or SIGINT it stops accepting, finishes in-flight requests, then exits 0.
//!
//! `davit-demo check [URL]` is a healthcheck with no curl in the image: it exits 0 when URL
//! (default `http://127.0.0.1:$PORT/health`) answers 2xx, else 1.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

struct Config {
    version: String,
    broken: bool,
}

fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

fn respond(config: &Config, status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-davit-demo-version", config.version.as_str())
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn handle(
    config: &Config,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    Ok(match path {
        "/" => respond(
            config,
            StatusCode::OK,
            format!("davit-demo {}\n", config.version),
        ),
        "/health" if config.broken => {
            respond(config, StatusCode::INTERNAL_SERVER_ERROR, "broken\n".into())
        }
        "/health" => respond(config, StatusCode::OK, "ok\n".into()),
        "/slow" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            respond(
                config,
                StatusCode::OK,
                format!("davit-demo {} slow {ms}ms\n", config.version),
            )
        }
        _ => respond(config, StatusCode::NOT_FOUND, "not found\n".into()),
    })
}

async fn serve(listen: SocketAddr, config: Config) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    // The bound address, so that `--listen 127.0.0.1:0` tells which port it got.
    eprintln!(
        "davit-demo {} listening on {}",
        config.version,
        listener.local_addr()?
    );
    let config: &'static Config = Box::leak(Box::new(config));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| handle(config, req)),
                );
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Stop accepting, let in-flight requests finish (keep-alive connections close after them).
    drop(listener);
    eprintln!("davit-demo draining");
    if tokio::time::timeout(Duration::from_secs(60), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("davit-demo: drain timed out");
    }
    eprintln!("davit-demo stopped");
    Ok(())
}

/// A blocking HTTP GET for the healthcheck; true on 2xx.
fn check(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(mut s) = std::net::TcpStream::connect(hostport) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.get(9) == Some(&b'2') && buf.starts_with(b"HTTP/1.")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("check") {
        let url = args
            .get(1)
            .cloned()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/health", port()));
        return if check(&url) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let mut listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], port()));
    let mut version = std::env::var("DAVIT_DEMO_VERSION").unwrap_or_else(|_| "dev".into());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(_) => {
                    eprintln!("davit-demo: --listen wants ADDR:PORT, got {v:?}");
                    return ExitCode::from(2);
                }
            },
            ("--version", Some(v)) => version = v.clone(),
            _ => {
                eprintln!(
                    "usage: davit-demo [--listen ADDR:PORT] [--version V] | davit-demo check [URL]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let broken = std::env::var_os("DAVIT_DEMO_BROKEN").is_some_and(|v| !v.is_empty() && v != "0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(serve(listen, Config { version, broken })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("davit-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
