//! The rollout state machine shared by every strategy.
//!
//! A strategy is compiled into a list of *stages*. An ops stage runs a list of per-host operations on
//! every host, at most `parallel` hosts at a time (a host runs its operations in order); a gate stage
//! waits (canary hold, canary judgement, blue-green promotion). The last stage is the *final* stage:
//! once it starts the point of no return is passed, and its failures are only warnings.
//!
//! On any failure before the final stage the machine switches to reverting: each host waits for its
//! in-flight step, then undoes what was done on it (known from conservative facts recorded when steps
//! are issued), in the order that keeps the old version serving.

use std::collections::VecDeque;
use std::time::Duration;

use crate::{
    Action, Cause, Config, Error, Event, HostSpec, Metrics, Outcome, Step, Strategy, Time, Version,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Do(Step),
    /// Watch the new containers until healthy for `min_healthy_time`.
    AwaitStable,
    /// Watch the old containers until healthy (rollback).
    AwaitOld,
}

#[derive(Debug, Clone)]
enum Stage {
    Ops {
        ops: Vec<Op>,
        parallel: usize,
        last: bool,
    },
    Hold(Duration),
    Judge {
        weight: u8,
    },
    Promotion(Option<Duration>),
    /// Held before the point of no return until [`Rollout::commit`] (or an abort): the engine
    /// commits every service of a deploy only once all of them are through.
    Commit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cur {
    Idle,
    Doing(Step),
    Probing { deadline: Time },
    Stabilizing { deadline: Time, until: Time },
    AwaitOld { deadline: Time },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revert {
    /// Not reverting (forward mode).
    No,
    /// Waiting for the in-flight forward step before undoing.
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug)]
struct Host {
    spec: HostSpec,
    ops: VecDeque<Op>,
    cur: Cur,
    // Facts, recorded conservatively when a step is issued (a failed step may have half happened).
    new_started: bool,
    routed: bool,
    old_stopped: bool,
    watching_new: bool,
    sample: Option<Metrics>,
    revert: Revert,
}

#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Idle,
    Forward,
    Reverting(Cause),
    Done,
}

/// A rollout of one service across hosts. See the crate documentation for the driving loop.
#[derive(Debug)]
pub struct Rollout {
    config: Config,
    hosts: Vec<Host>,
    stages: VecDeque<Stage>,
    mode: Mode,
    // The running stage.
    current: Option<Stage>,
    waiting: VecDeque<usize>,
    active: usize,
    gate_until: Option<Time>,
    in_final: bool,
    last_progress: Time,
    now: Time,
    actions: VecDeque<Action>,
    outcome: Option<Outcome>,
    warnings: Vec<String>,
    ignored: u64,
}

impl Rollout {
    /// A rollout of `config.strategy` over `hosts` (in this order).
    pub fn new(config: Config, hosts: Vec<HostSpec>) -> Result<Rollout, Error> {
        if hosts.is_empty() {
            return Err(Error::NoHosts);
        }
        for (i, h) in hosts.iter().enumerate() {
            if hosts[..i].iter().any(|o| o.name == h.name) {
                return Err(Error::DuplicateHost(h.name.clone()));
            }
        }
        let all = hosts.len();
        let stages = compile(&config.strategy, all)?;
        Ok(Rollout {
            config,
            hosts: hosts
                .into_iter()
                .map(|spec| Host {
                    spec,
                    ops: VecDeque::new(),
                    cur: Cur::Idle,
                    new_started: false,
                    routed: false,
                    old_stopped: false,
                    watching_new: false,
                    sample: None,
                    revert: Revert::No,
                })
                .collect(),
            stages: stages.into(),
            mode: Mode::Idle,
            current: None,
            waiting: VecDeque::new(),
            active: 0,
            gate_until: None,
            in_final: false,
            last_progress: Duration::ZERO,
            now: Duration::ZERO,
            actions: VecDeque::new(),
            outcome: None,
            warnings: Vec::new(),
            ignored: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Begins the rollout.
    pub fn start(&mut self, now: Time) {
        if self.mode != Mode::Idle {
            return;
        }
        self.now = now;
        self.last_progress = now;
        self.mode = Mode::Forward;
        self.advance();
    }

    /// The next action to perform, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Rollout::handle_timeout`] must be called next, if some deadline or timer is armed.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t: Option<Time> = None;
        let mut arm = |x: Time| t = Some(t.map_or(x, |t| t.min(x)));
        if matches!(self.mode, Mode::Done | Mode::Idle) {
            return None;
        }
        for h in &self.hosts {
            match h.cur {
                Cur::Probing { deadline } | Cur::AwaitOld { deadline } => arm(deadline),
                Cur::Stabilizing { deadline, until } => arm(deadline.min(until)),
                Cur::Idle | Cur::Doing(_) => {}
            }
        }
        if let Some(u) = self.gate_until {
            arm(u);
        }
        if self.progress_deadline_applies() {
            arm(self.last_progress + self.config.gates.progress_deadline);
        }
        t
    }

    /// The outcome, once the rollout is over.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// How many events did not match anything the machine waits for (stale or duplicate).
    pub fn ignored_events(&self) -> u64 {
        self.ignored
    }

    /// Whether the rollout is holding at the blue-green promotion gate.
    pub fn awaiting_promotion(&self) -> bool {
        matches!(self.current, Some(Stage::Promotion(_)))
    }

    /// Holds the rollout before its point of no return (the cleanup stage that removes the old
    /// containers) until [`Rollout::commit`]: every host runs the new version, the old containers
    /// are kept, and [`Rollout::abort`] still reverts every host. A deploy of several services holds
    /// each one here, so that a later service's failure can revert the services already switched.
    #[must_use]
    pub fn hold_before_cleanup(mut self) -> Rollout {
        if !self.stages.iter().any(|s| matches!(s, Stage::Commit)) {
            let at = self.stages.len().saturating_sub(1);
            self.stages.insert(at, Stage::Commit);
        }
        self
    }

    /// Whether the rollout is held before its point of no return (see
    /// [`Rollout::hold_before_cleanup`]).
    pub fn awaiting_commit(&self) -> bool {
        self.mode == Mode::Forward && matches!(self.current, Some(Stage::Commit))
    }

    /// Passes the point of no return of a rollout held by [`Rollout::hold_before_cleanup`]. No
    /// effect unless [`Rollout::awaiting_commit`].
    pub fn commit(&mut self, now: Time) {
        self.now = now;
        if self.awaiting_commit() {
            self.end_gate();
        }
    }

    /// Blue-green: keep the new set and retire the old one. No effect elsewhere.
    pub fn promote(&mut self, now: Time) {
        self.now = now;
        if self.awaiting_promotion() {
            self.end_gate();
        }
    }

    /// Aborts the rollout (Ctrl-C, or a blue-green switch-back): every host goes back to the old
    /// version. No effect once the point of no return is passed.
    pub fn abort(&mut self, now: Time, why: impl Into<String>) {
        self.now = now;
        self.fail(Cause::Aborted { why: why.into() });
    }

    /// Feeds an event.
    pub fn handle(&mut self, now: Time, event: Event) {
        self.now = now;
        if matches!(self.mode, Mode::Idle | Mode::Done) {
            self.ignored += 1;
            return;
        }
        match event {
            Event::Completed { host, step } => {
                let Some(i) = self.find(&host) else { return };
                if self.hosts[i].cur != Cur::Doing(step) || step == Step::Sample {
                    self.ignored += 1;
                    return;
                }
                self.step_done(i);
            }
            Event::Sampled { host, metrics } => {
                let Some(i) = self.find(&host) else { return };
                if self.hosts[i].cur != Cur::Doing(Step::Sample) {
                    self.ignored += 1;
                    return;
                }
                self.hosts[i].sample = Some(metrics);
                self.step_done(i);
            }
            Event::Failed { host, step, reason } => {
                let Some(i) = self.find(&host) else { return };
                if self.hosts[i].cur != Cur::Doing(step) {
                    self.ignored += 1;
                    return;
                }
                self.step_failed(i, step, reason);
            }
            Event::Healthy { host, version } => {
                let Some(i) = self.find(&host) else { return };
                match (self.hosts[i].cur, version) {
                    (Cur::Probing { deadline }, Version::New) => {
                        let until = now + self.config.gates.min_healthy_time;
                        self.hosts[i].cur = Cur::Stabilizing { deadline, until };
                        self.check_timers();
                    }
                    (Cur::AwaitOld { .. }, Version::Old) => {
                        self.emit(Action::Unwatch {
                            host: host.clone(),
                            version: Version::Old,
                        });
                        self.op_done(i);
                    }
                    _ => self.ignored += 1,
                }
            }
            Event::Unhealthy {
                host,
                version,
                reason,
            } => {
                let Some(i) = self.find(&host) else { return };
                match version {
                    Version::New if self.hosts[i].watching_new => {
                        self.fail(Cause::Unhealthy {
                            host,
                            message: reason,
                        });
                    }
                    Version::Old if matches!(self.hosts[i].cur, Cur::AwaitOld { .. }) => {
                        self.emit(Action::Unwatch {
                            host,
                            version: Version::Old,
                        });
                        self.revert_failed(i);
                    }
                    _ => self.ignored += 1,
                }
            }
        }
    }

    /// Fires the timers and deadlines due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.check_timers();
    }

    // ----- internals -----

    fn find(&mut self, host: &str) -> Option<usize> {
        let i = self.hosts.iter().position(|h| h.spec.name == host);
        if i.is_none() {
            self.ignored += 1;
        }
        i
    }

    fn emit(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn progress_deadline_applies(&self) -> bool {
        self.mode == Mode::Forward
            && !self.in_final
            && matches!(self.current, Some(Stage::Ops { .. }))
    }

    fn check_timers(&mut self) {
        let now = self.now;
        // Completions first: a host that stabilised exactly at its deadline made it.
        for i in 0..self.hosts.len() {
            if let Cur::Stabilizing { until, .. } = self.hosts[i].cur
                && until <= now
            {
                self.hosts[i].cur = Cur::Idle;
                self.op_done(i);
            }
        }
        for i in 0..self.hosts.len() {
            match self.hosts[i].cur {
                Cur::Probing { deadline } | Cur::Stabilizing { deadline, .. }
                    if deadline <= now =>
                {
                    let host = self.hosts[i].spec.name.clone();
                    self.fail(Cause::HealthyDeadline { host });
                }
                Cur::AwaitOld { deadline } if deadline <= now => {
                    let host = self.hosts[i].spec.name.clone();
                    self.emit(Action::Unwatch {
                        host,
                        version: Version::Old,
                    });
                    self.revert_failed(i);
                }
                _ => {}
            }
        }
        if self.progress_deadline_applies()
            && self.last_progress + self.config.gates.progress_deadline <= now
        {
            self.fail(Cause::ProgressDeadline);
        }
        if let Some(u) = self.gate_until
            && u <= now
            && self.mode == Mode::Forward
        {
            self.end_gate();
        }
    }

    /// The host's current operation finished well.
    fn step_done(&mut self, i: usize) {
        self.hosts[i].cur = Cur::Idle;
        if self.hosts[i].revert == Revert::Pending {
            self.begin_revert(i);
            return;
        }
        self.op_done(i);
    }

    fn step_failed(&mut self, i: usize, step: Step, reason: String) {
        self.hosts[i].cur = Cur::Idle;
        let host = self.hosts[i].spec.name.clone();
        let reverting = matches!(self.mode, Mode::Reverting(_));
        match (reverting, self.hosts[i].revert) {
            (true, Revert::Pending) => self.begin_revert(i),
            (true, _) => {
                self.warnings
                    .push(format!("{step} failed on {host}: {reason}"));
                self.revert_failed(i);
            }
            _ if self.in_final => {
                self.warnings
                    .push(format!("{step} failed on {host}: {reason}"));
                self.op_done(i);
            }
            _ => self.fail(Cause::StepFailed {
                host,
                step,
                message: reason,
            }),
        }
    }

    /// Moves host `i` to its next operation; when it has none left, its stage (or revert) is done.
    fn op_done(&mut self, i: usize) {
        self.hosts[i].cur = Cur::Idle;
        self.last_progress = self.now;
        if self.start_next_op(i) {
            return;
        }
        match self.mode {
            Mode::Forward => {
                self.active -= 1;
                self.launch_waiting();
                if self.active == 0 && self.waiting.is_empty() {
                    self.end_stage();
                }
            }
            Mode::Reverting(_) => {
                self.hosts[i].revert = Revert::Done;
                self.check_reverted();
            }
            Mode::Idle | Mode::Done => {}
        }
    }

    /// Starts the host's next operation. False when it has none left.
    fn start_next_op(&mut self, i: usize) -> bool {
        let now = self.now;
        let deadline = now + self.config.gates.healthy_deadline;
        let Some(op) = self.hosts[i].ops.pop_front() else {
            return false;
        };
        let host = self.hosts[i].spec.name.clone();
        let h = &mut self.hosts[i];
        match op {
            Op::Do(step) => {
                match step {
                    Step::StartNew => h.new_started = true,
                    Step::Route { weight } => h.routed = weight > 0,
                    Step::StopOld => h.old_stopped = true,
                    Step::StartOld => h.old_stopped = false,
                    Step::Sample => h.sample = None,
                    Step::StopNew | Step::DrainOld | Step::RemoveOld => {}
                }
                h.cur = Cur::Doing(step);
                self.emit(Action::Do { host, step });
            }
            Op::AwaitStable => {
                h.cur = Cur::Probing { deadline };
                if !h.watching_new {
                    h.watching_new = true;
                    self.emit(Action::Watch {
                        host,
                        version: Version::New,
                    });
                }
            }
            Op::AwaitOld => {
                h.cur = Cur::AwaitOld { deadline };
                self.emit(Action::Watch {
                    host,
                    version: Version::Old,
                });
            }
        }
        true
    }

    fn launch_waiting(&mut self) {
        let parallel = match &self.current {
            Some(Stage::Ops { parallel, .. }) => *parallel,
            _ => return,
        };
        while self.active < parallel {
            let Some(i) = self.waiting.pop_front() else {
                break;
            };
            if self.start_next_op(i) {
                self.active += 1;
            }
        }
    }

    fn end_stage(&mut self) {
        self.current = None;
        self.advance();
    }

    fn end_gate(&mut self) {
        self.gate_until = None;
        if let Some(Stage::Judge { weight }) = self.current {
            let mut total = Metrics::default();
            for h in &self.hosts {
                let m = h.sample.unwrap_or_default();
                total.requests += m.requests;
                total.errors += m.errors;
                total.p99 = total.p99.max(m.p99);
            }
            if let Strategy::Canary(c) = &self.config.strategy {
                let rate = if total.requests == 0 {
                    0.0
                } else {
                    total.errors as f64 / total.requests as f64
                };
                if rate > c.max_error_rate || total.p99 > c.max_p99 {
                    self.fail(Cause::CanaryBounds {
                        weight,
                        requests: total.requests,
                        errors: total.errors,
                        p99_ms: total.p99.as_millis() as u64,
                    });
                    return;
                }
            }
        }
        self.last_progress = self.now;
        self.current = None;
        self.advance();
    }

    /// Starts stages until one has something to wait for, or finishes.
    fn advance(&mut self) {
        while self.mode == Mode::Forward && self.current.is_none() {
            let Some(stage) = self.stages.pop_front() else {
                let warnings = std::mem::take(&mut self.warnings);
                self.finish(Outcome::Succeeded { warnings });
                return;
            };
            self.last_progress = self.now;
            match &stage {
                Stage::Ops { ops, last, .. } => {
                    if *last {
                        self.in_final = true;
                        for i in 0..self.hosts.len() {
                            if self.hosts[i].watching_new {
                                self.hosts[i].watching_new = false;
                                let host = self.hosts[i].spec.name.clone();
                                self.emit(Action::Unwatch {
                                    host,
                                    version: Version::New,
                                });
                            }
                        }
                    }
                    self.waiting.clear();
                    self.active = 0;
                    for (i, h) in self.hosts.iter_mut().enumerate() {
                        h.ops = ops
                            .iter()
                            .copied()
                            .filter(|op| h.spec.has_old || !needs_old(*op))
                            .collect();
                        if !h.ops.is_empty() {
                            self.waiting.push_back(i);
                        }
                    }
                    if self.waiting.is_empty() {
                        continue;
                    }
                    self.current = Some(stage);
                    self.launch_waiting();
                }
                Stage::Hold(d) => {
                    self.gate_until = Some(self.now + *d);
                    self.current = Some(stage);
                }
                Stage::Judge { .. } => {
                    self.current = Some(stage);
                    self.end_gate();
                }
                Stage::Promotion(after) => {
                    self.gate_until = after.map(|d| self.now + d);
                    self.current = Some(stage);
                }
                Stage::Commit => self.current = Some(stage),
            }
        }
    }

    /// Something went wrong: revert every host, unless the point of no return is passed.
    fn fail(&mut self, cause: Cause) {
        if self.mode != Mode::Forward || self.in_final {
            return;
        }
        self.mode = Mode::Reverting(cause);
        self.current = None;
        self.stages.clear();
        self.waiting.clear();
        self.gate_until = None;
        for i in 0..self.hosts.len() {
            if self.hosts[i].watching_new {
                self.hosts[i].watching_new = false;
                let host = self.hosts[i].spec.name.clone();
                self.emit(Action::Unwatch {
                    host,
                    version: Version::New,
                });
            }
            self.hosts[i].ops.clear();
            // Every host is pending before any starts, so none looks finished too early.
            self.hosts[i].revert = Revert::Pending;
        }
        for i in 0..self.hosts.len() {
            if !matches!(self.hosts[i].cur, Cur::Doing(_)) {
                self.hosts[i].cur = Cur::Idle;
                self.begin_revert(i);
            }
        }
        self.check_reverted();
    }

    fn begin_revert(&mut self, i: usize) {
        let recreate = matches!(self.config.strategy, Strategy::Recreate { .. });
        let h = &mut self.hosts[i];
        let mut ops = VecDeque::new();
        if recreate {
            if h.new_started {
                ops.push_back(Op::Do(Step::StopNew));
            }
            if h.old_stopped && h.spec.has_old {
                ops.push_back(Op::Do(Step::StartOld));
            }
        } else {
            if h.routed && h.spec.has_old {
                if h.old_stopped {
                    ops.push_back(Op::Do(Step::StartOld));
                    ops.push_back(Op::AwaitOld);
                }
                ops.push_back(Op::Do(Step::Route { weight: 0 }));
            }
            if h.new_started {
                ops.push_back(Op::Do(Step::StopNew));
            }
        }
        h.ops = ops;
        h.revert = Revert::Running;
        if !self.start_next_op(i) {
            self.hosts[i].revert = Revert::Done;
        }
        self.check_reverted();
    }

    fn revert_failed(&mut self, i: usize) {
        self.hosts[i].cur = Cur::Idle;
        self.hosts[i].ops.clear();
        self.hosts[i].revert = Revert::Failed;
        self.check_reverted();
    }

    fn check_reverted(&mut self) {
        let Mode::Reverting(cause) = &self.mode else {
            return;
        };
        if self
            .hosts
            .iter()
            .any(|h| matches!(h.revert, Revert::Pending | Revert::Running))
        {
            return;
        }
        let cause = cause.clone();
        let failed: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.revert == Revert::Failed)
            .map(|h| h.spec.name.clone())
            .collect();
        let outcome = if failed.is_empty() {
            Outcome::RolledBack { cause }
        } else {
            Outcome::RollbackIncomplete {
                cause,
                hosts: failed,
            }
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.mode = Mode::Done;
        self.current = None;
        self.gate_until = None;
        self.outcome = Some(outcome.clone());
        self.emit(Action::Finished { outcome });
    }
}

fn needs_old(op: Op) -> bool {
    matches!(
        op,
        Op::Do(Step::StopOld | Step::DrainOld | Step::RemoveOld | Step::StartOld) | Op::AwaitOld
    )
}

fn compile(strategy: &Strategy, all: usize) -> Result<Vec<Stage>, Error> {
    use Op::{AwaitStable, Do};
    let ops = |ops: Vec<Op>, parallel: usize, last: bool| Stage::Ops {
        ops,
        parallel,
        last,
    };
    let retire = vec![Do(Step::DrainOld), Do(Step::StopOld), Do(Step::RemoveOld)];
    Ok(match strategy {
        Strategy::Recreate { max_parallel } => {
            if *max_parallel == 0 {
                return Err(Error::ZeroParallel);
            }
            vec![
                ops(
                    vec![Do(Step::StopOld), Do(Step::StartNew), AwaitStable],
                    *max_parallel,
                    false,
                ),
                ops(vec![Do(Step::RemoveOld)], all, true),
            ]
        }
        Strategy::Rolling { max_parallel } => {
            if *max_parallel == 0 {
                return Err(Error::ZeroParallel);
            }
            vec![
                ops(
                    vec![
                        Do(Step::StartNew),
                        AwaitStable,
                        Do(Step::Route { weight: 100 }),
                        Do(Step::DrainOld),
                        Do(Step::StopOld),
                    ],
                    *max_parallel,
                    false,
                ),
                ops(vec![Do(Step::RemoveOld)], all, true),
            ]
        }
        Strategy::BlueGreen { promote_after } => vec![
            ops(vec![Do(Step::StartNew), AwaitStable], all, false),
            ops(vec![Do(Step::Route { weight: 100 })], all, false),
            Stage::Promotion(*promote_after),
            ops(retire, all, true),
        ],
        Strategy::Canary(c) => {
            let ok = !c.steps.is_empty()
                && c.steps.last() == Some(&100)
                && c.steps.windows(2).all(|w| w[0] < w[1])
                && c.steps[0] >= 1;
            if !ok {
                return Err(Error::CanarySteps(c.steps.clone()));
            }
            let mut v = vec![ops(vec![Do(Step::StartNew), AwaitStable], all, false)];
            for &weight in &c.steps {
                v.push(ops(vec![Do(Step::Route { weight })], all, false));
                v.push(Stage::Hold(c.hold));
                v.push(ops(vec![Do(Step::Sample)], all, false));
                v.push(Stage::Judge { weight });
            }
            v.push(ops(retire, all, true));
            v
        }
    })
}
