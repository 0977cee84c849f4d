//! Drives a [`Rollout`] against an [`Executor`]: the only place where a strategy meets time and I/O.
//!
//! Each `Do` action runs as its own task (so hosts proceed in parallel); each `Watch` is a task that
//! reports health transitions until `Unwatch`. The loop waits for the first of: an event, the rollout's
//! next timer, or cancellation (Ctrl-C), which aborts the rollout so every host goes back to the old
//! version.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use davit_rollout::{Action, Event, Metrics, Outcome, Rollout, Step, Version};

/// Performs a rollout's steps for one service.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Performs `step` on `host`. `Ok(Some(metrics))` answers [`Step::Sample`].
    async fn step(&self, host: &str, step: Step) -> Result<Option<Metrics>, String>;

    /// Watches the health of `version`'s containers on `host`, sending [`Event::Healthy`] and
    /// [`Event::Unhealthy`] on transitions, until the task is aborted.
    async fn watch(&self, host: &str, version: Version, events: mpsc::Sender<Event>);
}

/// Something the driver reports as it goes (for progress bars and `--json`).
pub type Observer = Arc<dyn Fn(&DriverNote) + Send + Sync>;

/// A note from the driver.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DriverNote {
    Action { at_ms: u64, action: Action },
    Event { at_ms: u64, event: Event },
}

/// The engine's side of a rollout held before its point of no return
/// ([`Rollout::hold_before_cleanup`]): the driver says when the rollout is held, the engine answers
/// commit (`true`) or abort (`false`; a dropped sender aborts too).
pub struct CommitGate {
    pub reached: oneshot::Sender<()>,
    pub decision: oneshot::Receiver<bool>,
}

/// Runs `rollout` to its end. `cancel` turning true aborts it (the rollout then reverts).
pub async fn drive<E: Executor>(
    rollout: Rollout,
    executor: Arc<E>,
    cancel: watch::Receiver<bool>,
    observer: Option<Observer>,
) -> Outcome {
    drive_gated(rollout, executor, cancel, observer, None).await
}

/// [`drive`], with a rollout held before its point of no return until `gate` decides.
pub async fn drive_gated<E: Executor>(
    mut rollout: Rollout,
    executor: Arc<E>,
    mut cancel: watch::Receiver<bool>,
    observer: Option<Observer>,
    gate: Option<CommitGate>,
) -> Outcome {
    let (mut reached, mut decision) = match gate {
        Some(g) => (Some(g.reached), Some(g.decision)),
        None => (None, None),
    };
    let start = Instant::now();
    let now = || start.elapsed();
    let note = |n: DriverNote| {
        if let Some(o) = &observer {
            o(&n);
        }
    };
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let mut watches: HashMap<(String, Version), JoinHandle<()>> = HashMap::new();
    let mut steps: Vec<JoinHandle<()>> = Vec::new();
    let mut cancelled = *cancel.borrow();
    rollout.start(now());
    if cancelled {
        rollout.abort(now(), "interrupted");
    }
    loop {
        while let Some(action) = rollout.poll_action() {
            note(DriverNote::Action {
                at_ms: now().as_millis() as u64,
                action: action.clone(),
            });
            match action {
                Action::Finished { outcome } => {
                    for (_, w) in watches.drain() {
                        w.abort();
                    }
                    // Steps still running (none should be) finish on their own; wait for them so
                    // nothing is left half-done behind the caller's back.
                    for s in steps {
                        let _ = s.await;
                    }
                    return outcome;
                }
                Action::Do { host, step } => {
                    let ex = executor.clone();
                    let tx = tx.clone();
                    steps.push(tokio::spawn(async move {
                        let ev = match ex.step(&host, step).await {
                            Ok(Some(metrics)) if step == Step::Sample => {
                                Event::Sampled { host, metrics }
                            }
                            Ok(_) if step == Step::Sample => Event::Sampled {
                                host,
                                metrics: Metrics::default(),
                            },
                            Ok(_) => Event::Completed { host, step },
                            Err(reason) => Event::Failed { host, step, reason },
                        };
                        let _ = tx.send(ev).await;
                    }));
                    steps.retain(|s| !s.is_finished());
                }
                Action::Watch { host, version } => {
                    let ex = executor.clone();
                    let tx = tx.clone();
                    let h = host.clone();
                    let task = tokio::spawn(async move { ex.watch(&h, version, tx).await });
                    if let Some(old) = watches.insert((host, version), task) {
                        old.abort();
                    }
                }
                Action::Unwatch { host, version } => {
                    if let Some(w) = watches.remove(&(host, version)) {
                        w.abort();
                    }
                }
            }
        }
        if rollout.awaiting_commit() && decision.is_none() {
            // Held, but nobody decides: nothing to wait for.
            rollout.commit(now());
            continue;
        }
        if rollout.awaiting_commit()
            && let Some(r) = reached.take()
        {
            let _ = r.send(());
        }
        let held = rollout.awaiting_commit() && decision.is_some();
        let decided = async {
            match decision.as_mut() {
                Some(d) if held => d.await.unwrap_or(false),
                _ => std::future::pending().await,
            }
        };
        let deadline = rollout.poll_timeout().map(|t| start + t);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { continue };
                // Watch events of a stopped watcher are stale: the rollout ignores them anyway.
                note(DriverNote::Event { at_ms: now().as_millis() as u64, event: ev.clone() });
                rollout.handle(now(), ev);
            }
            () = sleep => rollout.handle_timeout(now()),
            commit = decided => {
                decision = None;
                if commit {
                    rollout.commit(now());
                } else {
                    rollout.abort(now(), "a later service failed");
                }
            }
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() {
                    // Nobody can cancel any more: stop listening.
                    cancelled = true;
                } else if *cancel.borrow() {
                    cancelled = true;
                    rollout.abort(now(), "interrupted");
                }
            }
        }
    }
}
