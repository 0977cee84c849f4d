//! Target health: a minimal threshold policy (consecutive successes make a target healthy, consecutive
//! failures unhealthy) behind a small interface, and the probe that feeds it.
//!
//! Why not `davit-health`'s `Machine`: it reaches one final verdict (the rollout's "did it turn
//! healthy?"), while the proxy needs a continuous up/down signal for as long as a target serves, and
//! that crate brings bollard into what must stay a small static binary. `Policy::record` is the seam
//! where a shared policy type would slot in.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::api::HealthSpec;

/// What the policy concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Never passed yet.
    Pending,
    Healthy,
    /// Passed once, now failing.
    Unhealthy,
}

/// Consecutive-threshold policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    verdict: Verdict,
}

impl Policy {
    pub(crate) fn new(spec: &HealthSpec) -> Self {
        Self {
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            successes: 0,
            failures: 0,
            verdict: Verdict::Pending,
        }
    }

    /// Takes new thresholds, keeping the current verdict.
    pub(crate) fn reconfigure(&mut self, spec: &HealthSpec) {
        self.success_threshold = spec.success_threshold.max(1);
        self.failure_threshold = spec.failure_threshold.max(1);
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Records one probe outcome and returns the verdict after it.
    pub(crate) fn record(&mut self, ok: bool) -> Verdict {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.success_threshold {
                self.verdict = Verdict::Healthy;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.verdict == Verdict::Healthy && self.failures >= self.failure_threshold {
                self.verdict = Verdict::Unhealthy;
            }
        }
        self.verdict
    }
}

/// Probes `addr` once: a TCP connect, or `GET path` that must answer 2xx/3xx. `Ok` and `Err` both carry a
/// short description for the admin API.
pub(crate) async fn probe(addr: SocketAddr, spec: &HealthSpec) -> Result<String, String> {
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    match tokio::time::timeout(timeout, probe_inner(addr, spec.path.as_deref())).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}ms", spec.timeout_ms)),
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
