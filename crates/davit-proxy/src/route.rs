//! One route's live state: its targets, their health and drain phases, and the immutable snapshot the
//! request path reads (who gets traffic, with which weights), replaced atomically on every change.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use davit_health::{Monitor, Status, Step};

use crate::api::{RouteSpec, RouteStatus, TargetState, TargetStatus};
use crate::health;
use crate::metrics::{Series, TargetStats};
use crate::pool::{Pool, SHARDS, shard};

/// How long a drained target stays listed (so the engine sees `drained`) before it is forgotten.
const FORGET_DRAINED_AFTER: Duration = Duration::from_secs(600);
/// How often drains are checked for completion.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the spec.
    Desired,
    /// Out of the spec, still serving until the new targets are ready.
    Retiring,
    Draining(Instant),
    Drained(Instant),
}

#[derive(Debug)]
struct TargetSt {
    weight: u32,
    phase: Phase,
    /// The health crate's ongoing verdict on this target, fed by its checker task.
    monitor: Monitor,
    /// Whether the monitor ever said healthy since the target was (re)added: a target gets traffic
    /// only once it has.
    ever_passed: bool,
    checker: Option<AbortHandle>,
}

fn monitor(spec: &RouteSpec) -> Monitor {
    Monitor::new(spec.health.policy(), Instant::now())
}

/// An upstream of a route.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) stats: TargetStats,
    pub(crate) pool: Pool,
    st: Mutex<TargetSt>,
}

impl Target {
    fn st(&self) -> std::sync::MutexGuard<'_, TargetSt> {
        self.st.lock().expect("target lock")
    }
}

/// What the request path needs, read once per request.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub(crate) picks: Vec<(Arc<Target>, u32)>,
    total: u32,
    /// No target serves yet but one is being checked: requests wait (bounded) instead of failing.
    pub(crate) awaiting: bool,
    pub(crate) spec: Arc<RouteSpec>,
    pub(crate) maintenance: Option<Bytes>,
}

/// One thread's copy of the snapshot, on cache lines of its own: reading it (the lock, the `Arc`'s
/// count) never touches memory another worker thread writes.
#[repr(align(128))]
struct SnapshotSlot(RwLock<Arc<Snapshot>>);

pub(crate) struct Route {
    pub(crate) name: String,
    state: Mutex<RouteState>,
    /// The same snapshot once per thread shard (see [`crate::pool::set_worker_index`]).
    snapshots: Box<[SnapshotSlot]>,
    /// Signalled whenever the snapshot changes.
    pub(crate) changed: Notify,
}

thread_local! {
    /// The weighted choice's random state, per thread (no shared counter on the request path).
    static RNG: Cell<u64> = const { Cell::new(0x853c_49e6_748f_ea9b) };
}

fn next_random() -> u64 {
    RNG.with(|r| {
        let v = r.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        r.set(v);
        splitmix(v)
    })
}

struct RouteState {
    spec: Arc<RouteSpec>,
    targets: Vec<Arc<Target>>,
    controller: Option<AbortHandle>,
}

const DEFAULT_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Maintenance</title></head>\
<body><h1>Down for maintenance</h1><p>We will be back shortly.</p></body></html>\n";

fn maintenance_page(spec: &RouteSpec) -> Option<Bytes> {
    spec.maintenance
        .as_ref()
        .map(|m| Bytes::from(m.page.clone().unwrap_or_else(|| DEFAULT_PAGE.to_owned())))
}

impl Route {
    /// A route with no targets yet; call [`Route::apply`] next.
    pub(crate) fn new(name: &str, spec: RouteSpec) -> Arc<Self> {
        let spec = Arc::new(spec);
        let route = Arc::new(Self {
            name: name.to_owned(),
            state: Mutex::new(RouteState {
                spec: spec.clone(),
                targets: Vec::new(),
                controller: None,
            }),
            snapshots: Self::slots(&Snapshot {
                picks: Vec::new(),
                total: 0,
                awaiting: false,
                maintenance: maintenance_page(&spec),
                spec,
            }),
            changed: Notify::new(),
        });
        let weak = Arc::downgrade(&route);
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(route) = weak.upgrade() else { return };
                route.reconcile();
            }
        });
        route.state().controller = Some(handle.abort_handle());
        route
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RouteState> {
        self.state.lock().expect("route lock")
    }

    fn slots(snap: &Snapshot) -> Box<[SnapshotSlot]> {
        (0..SHARDS)
            .map(|_| SnapshotSlot(RwLock::new(Arc::new(snap.clone()))))
            .collect()
    }

    /// The calling thread's copy of the current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots[shard()]
            .0
            .read()
            .expect("snapshot lock")
            .clone()
    }

    pub(crate) fn spec(&self) -> Arc<RouteSpec> {
        self.state().spec.clone()
    }

    /// Makes `spec` the desired state: new targets start pending (checked at once), targets left out
    /// retire, and drain once every new target has passed its check.
    pub(crate) fn apply(self: &Arc<Self>, spec: RouteSpec) {
        let spec = Arc::new(spec);
        let mut st = self.state();
        st.spec = spec.clone();
        let mut keep: Vec<Arc<Target>> = Vec::new();
        for t in &spec.targets {
            let id = t.effective_id();
            let existing = st
                .targets
                .iter()
                .find(|x| x.id == id && x.addr == t.addr)
                .cloned();
            let target = match existing {
                Some(x) => {
                    let mut s = x.st();
                    s.weight = t.weight;
                    s.monitor.reconfigure(spec.health.policy());
                    if matches!(s.phase, Phase::Drained(_)) {
                        // Stopped, maybe gone: it must pass its check again.
                        s.monitor = monitor(&spec);
                        s.ever_passed = false;
                    }
                    s.phase = Phase::Desired;
                    drop(s);
                    x
                }
                None => Arc::new(Target {
                    id,
                    addr: t.addr,
                    stats: TargetStats::default(),
                    pool: Pool::default(),
                    st: Mutex::new(TargetSt {
                        weight: t.weight,
                        phase: Phase::Desired,
                        monitor: monitor(&spec),
                        ever_passed: false,
                        checker: None,
                    }),
                }),
            };
            let mut s = target.st();
            if s.checker.is_none() {
                s.checker = Some(spawn_checker(Arc::downgrade(self), Arc::downgrade(&target)));
            }
            drop(s);
            keep.push(target);
        }
        for old in &st.targets {
            if keep.iter().any(|k| Arc::ptr_eq(k, old)) {
                continue;
            }
            let mut s = old.st();
            match s.phase {
                Phase::Desired => s.phase = Phase::Retiring,
                // Drained and left out of the spec twice: forget it.
                Phase::Drained(_) => continue,
                Phase::Retiring | Phase::Draining(_) => {}
            }
            drop(s);
            keep.push(old.clone());
        }
        st.targets = keep;
        drop(st);
        self.reconcile();
    }

    /// Recomputes who serves, moves drains along and publishes a new snapshot when anything changed.
    pub(crate) fn reconcile(&self) {
        let st = self.state();
        let now = Instant::now();
        let prev = self.snapshot();
        let drain_timeout = Duration::from_millis(st.spec.drain_timeout_ms);
        let desired: Vec<(&Arc<Target>, u32, bool, Status)> = st
            .targets
            .iter()
            .filter_map(|t| {
                let s = t.st();
                (s.phase == Phase::Desired)
                    .then(|| (t, s.weight, s.ever_passed, s.monitor.status()))
            })
            .collect();
        let all_zero = desired.iter().all(|d| d.1 == 0);
        let ready = desired.iter().all(|d| d.2 || d.1 == 0)
            && (all_zero || desired.iter().any(|d| d.1 > 0 && d.2));
        let mut picks: Vec<(Arc<Target>, u32)> = if ready {
            let healthy: Vec<_> = desired
                .iter()
                .filter(|d| d.1 > 0 && d.3 == Status::Healthy)
                .map(|d| (d.0.clone(), d.1))
                .collect();
            if healthy.is_empty() {
                // Everyone fails its check: trying them beats refusing every request.
                desired
                    .iter()
                    .filter(|d| d.1 > 0 && d.2)
                    .map(|d| (d.0.clone(), d.1))
                    .collect()
            } else {
                healthy
            }
        } else {
            let serving: Vec<_> = prev
                .picks
                .iter()
                .filter(|(t, _)| matches!(t.st().phase, Phase::Desired | Phase::Retiring))
                .cloned()
                .collect();
            let healthy: Vec<_> = serving
                .iter()
                .filter(|(t, _)| t.st().monitor.status() != Status::Unhealthy)
                .cloned()
                .collect();
            if healthy.is_empty() { serving } else { healthy }
        };
        picks.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let awaiting = picks.is_empty()
            && desired.iter().any(|d| d.1 > 0 && d.3 == Status::Unknown)
            && st.spec.maintenance.is_none();
        drop(desired);
        for t in &st.targets {
            let mut s = t.st();
            let serving = picks.iter().any(|(p, _)| Arc::ptr_eq(p, t));
            if s.phase == Phase::Retiring && (ready || !serving) {
                s.phase = Phase::Draining(now);
                if let Some(c) = s.checker.take() {
                    c.abort();
                }
            }
            if let Phase::Draining(since) = s.phase
                && (t.stats.in_flight() == 0 || now.duration_since(since) >= drain_timeout)
            {
                s.phase = Phase::Drained(now);
                t.pool.clear();
            }
        }
        let mut st = st;
        st.targets.retain(|t| !matches!(t.st().phase, Phase::Drained(at) if now.duration_since(at) >= FORGET_DRAINED_AFTER));
        let same = Arc::ptr_eq(&prev.spec, &st.spec)
            && prev.awaiting == awaiting
            && prev.picks.len() == picks.len()
            && prev
                .picks
                .iter()
                .zip(&picks)
                .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0) && a.1 == b.1);
        if same {
            return;
        }
        let total = picks.iter().map(|p| p.1).sum();
        let snap = Snapshot {
            picks,
            total,
            awaiting,
            maintenance: maintenance_page(&st.spec),
            spec: st.spec.clone(),
        };
        for slot in &self.snapshots {
            *slot.0.write().expect("snapshot lock") = Arc::new(snap.clone());
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Chooses a target of `snap` (its index in `snap.picks`): the one named by the sticky cookie
    /// when it still serves, else by weight. Targets in `exclude` (already failed to connect) are
    /// avoided while others remain. The bool says whether to (re)set the sticky cookie.
    pub(crate) fn pick(
        snap: &Snapshot,
        cookie: Option<&str>,
        exclude: &[usize],
    ) -> Option<(usize, bool)> {
        let n = snap.picks.len();
        if exclude.is_empty() && n == 1 {
            return Some((0, false));
        }
        let sticky = n > 1;
        if let Some(id) = cookie
            && let Some(i) = (0..n).find(|i| snap.picks[*i].0.id == id && !exclude.contains(i))
        {
            return Some((i, false));
        }
        let candidates = (0..n).filter(|i| !exclude.contains(i));
        let total: u32 = candidates.clone().map(|i| snap.picks[i].1).sum();
        let (first, total, all) = match candidates.clone().next() {
            Some(first) => (first, total, false),
            None if n > 0 => (0, snap.total, true),
            None => return None,
        };
        let mut list = (0..n).filter(|i| all || !exclude.contains(i));
        if total == 0 || list.clone().nth(1).is_none() {
            return Some((first, sticky));
        }
        let mut r = u32::try_from(next_random() % u64::from(total)).expect("below a u32 total");
        for i in list.by_ref() {
            let w = snap.picks[i].1;
            if r < w {
                return Some((i, sticky));
            }
            r -= w;
        }
        Some((first, sticky))
    }

    pub(crate) fn status(&self) -> RouteStatus {
        let st = self.state();
        let snap = self.snapshot();
        let targets = st
            .targets
            .iter()
            .map(|t| {
                let s = t.st();
                TargetStatus {
                    id: t.id.clone(),
                    addr: t.addr,
                    weight: s.weight,
                    state: target_state(&snap, t, &s),
                    in_flight: t.stats.in_flight(),
                    requests: t.stats.requests(),
                    responses_5xx: t.stats.responses_5xx(),
                    last_check: s.monitor.last().map(str::to_owned),
                }
            })
            .collect();
        RouteStatus {
            name: self.name.clone(),
            spec: (*st.spec).clone(),
            targets,
        }
    }

    /// Calls `f` with every target's metric series.
    pub(crate) fn series(&self, out: &mut Vec<(String, String, &'static str, Arc<Target>)>) {
        let st = self.state();
        let snap = self.snapshot();
        for t in &st.targets {
            let state = target_state(&snap, t, &t.st());
            out.push((
                self.name.clone(),
                t.id.clone(),
                state_name(state),
                t.clone(),
            ));
        }
    }

    /// Requests in flight on every target of the route.
    pub(crate) fn in_flight(&self) -> u64 {
        self.state()
            .targets
            .iter()
            .map(|t| t.stats.in_flight())
            .sum()
    }

    /// Stops the controller and every health checker (the route was deleted).
    pub(crate) fn shutdown(&self) {
        let mut st = self.state();
        if let Some(c) = st.controller.take() {
            c.abort();
        }
        for t in &st.targets {
            if let Some(c) = t.st().checker.take() {
                c.abort();
            }
        }
    }
}

pub(crate) fn series_of<'a>(
    v: &'a [(String, String, &'static str, Arc<Target>)],
) -> Vec<Series<'a>> {
    v.iter()
        .map(|(r, t, s, target)| Series {
            route: r,
            target: t,
            state: s,
            stats: &target.stats,
        })
        .collect()
}

fn state_name(s: TargetState) -> &'static str {
    match s {
        TargetState::Pending => "pending",
        TargetState::Healthy => "healthy",
        TargetState::Active => "active",
        TargetState::Unhealthy => "unhealthy",
        TargetState::Draining => "draining",
        TargetState::Drained => "drained",
    }
}

fn target_state(snap: &Snapshot, t: &Arc<Target>, s: &TargetSt) -> TargetState {
    match s.phase {
        Phase::Drained(_) => TargetState::Drained,
        Phase::Draining(_) => TargetState::Draining,
        _ if snap.picks.iter().any(|(p, _)| Arc::ptr_eq(p, t)) => TargetState::Active,
        _ => match s.monitor.status() {
            Status::Unknown => TargetState::Pending,
            Status::Healthy => TargetState::Healthy,
            Status::Unhealthy => TargetState::Unhealthy,
        },
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs a target's checks on the schedule its [`Monitor`] sets (interval between the starts of two
/// checks, timeout, start period, thresholds: the health crate's semantics) and republishes the route
/// when the monitor's status changes.
fn spawn_checker(route: Weak<Route>, target: Weak<Target>) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            let (Some(r), Some(t)) = (route.upgrade(), target.upgrade()) else { return };
            let step = t.st().monitor.poll(Instant::now());
            let (attempt, timeout) = match step {
                Step::Wait { until } => {
                    drop(r);
                    drop(t);
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
                Step::Probe { attempt, timeout } => (attempt, timeout),
            };
            let path = r.spec().health.path.clone();
            let addr = t.addr;
            drop(r);
            drop(t);
            let outcome = health::probe(addr, path.as_deref(), timeout).await;
            let (Some(r), Some(t)) = (route.upgrade(), target.upgrade()) else { return };
            let changed = {
                let mut s = t.st();
                let ok = outcome.is_success();
                let changed = s.monitor.record(attempt, Instant::now(), outcome);
                if s.monitor.status() == Status::Healthy {
                    s.ever_passed = true;
                }
                changed.map(|status| (status, ok))
            };
            if let Some((status, ok)) = changed {
                tracing::info!(route = %r.name, target = %t.id, ?status, ok, "health status changed");
                r.reconcile();
            }
        }
    })
    .abort_handle()
}
