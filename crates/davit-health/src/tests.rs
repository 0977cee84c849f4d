//! Unit tests: the verdict machine on a fake clock (traces of what it was told and what it said,
//! snapshotted), durations, status ranges, targets, and the compose mapping.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a fake endpoint answers to a probe started at `at`: its latency and what it says.
type Answer = (Duration, Outcome);

fn ok(latency: u64) -> Answer {
    (ms(latency), Outcome::Success("200 OK".into()))
}

fn fail(latency: u64) -> Answer {
    (
        ms(latency),
        Outcome::Failure("503 Service Unavailable".into()),
    )
}

fn refused() -> Answer {
    (ms(1), Outcome::Failure("connection refused".into()))
}

/// The result of driving a machine against a fake endpoint on a fake clock.
struct Run {
    trace: String,
    verdict: Verdict,
    verdict_at: Duration,
    /// Start times of every probe.
    probes: Vec<Duration>,
}

/// Drives a machine: every `Probe` is answered by `endpoint` (called with the probe's start time
/// and number) after its latency, unless the latency reaches the timeout, in which case the fake
/// clock jumps to the wake-up time the machine asks for and the answer never arrives.
fn drive(policy: Policy, mut endpoint: impl FnMut(Duration, u32) -> Answer) -> Run {
    let t0 = Instant::now();
    let mut m = Machine::new(policy, t0);
    let mut now = t0;
    let mut trace = String::new();
    let mut probes = Vec::new();
    let fmt = |t: Instant| format_duration(t - t0);
    for _ in 0..10_000 {
        match m.poll(now) {
            Action::Probe { attempt, timeout } => {
                probes.push(now - t0);
                let (latency, outcome) = endpoint(now - t0, attempt);
                writeln!(
                    trace,
                    "{:>7} probe #{attempt} (timeout {})",
                    fmt(now),
                    format_duration(timeout)
                )
                .unwrap();
                if latency >= timeout {
                    writeln!(
                        trace,
                        "{:>7}   #{attempt} would answer after {}",
                        "",
                        format_duration(latency)
                    )
                    .unwrap();
                    continue;
                }
                now += latency;
                writeln!(trace, "{:>7}   #{attempt} {outcome:?}", fmt(now)).unwrap();
                m.record(attempt, now, outcome);
            }
            Action::Wait { until } => {
                assert!(
                    until > now,
                    "the machine must not ask to wait for the past: {}",
                    fmt(until)
                );
                writeln!(trace, "{:>7} wait until {}", fmt(now), fmt(until)).unwrap();
                now = until;
            }
            Action::Verdict(v) => {
                let (same, at) = m.verdict().unwrap();
                assert_eq!(same, &v);
                writeln!(trace, "{:>7} verdict: {v}", fmt(at)).unwrap();
                assert_eq!(
                    m.poll(now + secs(3600)),
                    Action::Verdict(v.clone()),
                    "a verdict is final"
                );
                return Run {
                    trace,
                    verdict: v,
                    verdict_at: at - t0,
                    probes,
                };
            }
        }
    }
    panic!("no verdict after 10000 steps:\n{trace}");
}

fn policy(interval: u64, timeout: u64, success: u32, failure: u32) -> Policy {
    Policy {
        interval: ms(interval),
        timeout: ms(timeout),
        success_threshold: success,
        failure_threshold: failure,
        ..Policy::default()
    }
}

#[test]
fn kubernetes_defaults() {
    let p = Policy::default();
    assert_eq!(
        (
            p.initial_delay,
            p.start_period,
            p.interval,
            p.timeout,
            p.success_threshold,
            p.failure_threshold
        ),
        (Duration::ZERO, Duration::ZERO, secs(10), secs(1), 1, 3)
    );
    assert_eq!((p.min_healthy_time, p.deadline), (Duration::ZERO, None));
}

#[test]
fn healthy_at_once() {
    let run = drive(Policy::default(), |_, _| ok(5));
    insta::assert_snapshot!(run.trace);
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(5)));
}

#[test]
fn turns_healthy_after_a_delay() {
    let p = Policy {
        deadline: Some(secs(30)),
        failure_threshold: 100,
        ..policy(1000, 500, 1, 3)
    };
    let run = drive(p, |at, _| if at >= ms(3500) { ok(10) } else { refused() });
    insta::assert_snapshot!(run.trace);
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(4010)));
}

/// Wherever health arrives, the machine sees it within one interval (plus the probe's latency).
#[test]
fn detects_health_within_one_interval_of_it_arriving() {
    for interval in [100, 1000, 10_000] {
        for arrives in [0, 1, 99, 250, 999, 1000, 1001, 4321, 25_000] {
            let p = Policy {
                failure_threshold: u32::MAX,
                ..policy(interval, 50, 1, 3)
            };
            let run = drive(p, |at, _| if at >= ms(arrives) { ok(7) } else { fail(7) });
            assert!(run.verdict.is_healthy());
            let late = run.verdict_at - ms(arrives);
            assert!(
                late <= ms(interval + 7),
                "interval {interval}, arrived {arrives}: seen {late:?} late"
            );
            // ...and not by luck: no probe was skipped.
            assert!(
                run.probes.windows(2).all(|w| w[1] - w[0] == ms(interval)),
                "{:?}",
                run.probes
            );
        }
    }
}

#[test]
fn failure_threshold_counts_consecutive_failures_only() {
    // fail, fail, ok, fail, fail, fail: the success resets the count.
    let script = [false, false, true, false, false, false];
    let run = drive(policy(1000, 500, 1, 3), |_, n| {
        if script[n as usize - 1] {
            (ms(2), Outcome::Success("ok".into()))
        } else {
            fail(2)
        }
    });
    // A success with threshold 1 is healthy at once; use threshold 2 to see the reset.
    assert!(run.verdict.is_healthy());
    let run = drive(policy(1000, 500, 2, 3), |_, n| {
        if script[n as usize - 1] {
            (ms(2), Outcome::Success("ok".into()))
        } else {
            fail(2)
        }
    });
    insta::assert_snapshot!(run.trace);
    assert_eq!(run.probes.len(), 6);
    assert!(matches!(
        run.verdict,
        Verdict::Unhealthy {
            reason: Reason::Failures { count: 3, .. }
        }
    ));
}

#[test]
fn success_threshold_needs_consecutive_successes() {
    // ok, fail, ok, ok, ok
    let script = [true, false, true, true, true];
    let run = drive(policy(1000, 500, 3, 5), |_, n| {
        if script[n as usize - 1] {
            ok(3)
        } else {
            fail(3)
        }
    });
    insta::assert_snapshot!(run.trace);
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(4003)));
}

#[test]
fn flapping_endpoint_never_settles_and_meets_the_deadline() {
    let p = Policy {
        deadline: Some(secs(10)),
        ..policy(1000, 500, 2, 2)
    };
    let run = drive(p, |_, n| if n % 2 == 1 { ok(4) } else { fail(4) });
    insta::assert_snapshot!(run.trace);
    assert_eq!(run.verdict_at, secs(10));
    match run.verdict {
        Verdict::Unhealthy {
            reason: Reason::Deadline { after, last },
        } => {
            assert_eq!(after, secs(10));
            assert!(last.is_some());
        }
        v => panic!("{v}"),
    }
}

#[test]
fn slow_answers_beyond_the_timeout_are_failures() {
    let run = drive(policy(1000, 300, 1, 3), |_, _| ok(800));
    insta::assert_snapshot!(run.trace);
    match &run.verdict {
        Verdict::Unhealthy {
            reason: Reason::Failures { count: 3, last },
        } => assert_eq!(last, "timed out after 300ms"),
        v => panic!("{v}"),
    }
    // Timed out at 300 ms, 1.3 s, 2.3 s: the next probe still starts an interval after the last.
    assert_eq!(run.probes, vec![ms(0), ms(1000), ms(2000)]);
    assert_eq!(run.verdict_at, ms(2300));
}

#[test]
fn a_success_reported_after_the_timeout_counts_as_a_failure() {
    let t0 = Instant::now();
    let mut m = Machine::new(
        Policy {
            failure_threshold: 1,
            ..policy(1000, 300, 1, 1)
        },
        t0,
    );
    let Action::Probe { attempt, timeout } = m.poll(t0) else {
        panic!()
    };
    assert_eq!(timeout, ms(300));
    m.record(attempt, t0 + ms(301), Outcome::Success("200 OK".into()));
    match m.poll(t0 + ms(301)) {
        Action::Verdict(Verdict::Unhealthy { reason }) => {
            assert_eq!(
                reason.to_string(),
                "1 consecutive failures, last: timed out after 300ms"
            )
        }
        a => panic!("{a:?}"),
    }
    // ...while an answer exactly at the timeout still counts.
    let mut m = Machine::new(policy(1000, 300, 1, 1), t0);
    let Action::Probe { attempt, .. } = m.poll(t0) else {
        panic!()
    };
    m.record(attempt, t0 + ms(300), Outcome::Success("200 OK".into()));
    assert_eq!(m.poll(t0 + ms(300)), Action::Verdict(Verdict::Healthy));
}

#[test]
fn answers_of_other_or_timed_out_attempts_are_ignored() {
    let t0 = Instant::now();
    let mut m = Machine::new(policy(1000, 300, 1, 3), t0);
    let Action::Probe { attempt: 1, .. } = m.poll(t0) else {
        panic!()
    };
    m.record(7, t0 + ms(10), Outcome::Success("stray".into()));
    assert_eq!(
        m.poll(t0 + ms(10)),
        Action::Wait {
            until: t0 + ms(300)
        }
    );
    // The timeout passes: the machine counts the failure itself, then a late success changes nothing.
    assert_eq!(
        m.poll(t0 + ms(300)),
        Action::Wait {
            until: t0 + ms(1000)
        }
    );
    m.record(1, t0 + ms(400), Outcome::Success("late".into()));
    assert!(!m.is_passing());
    assert_eq!(
        m.poll(t0 + ms(1000)),
        Action::Probe {
            attempt: 2,
            timeout: ms(300)
        }
    );
}

#[test]
fn start_period_failures_do_not_count_but_successes_do() {
    let p = Policy {
        start_period: secs(5),
        ..policy(1000, 500, 1, 2)
    };
    // Refused for 7 s: the failures at 0..=4 s are forgiven, those at 5 s and 6 s are not.
    let run = drive(
        p.clone(),
        |at, _| if at >= secs(7) { ok(1) } else { refused() },
    );
    insta::assert_snapshot!("start_period_failing", run.trace);
    assert!(matches!(
        run.verdict,
        Verdict::Unhealthy {
            reason: Reason::Failures { count: 2, .. }
        }
    ));
    assert_eq!(run.verdict_at, ms(6001));
    // Healthy at 6 s: one counted failure at 5 s, then the success.
    let run = drive(
        p.clone(),
        |at, _| if at >= secs(6) { ok(1) } else { refused() },
    );
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(6001)));
    // A success inside the start period is healthy at once.
    let run = drive(p, |at, _| if at >= secs(2) { ok(1) } else { refused() });
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(2001)));
}

#[test]
fn initial_delay_holds_the_first_probe() {
    let p = Policy {
        initial_delay: secs(4),
        ..policy(1000, 500, 1, 1)
    };
    let run = drive(p, |_, _| ok(2));
    insta::assert_snapshot!(run.trace);
    assert_eq!(run.probes, vec![secs(4)]);
}

#[test]
fn min_healthy_time_requires_passing_without_a_failure() {
    let p = Policy {
        min_healthy_time: secs(3),
        ..policy(1000, 500, 1, 5)
    };
    // Passes from 0, one failure at 2 s, then passes for good from 3 s: healthy at 3 s + 3 s.
    let run = drive(
        p.clone(),
        |at, _| if at == secs(2) { fail(2) } else { ok(2) },
    );
    insta::assert_snapshot!(run.trace);
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(6002)));
    // Always passing: healthy exactly min_healthy_time after the first success.
    let run = drive(p, |_, _| ok(2));
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(3002)));
}

#[test]
fn min_healthy_time_beyond_the_deadline_is_unhealthy() {
    let p = Policy {
        min_healthy_time: secs(10),
        deadline: Some(secs(5)),
        ..policy(1000, 500, 1, 3)
    };
    let run = drive(p, |_, _| ok(2));
    assert_eq!(run.verdict_at, secs(5));
    assert!(!run.verdict.is_healthy());
}

#[test]
fn deadline_gives_up_exactly_at_the_deadline() {
    // Never answers, huge failure threshold: only the deadline ends it, to the millisecond, even
    // though a probe is in flight then (its timeout is cut at the deadline).
    for deadline in [1, 999, 1000, 2500, 7001] {
        let p = Policy {
            deadline: Some(ms(deadline)),
            ..policy(1000, 700, 1, 1000)
        };
        let run = drive(p, |_, _| (secs(3600), Outcome::Success("never".into())));
        assert_eq!(run.verdict_at, ms(deadline), "{}", run.trace);
        assert!(!run.verdict.is_healthy());
    }
    let p = Policy {
        deadline: Some(ms(2500)),
        ..policy(1000, 700, 1, 1000)
    };
    let run = drive(p, |_, _| (secs(3600), Outcome::Success("never".into())));
    insta::assert_snapshot!(run.trace);
}

#[test]
fn an_answer_after_the_deadline_is_too_late() {
    let t0 = Instant::now();
    let mut m = Machine::new(
        Policy {
            deadline: Some(secs(2)),
            ..policy(1000, 5000, 1, 3)
        },
        t0,
    );
    let Action::Probe { attempt, timeout } = m.poll(t0 + ms(1500)) else {
        panic!()
    };
    assert_eq!(timeout, ms(500), "the timeout is cut at the deadline");
    m.record(attempt, t0 + ms(2100), Outcome::Success("200 OK".into()));
    let Some((Verdict::Unhealthy { reason }, at)) = m.verdict() else {
        panic!()
    };
    assert_eq!(at, t0 + secs(2));
    assert_eq!(
        reason.to_string(),
        "not healthy within the deadline of 2s, last: timed out after 500ms"
    );
}

#[test]
fn pending_breaks_a_streak_but_is_not_a_failure() {
    let run = drive(policy(1000, 500, 2, 1), |_, n| match n {
        1 | 3 | 4 => ok(1),
        _ => (
            ms(1),
            Outcome::Pending("docker healthcheck: starting".into()),
        ),
    });
    insta::assert_snapshot!(run.trace);
    assert_eq!((run.verdict, run.verdict_at), (Verdict::Healthy, ms(3001)));
}

#[test]
fn zero_thresholds_and_interval_are_normalised() {
    let p = Policy {
        success_threshold: 0,
        failure_threshold: 0,
        interval: Duration::ZERO,
        ..Policy::default()
    };
    let run = drive(p.clone(), |_, _| fail(0));
    assert!(matches!(
        run.verdict,
        Verdict::Unhealthy {
            reason: Reason::Failures { count: 1, .. }
        }
    ));
    let run = drive(
        Policy {
            failure_threshold: 5,
            ..p
        },
        |_, n| if n == 1 { fail(0) } else { ok(0) },
    );
    // A zero interval is 1 ms: the machine cannot spin.
    assert_eq!(run.probes, vec![ms(0), ms(1)]);
}

#[test]
fn durations_parse_and_format() {
    let cases = [
        ("100ms", ms(100)),
        ("2s", secs(2)),
        ("1m", secs(60)),
        ("1h", secs(3600)),
        ("1m30s", secs(90)),
        ("1.5s", ms(1500)),
        ("0", Duration::ZERO),
        ("250us", Duration::from_micros(250)),
    ];
    for (text, d) in cases {
        assert_eq!(parse_duration(text), Ok(d), "{text}");
    }
    for bad in ["", "5", "s", "2x", "-1s", "1.2.3s", "ms100"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
    }
    let formatted: Vec<String> = [
        Duration::ZERO,
        ms(250),
        secs(2),
        ms(1500),
        secs(90),
        secs(60),
        ms(61_250),
    ]
    .map(format_duration)
    .into();
    assert_eq!(
        formatted,
        ["0s", "250ms", "2s", "1.5s", "1m30s", "1m", "1m1.25s"]
    );
    for s in &formatted {
        assert_eq!(format_duration(parse_duration(s).unwrap()), *s);
    }
}

#[test]
fn status_ranges() {
    let parse = |s: &str| s.parse::<StatusRange>();
    assert_eq!(parse("200"), Ok(StatusRange { min: 200, max: 200 }));
    assert_eq!(parse("200-299"), Ok(StatusRange { min: 200, max: 299 }));
    assert_eq!(parse("2xx"), Ok(StatusRange { min: 200, max: 299 }));
    for bad in ["", "abc", "299-200", "6xx", "99", "600", "2xx-3xx"] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let default = StatusRange::default();
    assert!(
        default.contains(200)
            && default.contains(399)
            && !default.contains(400)
            && !default.contains(199)
    );
}

fn target(s: &str) -> String {
    match parse_target(s) {
        Ok(t) => {
            let kind = match &t.probe {
                Probe::Http(h) => format!(
                    "http host={} port={} path={} tls={}",
                    h.host(),
                    h.port(),
                    h.url.path(),
                    h.is_https()
                ),
                Probe::Tcp { host, port } => format!("tcp host={host} port={port}"),
                Probe::Container { container } => format!("container {container}"),
                other => format!("{other:?}"),
            };
            format!("{kind} docker_host={:?}", t.docker_host)
        }
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn targets() {
    let cases = [
        "http://127.0.0.1:8080/health",
        "https://example.test/",
        "tcp://127.0.0.1:5432",
        "tcp://[::1]:22",
        "container://web-1",
        "container://web-1@ssh://root@10.77.4.2:22",
        "container://web-1@unix:///run/docker.sock",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:80/path",
        "ftp://x",
        "localhost:80",
        "container://",
        "container://-x",
        "container://web@gopher://x",
        "http://",
    ];
    let out: String = cases
        .iter()
        .map(|c| format!("{c}\n  => {}\n", target(c)))
        .collect();
    insta::assert_snapshot!(out);
}

#[test]
fn probe_display_is_the_target() {
    for t in [
        "tcp://127.0.0.1:5432",
        "tcp://[::1]:22",
        "container://web-1",
        "http://127.0.0.1:8080/health",
    ] {
        assert_eq!(parse_target(t).unwrap().probe.to_string(), t);
    }
}

#[test]
fn events_serialise_as_flat_json_lines() {
    let events = [
        Event::Attempt {
            attempt: 1,
            at_ms: 0,
            target: "tcp://127.0.0.1:1".into(),
        },
        Event::result(
            1,
            ms(12),
            ms(12),
            &Outcome::Failure("connection refused".into()),
        ),
        Event::verdict(
            ms(20),
            &Verdict::Unhealthy {
                reason: Reason::Failures {
                    count: 1,
                    last: "x".into(),
                },
            },
        ),
        Event::verdict(ms(30), &Verdict::Healthy),
    ];
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn compose_mapping() {
    let hc = Healthcheck {
        test: vec!["CMD".into(), "/davit-demo".into(), "check".into()],
        interval: Some(secs(2)),
        timeout: Some(secs(3)),
        retries: Some(5),
        start_period: Some(secs(20)),
        disable: false,
    };
    let http = HttpCheck {
        host: "172.30.4.5".into(),
        port: 8080,
        path: "health".into(),
    };
    let out = [
        (
            "healthcheck only",
            ServiceHealth::from_compose("web-1", Some(&hc), None),
        ),
        (
            "http only",
            ServiceHealth::from_compose("web-1", None, Some(&http)),
        ),
        (
            "both: http wins, with the healthcheck's timing",
            ServiceHealth::from_compose("web-1", Some(&hc), Some(&http)),
        ),
        (
            "disabled",
            ServiceHealth::from_compose(
                "web-1",
                Some(&Healthcheck {
                    disable: true,
                    ..hc.clone()
                }),
                None,
            ),
        ),
        (
            "NONE",
            ServiceHealth::from_compose(
                "web-1",
                Some(&Healthcheck {
                    test: vec!["NONE".into()],
                    ..hc.clone()
                }),
                None,
            ),
        ),
        ("neither", ServiceHealth::from_compose("web-1", None, None)),
        (
            "timing only: docker defaults",
            ServiceHealth::from_compose("web-1", Some(&Healthcheck::default()), None),
        ),
    ];
    let text: String = out
        .iter()
        .map(|(name, s)| format!("## {name}\n{s:#?}\n"))
        .collect();
    insta::assert_snapshot!(text);
}

#[test]
fn error_display_names_the_target_and_what_to_do() {
    let e = parse_target("tcp://127.0.0.1").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"bad probe target "tcp://127.0.0.1": missing port: write tcp://host:port"#
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            (0u64..3000, 0u64..5000, 10u64..2000, 1u64..3000),
            (1u32..5, 1u32..5, 0u64..3000, 1u64..20_000),
        )
            .prop_map(
                |((delay, start, interval, timeout), (succ, fail, min_healthy, deadline))| Policy {
                    initial_delay: ms(delay),
                    start_period: ms(start),
                    interval: ms(interval),
                    timeout: ms(timeout),
                    success_threshold: succ,
                    failure_threshold: fail,
                    min_healthy_time: ms(min_healthy),
                    deadline: Some(ms(deadline)),
                },
            )
    }

    fn arb_answer() -> impl Strategy<Value = (u64, u8)> {
        (0u64..4000, 0u8..3)
    }

    fn answer((latency, kind): (u64, u8)) -> Answer {
        let outcome = match kind {
            0 => Outcome::Success("ok".into()),
            1 => Outcome::Failure("bad".into()),
            _ => Outcome::Pending("starting".into()),
        };
        (ms(latency), outcome)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the endpoint does: the verdict comes by the deadline, probes start no sooner
        /// than the initial delay and an interval apart, and the verdict matches its reason.
        #[test]
        fn verdicts_respect_the_policy(policy in arb_policy(), script in proptest::collection::vec(arb_answer(), 1..40)) {
            let run = drive(policy.clone(), |_, n| answer(script[(n as usize - 1) % script.len()]));
            prop_assert!(run.verdict_at <= policy.deadline.unwrap(), "{}", run.trace);
            prop_assert!(run.probes.first().is_none_or(|p| *p >= policy.initial_delay));
            prop_assert!(run.probes.windows(2).all(|w| w[1] - w[0] >= policy.interval), "{}", run.trace);
            let successes = script.iter().any(|(latency, kind)| *kind == 0 && ms(*latency) <= policy.timeout);
            match &run.verdict {
                Verdict::Healthy => prop_assert!(successes, "{}", run.trace),
                Verdict::Unhealthy { reason: Reason::Failures { count, .. } } => {
                    prop_assert_eq!(*count, policy.failure_threshold)
                }
                Verdict::Unhealthy { reason: Reason::Deadline { .. } } => {
                    prop_assert_eq!(run.verdict_at, policy.deadline.unwrap())
                }
            }
        }

        /// Health arriving at any time is seen within one interval (plus the answer's latency).
        #[test]
        fn health_is_seen_within_one_interval(
            interval in 2u64..5000,
            periods in 0u64..50,
            phase_pct in 0u64..100,
            latency_pct in 0u64..100,
        ) {
            // Arrives at any phase of any of the first 50 intervals.
            let arrives = interval * periods + interval * phase_pct / 100;
            let latency = interval * latency_pct / 100;
            let policy = Policy {
                interval: ms(interval),
                timeout: ms(interval),
                failure_threshold: u32::MAX,
                ..Policy::default()
            };
            let run = drive(policy, |at, _| {
                let outcome = if at >= ms(arrives) { Outcome::Success("ok".into()) } else { Outcome::Failure("no".into()) };
                (ms(latency), outcome)
            });
            prop_assert!(run.verdict.is_healthy());
            prop_assert!(run.verdict_at <= ms(arrives + interval + latency), "{}", run.trace);
        }
    }
}

mod monitor {
    use super::*;

    /// Drives a monitor for `until` on a fake clock; the trace shows each result and status change.
    fn watch(
        policy: Policy,
        until: Duration,
        mut endpoint: impl FnMut(Duration, u32) -> Answer,
    ) -> (String, Monitor) {
        let t0 = Instant::now();
        let mut m = Monitor::new(policy, t0);
        let mut now = t0;
        let mut trace = String::new();
        while now - t0 < until {
            let before = m.status();
            match m.poll(now) {
                Step::Probe { attempt, timeout } => {
                    let (latency, outcome) = endpoint(now - t0, attempt);
                    if latency >= timeout {
                        continue;
                    }
                    now += latency;
                    let changed = m.record(attempt, now, outcome.clone());
                    let change = changed.map(|s| format!(" -> {s:?}")).unwrap_or_default();
                    writeln!(
                        trace,
                        "{:>7} #{attempt} {outcome:?}{change}",
                        format_duration(now - t0)
                    )
                    .unwrap();
                }
                Step::Wait { until } => {
                    if m.status() != before {
                        let last = m.last().unwrap_or_default();
                        writeln!(
                            trace,
                            "{:>7} {last} -> {:?}",
                            format_duration(now - t0),
                            m.status()
                        )
                        .unwrap();
                    }
                    assert!(until > now);
                    now = until;
                }
            }
        }
        (trace, m)
    }

    #[test]
    fn flips_on_consecutive_thresholds_and_never_settles() {
        // Up for 3 s, down for 4 s, up again.
        let (trace, m) = watch(policy(1000, 500, 2, 3), secs(12), |at, _| {
            if at < secs(3) || at >= secs(7) {
                ok(5)
            } else {
                refused()
            }
        });
        insta::assert_snapshot!(trace);
        assert_eq!(m.status(), Status::Healthy);
    }

    #[test]
    fn timeouts_count_as_failures_and_start_period_forgives() {
        let p = Policy {
            start_period: secs(2),
            ..policy(1000, 300, 1, 2)
        };
        let (trace, m) = watch(p, secs(6), |_, _| {
            (secs(10), Outcome::Success("late".into()))
        });
        insta::assert_snapshot!(trace);
        assert_eq!(m.status(), Status::Unhealthy);
        assert_eq!(m.last(), Some("timed out after 300ms"));
    }

    #[test]
    fn pending_keeps_the_status_unknown() {
        let pending = || (ms(1), Outcome::Pending("starting".into()));
        let (_, m) = watch(policy(1000, 500, 1, 1), secs(5), |_, _| pending());
        assert_eq!(m.status(), Status::Unknown);
    }
}
