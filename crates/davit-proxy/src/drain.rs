//! Stopping the client side gracefully (SIGTERM, or a newer proxy taking over the ports): listeners
//! close first, then busy HTTP/1 clients are told `Connection: close` on their next response and leave
//! by themselves, then every connection left is shut down gracefully (idle HTTP/1 ones closed, HTTP/2
//! ones sent GOAWAY) and the proxy waits for the requests in flight.
//!
//! Each client connection registers here with its own [`Signal`], so that polling a connection never
//! touches state shared by all connections; checking it costs one atomic load per poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use Ordering::Relaxed;

/// What a client connection's task is told from outside (bits of [`Signal`]).
pub(crate) const STOP: u8 = 1;
/// The connection was idle for a whole period.
pub(crate) const IDLE: u8 = 2;

/// Flags raised for one client connection's task, which is woken when one is.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Raises `bit` and wakes the connection's task.
    pub(crate) fn raise(&self, bit: u8) {
        self.raised.fetch_or(bit, Ordering::Release);
        if let Some(w) = self.waker.lock().expect("signal lock").as_ref() {
            w.wake_by_ref();
        }
    }

    /// Names the task to wake (once: a task's waker stays valid for the task's life). Call it before
    /// the first [`take`](Self::take).
    pub(crate) fn register(&self, waker: &Waker) {
        *self.waker.lock().expect("signal lock") = Some(waker.clone());
    }

    /// The bits raised since the last call.
    pub(crate) fn take(&self) -> u8 {
        if self.raised.load(Relaxed) == 0 {
            0
        } else {
            self.raised.swap(0, Ordering::Acquire)
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// HTTP/1 responses carry `Connection: close`.
    closing: AtomicBool,
    /// Every connection was told to stop; new ones are told at once.
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Client connections open.
    live: AtomicUsize,
    conns: Mutex<HashMap<u64, Arc<Signal>>>,
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
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Signal>>> {
        self.conns.lock().expect("drain lock")
    }

    /// Registers a new client connection: it should shut down gracefully once [`STOP`] is raised on
    /// the signal.
    pub(crate) fn register(self: &Arc<Self>) -> (Ticket, Arc<Signal>) {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.live.fetch_add(1, Relaxed);
        let signal = Arc::new(Signal::default());
        let mut conns = self.conns();
        if self.closed.load(Relaxed) {
            signal.raise(STOP);
        } else {
            conns.insert(id, signal.clone());
        }
        drop(conns);
        (
            Ticket {
                drain: self.clone(),
                id,
            },
            signal,
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
        for (_, signal) in conns.drain() {
            signal.raise(STOP);
        }
    }

    /// Client connections open.
    pub(crate) fn connections(&self) -> usize {
        self.live.load(Relaxed)
    }
}
