//! Pooled HTTP/1.1 keep-alive connections to one upstream target.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
struct Shard(Mutex<Vec<Sender>>);

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
    /// An idle connection that is ready, else a new one.
    pub(crate) async fn checkout(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Sender, bool), ConnectError> {
        loop {
            let popped = self.shards[shard()].0.lock().expect("pool lock").pop();
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
        let mut idle = self.shards[shard()].0.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    /// Closes every idle connection (a drained target).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.0.lock().expect("pool lock").clear();
        }
    }
}
