//! Pooled HTTP/1.1 keep-alive connections to one upstream target: plain connections driven by the
//! request's own task ([`UpConn`], for requests without a body or upgrade), and hyper client
//! connections (for the others).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::UpConn;

/// The body type sent upstream: the client's body, bounded by the route's size limit.
pub(crate) type UpBody = Limited<Incoming>;
pub(crate) type Sender = SendRequest<UpBody>;

const MAX_IDLE: usize = 512;

/// Idle connections are kept per thread (see [`set_worker_index`]): a connection's task runs on the
/// thread that opened it, so reusing it from the same thread avoids cross-thread wake-ups.
pub(crate) const SHARDS: usize = 16;

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as worker `index` (its own shard of every pool). Call it first thing on each
/// worker runtime's thread.
pub fn set_worker_index(index: usize) {
    SHARD.with(|s| s.set(index % SHARDS));
}

/// One thread's idle connections, on cache lines of its own (no false sharing between threads).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Idle>);

#[derive(Debug, Default)]
struct Idle {
    hyper: Vec<Sender>,
    plain: Vec<UpConn>,
}

#[derive(Debug)]
pub(crate) struct Pool {
    shards: Box<[Shard]>,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

/// The calling thread's shard.
pub(crate) fn shard() -> usize {
    SHARD.with(std::cell::Cell::get)
}

/// Why no connection could be had: nothing reached the upstream, so the request may go elsewhere.
#[derive(Debug)]
pub(crate) struct ConnectError(pub(crate) String);

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.shards[shard()].0.lock().expect("pool lock")
    }

    /// An idle plain connection that is still open, else a new one.
    pub(crate) async fn checkout_plain(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<UpConn, ConnectError> {
        loop {
            let popped = self.idle().plain.pop();
            let Some(mut conn) = popped else { break };
            if conn.alive() {
                return Ok(conn);
            }
        }
        match tokio::time::timeout(timeout, UpConn::connect(addr)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ConnectError(format!("connect {addr}: {e}"))),
            Err(_) => Err(ConnectError(format!(
                "connect {addr}: timed out after {timeout:?}"
            ))),
        }
    }

    /// Returns a plain connection whose exchange finished whole.
    pub(crate) fn checkin_plain(&self, conn: UpConn) {
        let mut idle = self.idle();
        if idle.plain.len() < MAX_IDLE {
            idle.plain.push(conn);
        }
    }

    /// An idle connection that is ready, else a new one.
    pub(crate) async fn checkout(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Sender, bool), ConnectError> {
        loop {
            let popped = self.idle().hyper.pop();
            let Some(mut sender) = popped else { break };
            if sender.is_closed() {
                continue;
            }
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectError(format!("connect {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| ConnectError(format!("handshake {addr}: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(%addr, error = %e, "upstream connection ended");
                }
            });
            Ok((sender, false))
        };
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError(format!(
                    "connect {addr}: timed out after {timeout:?}"
                )))
            })
    }

    /// Returns a connection whose exchange finished.
    pub(crate) fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.hyper.len() < MAX_IDLE {
            idle.hyper.push(sender);
        }
    }

    /// Closes every idle connection (a drained target).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            let mut idle = s.0.lock().expect("pool lock");
            idle.hyper.clear();
            idle.plain.clear();
        }
    }
}
