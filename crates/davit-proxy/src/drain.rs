//! Stopping the client side gracefully (SIGTERM, or a newer proxy taking over the ports): listeners
//! close first, then busy HTTP/1 clients are told `Connection: close` on their next response and leave
//! by themselves, then every connection left is shut down gracefully (idle HTTP/1 ones closed, HTTP/2
//! ones sent GOAWAY) and the proxy waits for the requests in flight.
//!
//! Each client connection registers here with its own one-shot stop signal: a per-connection
//! channel, so that polling a connection never touches state shared by all connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// HTTP/1 responses carry `Connection: close`.
    closing: AtomicBool,
    /// Every connection was told to stop; new ones are told at once.
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Client connections open.
    live: AtomicUsize,
    conns: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

/// A client connection's registration; it leaves the registry when dropped.
pub(crate) struct Ticket {
    drain: Arc<Drain>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.drain.conns().remove(&self.id);
        self.drain.live.fetch_sub(1, Relaxed);
    }
}

impl Drain {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.conns.lock().expect("drain lock")
    }

    /// Registers a new client connection: it should shut down gracefully once the receiver fires.
    pub(crate) fn register(self: &Arc<Self>) -> (Ticket, oneshot::Receiver<()>) {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.live.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut conns = self.conns();
        if self.closed.load(Relaxed) {
            let _ = tx.send(());
        } else {
            conns.insert(id, tx);
        }
        drop(conns);
        (
            Ticket {
                drain: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Whether responses should close their HTTP/1 connection.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Relaxed)
    }

    /// Step one: busy HTTP/1 connections close after their next response.
    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Relaxed);
    }

    /// Step two: every connection shuts down gracefully.
    pub(crate) fn close_all(&self) {
        let mut conns = self.conns();
        self.closed.store(true, Relaxed);
        for (_, tx) in conns.drain() {
            let _ = tx.send(());
        }
    }

    /// Client connections open.
    pub(crate) fn connections(&self) -> usize {
        self.live.load(Relaxed)
    }
}
