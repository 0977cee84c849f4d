//! The strategies driven in a plain loop on a fake clock against a scripted fake world; every trace
//! (events in, actions out, with times) is an insta snapshot.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::{
    Action, Canary, Cause, Config, Error, Event, Gates, HostSpec, Metrics, Outcome, Rollout, Step,
    Strategy, Time, Version,
};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// How one fake host behaves.
#[derive(Debug, Clone, Default)]
struct Behave {
    /// Steps that fail on this host.
    fail: Vec<Step>,
    /// Steps answered only after this long (instead of the world's latency).
    slow: Vec<(Step, Duration)>,
    /// The new containers report unhealthy instead of healthy.
    unhealthy: bool,
    /// The new containers never report anything.
    silent: bool,
    /// The new containers turn unhealthy this long after turning healthy.
    flap_after: Option<Duration>,
    /// The old containers, started again on rollback, report unhealthy.
    old_unhealthy: bool,
    /// From this weight on, the new version fails 10% of requests.
    errors_from: Option<u8>,
    /// From this weight on, the new version's p99 is 2 s.
    slow_from: Option<u8>,
}

struct World {
    hosts: Vec<HostSpec>,
    behave: HashMap<String, Behave>,
    latency: Duration,
    health_delay: Duration,
    abort_at: Option<Time>,
    promote_at: Option<Time>,
    /// Extra events injected at a time (e.g. stale or duplicate ones).
    inject: Vec<(Time, Event)>,
    /// Hold before cleanup; once held, wait this long, then commit (true) or abort (false).
    at_commit: Option<(Duration, bool)>,
}

impl World {
    fn new(n: usize) -> World {
        World {
            hosts: (1..=n)
                .map(|i| HostSpec::new(format!("h{i}"), true))
                .collect(),
            behave: HashMap::new(),
            latency: s(1),
            health_delay: s(3),
            abort_at: None,
            promote_at: None,
            inject: Vec::new(),
            at_commit: None,
        }
    }
    fn first_deploy(mut self) -> World {
        for h in &mut self.hosts {
            h.has_old = false;
        }
        self
    }
    fn host(mut self, name: &str, f: impl FnOnce(&mut Behave)) -> World {
        f(self.behave.entry(name.to_string()).or_default());
        self
    }
}

fn gates() -> Gates {
    Gates {
        min_healthy_time: s(2),
        healthy_deadline: s(30),
        progress_deadline: s(60),
    }
}

fn canary() -> Canary {
    Canary {
        steps: vec![10, 50, 100],
        hold: s(10),
        max_error_rate: 0.01,
        max_p99: Duration::from_millis(500),
    }
}

fn ts(t: Time) -> String {
    format!("{:>4}.{:03}s", t.as_secs(), t.subsec_millis())
}

/// An event due at a time (with a sequence number for ties), dropped if it came from a watcher
/// (host, version, generation) that was stopped since.
type Pending = (Time, u64, Event, Option<(String, Version, u64)>);

/// Runs a rollout to its end; returns the trace and the outcome.
fn run(strategy: Strategy, world: World) -> (String, Outcome) {
    let config = Config {
        strategy,
        gates: gates(),
    };
    let mut r = Rollout::new(config, world.hosts.clone()).expect("valid rollout");
    if world.at_commit.is_some() {
        r = r.hold_before_cleanup();
    }
    let mut commit_at: Option<Time> = None;
    let mut trace = String::new();
    let mut now = Duration::ZERO;
    // Pending events: (time, seq, event, watch generation it depends on).
    let mut pending: Vec<Pending> = Vec::new();
    let mut seq = 0u64;
    let mut watches: HashMap<(String, Version), u64> = HashMap::new();
    let mut generation = 0u64;
    let mut weights: HashMap<String, u8> = HashMap::new();
    let mut abort_at = world.abort_at;
    let mut promote_at = world.promote_at;
    let mut inject = world.inject.clone();
    let mut seen_finished = HashSet::new();
    r.start(now);
    for _ in 0..10_000 {
        while let Some(a) = r.poll_action() {
            writeln!(trace, "{} <- {a}", ts(now)).unwrap();
            match a {
                Action::Finished { outcome } => {
                    assert!(seen_finished.insert(()), "Finished emitted twice");
                    assert!(r.poll_action().is_none(), "actions after Finished");
                    assert_eq!(r.outcome(), Some(&outcome));
                    return (trace, outcome);
                }
                Action::Do { host, step } => {
                    let b = world.behave.get(&host).cloned().unwrap_or_default();
                    let delay = b
                        .slow
                        .iter()
                        .find(|(st, _)| *st == step)
                        .map_or(world.latency, |(_, d)| *d);
                    if let Step::Route { weight } = step {
                        weights.insert(host.clone(), weight);
                    }
                    let ev = if b.fail.contains(&step) {
                        Event::Failed {
                            host,
                            step,
                            reason: "injected failure".into(),
                        }
                    } else if step == Step::Sample {
                        let w = weights.get(&host).copied().unwrap_or(0);
                        let requests = 10 * u64::from(w);
                        let errors = if b.errors_from.is_some_and(|f| w >= f) {
                            requests / 10
                        } else {
                            0
                        };
                        let p99 = if b.slow_from.is_some_and(|f| w >= f) {
                            s(2)
                        } else {
                            Duration::from_millis(20)
                        };
                        Event::Sampled {
                            host,
                            metrics: Metrics {
                                requests,
                                errors,
                                p99,
                            },
                        }
                    } else {
                        Event::Completed { host, step }
                    };
                    seq += 1;
                    pending.push((now + delay, seq, ev, None));
                }
                Action::Watch { host, version } => {
                    generation += 1;
                    watches.insert((host.clone(), version), generation);
                    let b = world.behave.get(&host).cloned().unwrap_or_default();
                    let g = Some((host.clone(), version, generation));
                    let bad = match version {
                        Version::New => b.unhealthy,
                        Version::Old => b.old_unhealthy,
                    };
                    if version == Version::New && b.silent {
                        continue;
                    }
                    let ev = if bad {
                        Event::Unhealthy {
                            host: host.clone(),
                            version,
                            reason: "GET /health: 500".into(),
                        }
                    } else {
                        Event::Healthy {
                            host: host.clone(),
                            version,
                        }
                    };
                    seq += 1;
                    pending.push((now + world.health_delay, seq, ev, g.clone()));
                    if let (Version::New, false, Some(after)) = (version, bad, b.flap_after) {
                        seq += 1;
                        pending.push((
                            now + world.health_delay + after,
                            seq,
                            Event::Unhealthy {
                                host,
                                version,
                                reason: "GET /health: timed out".into(),
                            },
                            g,
                        ));
                    }
                }
                Action::Unwatch { host, version } => {
                    watches.remove(&(host, version));
                }
            }
        }
        if let Some((after, _)) = world.at_commit
            && r.awaiting_commit()
            && commit_at.is_none()
        {
            writeln!(trace, "{} -- held before cleanup", ts(now)).unwrap();
            commit_at = Some(now + after);
        }
        // The next thing to happen: an event, a timer, or a scripted abort/promote/injection.
        let next_event = pending.iter().map(|p| (p.0, p.1)).min();
        let candidates = [
            next_event.map(|e| e.0),
            r.poll_timeout(),
            abort_at,
            promote_at,
            inject.first().map(|i| i.0),
            commit_at.filter(|_| r.awaiting_commit()),
        ];
        let Some(t) = candidates.iter().flatten().min().copied() else {
            panic!("deadlock: nothing pending and no timer\n{trace}");
        };
        assert!(t >= now, "time went backwards");
        now = t;
        if abort_at.is_some_and(|a| a <= now) {
            abort_at = None;
            writeln!(trace, "{} -> abort (ctrl-c)", ts(now)).unwrap();
            r.abort(now, "interrupted");
            continue;
        }
        if let (Some((_, commit)), Some(at)) = (world.at_commit, commit_at)
            && at <= now
            && r.awaiting_commit()
        {
            if commit {
                writeln!(trace, "{} -> commit", ts(now)).unwrap();
                r.commit(now);
            } else {
                writeln!(trace, "{} -> abort (a later service failed)", ts(now)).unwrap();
                r.abort(now, "a later service failed");
            }
            continue;
        }
        if promote_at.is_some_and(|a| a <= now) {
            promote_at = None;
            writeln!(trace, "{} -> promote", ts(now)).unwrap();
            r.promote(now);
            continue;
        }
        if inject.first().is_some_and(|i| i.0 <= now) {
            let (_, ev) = inject.remove(0);
            writeln!(trace, "{} -> {ev} (injected)", ts(now)).unwrap();
            r.handle(now, ev);
            continue;
        }
        if let Some((te, se)) = next_event
            && te <= now
        {
            let i = pending.iter().position(|p| p.0 == te && p.1 == se).unwrap();
            let (_, _, ev, g) = pending.remove(i);
            if let Some((host, version, generation)) = g
                && watches.get(&(host, version)) != Some(&generation)
            {
                continue; // the watcher was stopped: it reports nothing more
            }
            writeln!(trace, "{} -> {ev}", ts(now)).unwrap();
            r.handle(now, ev);
        } else {
            writeln!(trace, "{} -> timeout", ts(now)).unwrap();
            r.handle_timeout(now);
        }
    }
    panic!("rollout did not finish\n{trace}");
}

/// Runs, snapshots the trace (with the outcome last), and returns the outcome.
fn check(name: &str, strategy: Strategy, world: World) -> Outcome {
    let (trace, outcome) = run(strategy, world);
    insta::assert_snapshot!(name, trace);
    outcome
}

fn rolled_back(o: &Outcome) -> &Cause {
    match o {
        Outcome::RolledBack { cause } => cause,
        other => panic!("expected rolled back, got {other}"),
    }
}

const ROLLING1: Strategy = Strategy::Rolling { max_parallel: 1 };

// ---------- recreate ----------

#[test]
fn recreate_succeeds() {
    let o = check(
        "recreate_succeeds",
        Strategy::Recreate { max_parallel: 1 },
        World::new(2),
    );
    assert!(o.is_success());
}

#[test]
fn recreate_first_deploy_has_nothing_to_stop() {
    let o = check(
        "recreate_first_deploy",
        Strategy::Recreate { max_parallel: 2 },
        World::new(2).first_deploy(),
    );
    assert!(o.is_success());
}

#[test]
fn recreate_start_failure_restarts_old() {
    let o = check(
        "recreate_start_fails",
        Strategy::Recreate { max_parallel: 1 },
        World::new(2).host("h2", |b| b.fail.push(Step::StartNew)),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::StepFailed { host, step: Step::StartNew, .. } if host == "h2"
    ));
}

#[test]
fn recreate_unhealthy_restarts_old() {
    let o = check(
        "recreate_unhealthy",
        Strategy::Recreate { max_parallel: 1 },
        World::new(1).host("h1", |b| b.unhealthy = true),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

// ---------- rolling ----------

#[test]
fn rolling_one_host_at_a_time() {
    let o = check("rolling_succeeds", ROLLING1, World::new(3));
    assert!(o.is_success());
}

#[test]
fn rolling_two_hosts_at_a_time() {
    let o = check(
        "rolling_parallel_2",
        Strategy::Rolling { max_parallel: 2 },
        World::new(3),
    );
    assert!(o.is_success());
}

#[test]
fn rolling_first_deploy_routes_without_old() {
    let o = check(
        "rolling_first_deploy",
        ROLLING1,
        World::new(2).first_deploy(),
    );
    assert!(o.is_success());
}

#[test]
fn rolling_unhealthy_new_never_gets_traffic() {
    let o = check(
        "rolling_unhealthy",
        ROLLING1,
        World::new(2).host("h1", |b| b.unhealthy = true),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { host, .. } if host == "h1"));
}

#[test]
fn rolling_silent_new_hits_healthy_deadline() {
    let o = check(
        "rolling_healthy_deadline",
        ROLLING1,
        World::new(1).host("h1", |b| b.silent = true),
    );
    assert!(matches!(rolled_back(&o), Cause::HealthyDeadline { host } if host == "h1"));
}

#[test]
fn rolling_flap_within_min_healthy_time_fails() {
    let o = check(
        "rolling_flap",
        ROLLING1,
        World::new(1).host("h1", |b| b.flap_after = Some(Duration::from_millis(1500))),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

#[test]
fn rolling_failure_on_second_host_reverts_the_first() {
    let o = check(
        "rolling_second_host_fails",
        ROLLING1,
        World::new(3).host("h2", |b| b.unhealthy = true),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { host, .. } if host == "h2"));
}

#[test]
fn rolling_unhealthy_after_switch_reverts_switched_hosts() {
    // h1 switches, then its new containers die while h2 is rolling.
    let o = check(
        "rolling_unhealthy_after_switch",
        ROLLING1,
        World::new(2).host("h1", |b| b.flap_after = Some(s(6))),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { host, .. } if host == "h1"));
}

#[test]
fn rolling_route_failure_reverts() {
    let o = check(
        "rolling_route_fails",
        ROLLING1,
        World::new(2).host("h2", |b| b.fail.push(Step::Route { weight: 100 })),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::StepFailed {
            step: Step::Route { weight: 100 },
            ..
        }
    ));
}

#[test]
fn rolling_stop_old_failure_reverts() {
    let o = check(
        "rolling_stop_old_fails",
        ROLLING1,
        World::new(1).host("h1", |b| b.fail.push(Step::StopOld)),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::StepFailed {
            step: Step::StopOld,
            ..
        }
    ));
}

#[test]
fn rolling_progress_deadline() {
    let o = check(
        "rolling_progress_deadline",
        ROLLING1,
        World::new(2).host("h2", |b| b.slow.push((Step::StartNew, s(90)))),
    );
    assert_eq!(rolled_back(&o), &Cause::ProgressDeadline);
}

#[test]
fn rolling_abort_waits_for_in_flight_step_then_reverts() {
    let mut w = World::new(2);
    w.abort_at = Some(Duration::from_millis(9500)); // h2's StartNew is in flight
    let o = check("rolling_abort", ROLLING1, w);
    assert!(matches!(rolled_back(&o), Cause::Aborted { .. }));
}

#[test]
fn rolling_rollback_fails_when_old_does_not_come_back() {
    let o = check(
        "rolling_rollback_old_unhealthy",
        ROLLING1,
        World::new(2)
            .host("h1", |b| b.old_unhealthy = true)
            .host("h2", |b| b.unhealthy = true),
    );
    match o {
        Outcome::RollbackIncomplete { hosts, .. } => assert_eq!(hosts, vec!["h1".to_string()]),
        other => panic!("expected incomplete rollback, got {other}"),
    }
}

#[test]
fn rolling_rollback_step_failure_is_incomplete() {
    let o = check(
        "rolling_rollback_start_old_fails",
        ROLLING1,
        World::new(2)
            .host("h1", |b| b.fail.push(Step::StartOld))
            .host("h2", |b| b.fail.push(Step::StartNew)),
    );
    assert!(matches!(o, Outcome::RollbackIncomplete { hosts, .. } if hosts == ["h1"]));
}

#[test]
fn cleanup_failure_after_point_of_no_return_is_a_warning() {
    let o = check(
        "rolling_remove_old_fails",
        ROLLING1,
        World::new(2).host("h1", |b| b.fail.push(Step::RemoveOld)),
    );
    match o {
        Outcome::Succeeded { warnings } => assert_eq!(warnings.len(), 1, "{warnings:?}"),
        other => panic!("expected success, got {other}"),
    }
}

#[test]
fn stale_and_unknown_events_are_ignored() {
    let mut w = World::new(1);
    w.inject = vec![
        (
            Duration::from_millis(500),
            Event::Completed {
                host: "h1".into(),
                step: Step::StopOld,
            },
        ),
        (
            Duration::from_millis(600),
            Event::Healthy {
                host: "nowhere".into(),
                version: Version::New,
            },
        ),
    ];
    let o = check("rolling_ignores_stale_events", ROLLING1, w);
    assert!(o.is_success());
}

// ---------- held before cleanup (deploys of several services) ----------

#[test]
fn held_rollout_keeps_old_containers_until_committed() {
    let mut w = World::new(2);
    w.at_commit = Some((s(5), true));
    let o = check("rolling_held_then_committed", ROLLING1, w);
    assert!(o.is_success());
}

#[test]
fn held_rollout_aborted_reverts_every_switched_host() {
    let mut w = World::new(2);
    w.at_commit = Some((s(5), false));
    let o = check("rolling_held_then_aborted", ROLLING1, w);
    assert!(matches!(rolled_back(&o), Cause::Aborted { why } if why == "a later service failed"));
}

#[test]
fn held_first_deploy_aborted_removes_the_new_containers() {
    let mut w = World::new(2).first_deploy();
    w.at_commit = Some((s(1), false));
    let o = check("rolling_first_deploy_held_then_aborted", ROLLING1, w);
    assert!(matches!(rolled_back(&o), Cause::Aborted { .. }));
}

#[test]
fn held_rollout_unhealthy_while_held_reverts() {
    let mut w = World::new(1).host("h1", |b| b.flap_after = Some(s(10)));
    w.at_commit = Some((s(60), true));
    let o = check("rolling_unhealthy_while_held", ROLLING1, w);
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

#[test]
fn held_blue_green_and_canary_commit_after_their_own_gates() {
    let mut w = World::new(1);
    w.at_commit = Some((s(1), true));
    let o = check(
        "blue_green_held_then_committed",
        Strategy::BlueGreen {
            promote_after: Some(s(3)),
        },
        w,
    );
    assert!(o.is_success());
    let mut w = World::new(1);
    w.at_commit = Some((s(1), false));
    let o = check("canary_held_then_aborted", Strategy::Canary(canary()), w);
    assert!(matches!(rolled_back(&o), Cause::Aborted { .. }));
}

// ---------- blue-green ----------

#[test]
fn blue_green_auto_promotes() {
    let o = check(
        "blue_green_succeeds",
        Strategy::BlueGreen {
            promote_after: Some(s(20)),
        },
        World::new(2),
    );
    assert!(o.is_success());
}

#[test]
fn blue_green_waits_for_promotion() {
    let mut w = World::new(2);
    w.promote_at = Some(s(100));
    let o = check(
        "blue_green_manual_promote",
        Strategy::BlueGreen {
            promote_after: None,
        },
        w,
    );
    assert!(o.is_success());
}

#[test]
fn blue_green_switch_back_before_promotion() {
    let mut w = World::new(2);
    w.abort_at = Some(s(30));
    let o = check(
        "blue_green_switch_back",
        Strategy::BlueGreen {
            promote_after: None,
        },
        w,
    );
    assert!(matches!(rolled_back(&o), Cause::Aborted { .. }));
}

#[test]
fn blue_green_one_unhealthy_host_means_no_switch() {
    let o = check(
        "blue_green_unhealthy",
        Strategy::BlueGreen {
            promote_after: Some(s(20)),
        },
        World::new(2).host("h2", |b| b.unhealthy = true),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

#[test]
fn blue_green_unhealthy_after_switch_switches_back() {
    let o = check(
        "blue_green_unhealthy_after_switch",
        Strategy::BlueGreen {
            promote_after: Some(s(20)),
        },
        World::new(2).host("h1", |b| b.flap_after = Some(s(10))),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

// ---------- canary ----------

#[test]
fn canary_steps_through_weights() {
    let o = check("canary_succeeds", Strategy::Canary(canary()), World::new(2));
    assert!(o.is_success());
}

#[test]
fn canary_error_rate_aborts() {
    let o = check(
        "canary_error_rate",
        Strategy::Canary(canary()),
        World::new(2).host("h2", |b| b.errors_from = Some(50)),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::CanaryBounds { weight: 50, .. }
    ));
}

#[test]
fn canary_latency_aborts() {
    let o = check(
        "canary_latency",
        Strategy::Canary(canary()),
        World::new(1).host("h1", |b| b.slow_from = Some(10)),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::CanaryBounds { weight: 10, .. }
    ));
}

#[test]
fn canary_sample_failure_aborts() {
    let o = check(
        "canary_sample_fails",
        Strategy::Canary(canary()),
        World::new(1).host("h1", |b| b.fail.push(Step::Sample)),
    );
    assert!(matches!(
        rolled_back(&o),
        Cause::StepFailed {
            step: Step::Sample,
            ..
        }
    ));
}

#[test]
fn canary_unhealthy_during_hold_aborts() {
    let o = check(
        "canary_unhealthy_during_hold",
        Strategy::Canary(canary()),
        World::new(1).host("h1", |b| b.flap_after = Some(s(8))),
    );
    assert!(matches!(rolled_back(&o), Cause::Unhealthy { .. }));
}

// ---------- configuration ----------

#[test]
fn bad_configurations_are_refused() {
    let cfg = |strategy| Config {
        strategy,
        gates: Gates::default(),
    };
    let hosts = vec![HostSpec::new("h1", true)];
    assert!(matches!(
        Rollout::new(cfg(ROLLING1), vec![]),
        Err(Error::NoHosts)
    ));
    assert!(matches!(
        Rollout::new(
            cfg(ROLLING1),
            vec![HostSpec::new("a", true), HostSpec::new("a", false)]
        ),
        Err(Error::DuplicateHost(h)) if h == "a"
    ));
    assert!(matches!(
        Rollout::new(cfg(Strategy::Rolling { max_parallel: 0 }), hosts.clone()),
        Err(Error::ZeroParallel)
    ));
    for steps in [vec![], vec![50], vec![50, 10, 100], vec![0, 100]] {
        let c = Canary {
            steps: steps.clone(),
            ..canary()
        };
        let e = Rollout::new(cfg(Strategy::Canary(c)), hosts.clone()).unwrap_err();
        assert!(matches!(e, Error::CanarySteps(s) if s == steps));
    }
}

#[test]
fn strategies_by_name() {
    for name in ["recreate", "rolling", "blue-green", "canary"] {
        assert_eq!(Strategy::by_name(name).unwrap().name(), name);
    }
    let e = Strategy::by_name("yolo").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown strategy \"yolo\": expected recreate, rolling, blue-green or canary"
    );
    assert!(!Strategy::by_name("recreate").unwrap().uses_proxy());
    assert!(Strategy::by_name("canary").unwrap().uses_proxy());
}

#[test]
fn actions_and_outcomes_serialize_for_the_json_stream() {
    let a = Action::Do {
        host: "h1".into(),
        step: Step::Route { weight: 10 },
    };
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        r#"{"action":"do","host":"h1","step":{"step":"route","weight":10}}"#
    );
    let o = Outcome::RolledBack {
        cause: Cause::HealthyDeadline { host: "h1".into() },
    };
    assert_eq!(
        serde_json::to_string(&o).unwrap(),
        r#"{"outcome":"rolled-back","cause":{"reason":"healthy-deadline","host":"h1"}}"#
    );
}

// ---------- latency histograms ----------

fn hist(buckets: &[(f64, u64)], count: u64) -> crate::Histogram {
    crate::Histogram {
        buckets: buckets.to_vec(),
        count,
    }
}

#[test]
fn histogram_quantiles_interpolate_like_prometheus() {
    let h = hist(&[(0.01, 50), (0.1, 90), (1.0, 100)], 100);
    let ms = |q: f64| h.quantile(q).map(|d| d.as_micros());
    // Rank 50 is the top of the first bucket; rank 99 is 9/10 into (0.1, 1.0].
    assert_eq!(ms(0.5), Some(10_000));
    assert_eq!(ms(0.99), Some(910_000));
    assert_eq!(ms(0.9), Some(100_000));
    assert_eq!(hist(&[(0.01, 0)], 0).quantile(0.99), None);
    // Everything above the last finite bound: that bound.
    assert_eq!(
        hist(&[(0.01, 0), (0.1, 0)], 7).quantile(0.99),
        Some(Duration::from_millis(100))
    );
}

#[test]
fn histogram_difference_and_merge() {
    let before = hist(&[(0.01, 10), (0.1, 10), (1.0, 10)], 10);
    let after = hist(&[(0.01, 10), (0.1, 10), (1.0, 30)], 31);
    let d = after.since(&before);
    assert_eq!(d, hist(&[(0.01, 0), (0.1, 0), (1.0, 20)], 21));
    // The new requests were all slow: p99 is near the top of (0.1, 1.0], not the old fast ones.
    assert!(d.quantile(0.99).unwrap() > Duration::from_millis(900));
    // A counter reset (proxy restarted) counts from zero.
    assert_eq!(before.since(&after), before);
    let mut m = d.clone();
    m.merge(&hist(&[(0.01, 5), (0.1, 5), (1.0, 5)], 5));
    assert_eq!(m, hist(&[(0.01, 5), (0.1, 5), (1.0, 25)], 26));
}
