//! Target health: the probe (a TCP connect, or `GET path` that must answer 2xx/3xx) whose outcomes
//! feed `davit-health`'s [`Monitor`](davit_health::Monitor), the ongoing readiness policy the route
//! gates its targets with (see `route.rs`). The probe is the proxy's own so that the binary stays
//! small: `davit-health` is used with `default-features = false`, the pure part only.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use davit_health::Outcome;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Probes `addr` once within `timeout`. The outcome carries a short description for the admin API
/// (`200 OK`, `connect: connection refused`, …).
pub(crate) async fn probe(addr: SocketAddr, path: Option<&str>, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, probe_inner(addr, path)).await {
        Ok(Ok(detail)) => Outcome::Success(detail),
        Ok(Err(detail)) => Outcome::Failure(detail),
        Err(_) => Outcome::Failure(format!("timed out after {}ms", timeout.as_millis())),
    }
}

async fn probe_inner(addr: SocketAddr, path: Option<&str>) -> Result<String, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(path) = path else {
        return Ok("connected".into());
    };
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .header("user-agent", "davit-proxy-health")
        .header("connection", "close")
        .body(Empty::new())
        .map_err(|e| format!("bad health path {path:?}: {e}"))?;
    let result = send.send_request(req).await;
    conn.abort();
    let resp = result.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let text = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if status.is_success() || status.is_redirection() {
        Ok(text.trim().to_owned())
    } else {
        Err(text.trim().to_owned())
    }
}
