//! Unit tests: the driver against a fake executor on tokio's paused clock, and the pure helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use davit_rollout::{
    Config, Event, Gates, HostSpec, Metrics, Outcome, Rollout, Step, Strategy, Version,
};

use crate::driver::{DriverNote, Executor, Observer, drive};
use crate::model::{ProjectSpec, ServiceSpec};
use crate::release;

/// A fake world: every step takes 100 ms; new containers turn healthy 1 s after being watched,
/// except on `bad_host`, where they turn unhealthy.
struct Fake {
    bad_host: Option<String>,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl Executor for Fake {
    async fn step(&self, host: &str, step: Step) -> Result<Option<Metrics>, String> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.log.lock().unwrap().push(format!("{host}: {step}"));
        Ok(None)
    }
    async fn watch(&self, host: &str, version: Version, events: mpsc::Sender<Event>) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ev = if version == Version::New && self.bad_host.as_deref() == Some(host) {
            Event::Unhealthy {
                host: host.into(),
                version,
                reason: "500".into(),
            }
        } else {
            Event::Healthy {
                host: host.into(),
                version,
            }
        };
        let _ = events.send(ev).await;
        std::future::pending::<()>().await;
    }
}

async fn run_fake(bad_host: Option<&str>, cancel_after: Option<Duration>) -> (Outcome, String) {
    let rollout = Rollout::new(
        Config {
            strategy: Strategy::Rolling { max_parallel: 1 },
            gates: Gates {
                min_healthy_time: Duration::from_secs(1),
                ..Gates::default()
            },
        },
        vec![HostSpec::new("h1", true), HostSpec::new("h2", true)],
    )
    .unwrap();
    let fake = Arc::new(Fake {
        bad_host: bad_host.map(str::to_string),
        log: Mutex::new(Vec::new()),
    });
    let trace = Arc::new(Mutex::new(String::new()));
    let t = trace.clone();
    let observer: Observer = Arc::new(move |n: &DriverNote| {
        let line = match n {
            DriverNote::Action { at_ms, action } => format!("{at_ms:>6}ms <- {action}\n"),
            DriverNote::Event { at_ms, event } => format!("{at_ms:>6}ms -> {event}\n"),
        };
        t.lock().unwrap().push_str(&line);
    });
    let (tx, rx) = watch::channel(false);
    if let Some(after) = cancel_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(true);
        });
    } else {
        std::mem::forget(tx);
    }
    let outcome = drive(rollout, fake, rx, Some(observer)).await;
    let trace = trace.lock().unwrap().clone();
    (outcome, trace)
}

#[tokio::test(start_paused = true)]
async fn driver_runs_a_rolling_deploy_on_the_paused_clock() {
    let (outcome, trace) = run_fake(None, None).await;
    assert!(outcome.is_success(), "{outcome}");
    insta::assert_snapshot!("driver_rolling", trace);
}

#[tokio::test(start_paused = true)]
async fn driver_reverts_the_first_host_when_the_second_fails() {
    let (outcome, trace) = run_fake(Some("h2"), None).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
    insta::assert_snapshot!("driver_second_host_fails", trace);
}

#[tokio::test(start_paused = true)]
async fn driver_cancel_reverts() {
    let (outcome, trace) = run_fake(None, Some(Duration::from_millis(3300))).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
    insta::assert_snapshot!("driver_cancelled", trace);
}

#[test]
fn rfc3339_and_release_ids() {
    assert_eq!(release::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(release::rfc3339(1_795_476_930), "2026-11-23T23:35:30Z");
    assert_eq!(release::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    let id = release::new_release_id(1_795_476_930);
    assert!(id.starts_with("20261123-233530-"), "{id}");
    assert_eq!(id.len(), "20261123-233530-abcd".len());
}

#[test]
fn config_hash_follows_image_and_env_but_not_strategy() {
    let mut a = ServiceSpec::new("web", "r/app:v1");
    a.pinned = Some("r/app@sha256:1".into());
    let base = a.config_hash();
    let mut b = a.clone();
    b.strategy = Strategy::Rolling { max_parallel: 3 };
    assert_eq!(b.config_hash(), base);
    b.environment.insert("SECRET".into(), "hunter2".into());
    assert_ne!(b.config_hash(), base);
    let red = b.redacted();
    assert_eq!(red.environment["SECRET"], "***");
    let project = ProjectSpec {
        name: "p".into(),
        working_dir: String::new(),
        services: vec![b.clone()],
    };
    let json = serde_json::to_string(&project.redacted()).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
    let mut c = a.clone();
    c.pinned = Some("r/app@sha256:2".into());
    assert_ne!(c.config_hash(), base);
}

fn from_yaml(yaml: &str) -> Result<ProjectSpec, crate::Error> {
    let dir = std::env::temp_dir();
    let mut opts = davit_compose::LoadOptions::new(&dir);
    opts.files = vec![dir.join("compose.yaml")];
    opts.project_name = Some("app".into());
    let files = std::collections::BTreeMap::from([(dir.join("compose.yaml"), yaml.to_string())]);
    let p = davit_compose::load(&opts, &MapLoader(files)).expect("valid compose");
    crate::adapters::from_compose(&p)
}

struct MapLoader(std::collections::BTreeMap<std::path::PathBuf, String>);

impl davit_compose::Loader for MapLoader {
    fn read(&self, path: &std::path::Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

#[test]
fn completed_successfully_dependencies_are_jobs_and_update_config_is_honoured() {
    let spec = from_yaml(
        r#"
services:
  migrate:
    image: r/app:2
    command: [migrate]
  web:
    image: r/app:2
    depends_on:
      migrate: {condition: service_completed_successfully}
    x-davit: {proxy: {port: 8080, health: /health}}
    deploy:
      update_config: {parallelism: 3, monitor: 7s}
  worker:
    image: r/app:2
    depends_on: [migrate]
    deploy:
      update_config: {parallelism: 0}
"#,
    )
    .unwrap();
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["migrate", "web", "worker"]);
    let (migrate, web, worker) = (&spec.services[0], &spec.services[1], &spec.services[2]);
    assert!(migrate.job && !web.job && !worker.job);
    assert_eq!(web.strategy, Strategy::Rolling { max_parallel: 3 });
    assert_eq!(web.min_healthy_time, Some(Duration::from_secs(7)));
    assert_eq!(
        worker.strategy,
        Strategy::Recreate {
            max_parallel: usize::MAX
        },
        "parallelism 0 is every host at once"
    );
    // A plain service's config hash does not carry the new fields (hosts keep their containers).
    let mut plain = worker.clone();
    plain.job = false;
    plain.min_healthy_time = None;
    assert!(!serde_json::to_string(&plain).unwrap().contains("job"));
}

#[test]
fn a_job_behind_the_proxy_is_refused() {
    let e = from_yaml(
        r#"
services:
  migrate:
    image: r/app:2
    x-davit: {proxy: {port: 8080, health: /health}}
  web:
    image: r/app:2
    depends_on:
      migrate: {condition: service_completed_successfully}
"#,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("service_completed_successfully"),
        "{e}"
    );
}

#[test]
fn latency_histograms_are_read_from_the_proxy_metrics() {
    let text = "\
# TYPE davit_proxy_request_duration_seconds histogram
davit_proxy_request_duration_seconds_bucket{route=\"p-web\",target=\"p-web-new-1\",le=\"0.01\"} 3
davit_proxy_request_duration_seconds_bucket{route=\"p-web\",target=\"p-web-new-1\",le=\"0.1\"} 4
davit_proxy_request_duration_seconds_bucket{route=\"p-web\",target=\"p-web-new-1\",le=\"+Inf\"} 5
davit_proxy_request_duration_seconds_sum{route=\"p-web\",target=\"p-web-new-1\"} 1.2
davit_proxy_request_duration_seconds_bucket{route=\"p-api\",target=\"p-api-1\",le=\"0.01\"} 9
davit_proxy_requests_total{route=\"p-web\",target=\"p-web-new-1\"} 5
";
    let h = crate::metrics::histograms(text, "p-web");
    assert_eq!(h.len(), 1);
    let web = &h["p-web-new-1"];
    assert_eq!(web.buckets, vec![(0.01, 3), (0.1, 4)]);
    assert_eq!(web.count, 5);
    // One request of five above 100 ms: the p99 is the highest bound.
    assert_eq!(web.quantile(0.99), Some(Duration::from_millis(100)));
}

#[test]
fn health_gates_follow_the_compose_healthcheck_and_proxy_path() {
    use crate::gate::{START_EVERY, WATCH_EVERY, paced, service_health};
    use crate::model::{HealthTiming, ProxySpec};
    let web = |timing: Option<HealthTiming>, proxy: bool| {
        let mut s = ServiceSpec::new("web", "r/app:1");
        s.healthcheck_timing = timing;
        if proxy {
            s.proxy = Some(ProxySpec {
                port: 8080,
                health: "/health".into(),
                publish: 80,
            });
        }
        s
    };
    let timed = HealthTiming {
        interval: Some(Duration::from_secs(2)),
        timeout: Some(Duration::from_millis(500)),
        retries: Some(5),
        start_period: Some(Duration::from_secs(3)),
    };
    let cases = [
        ("behind the proxy, no healthcheck", web(None, true)),
        (
            "behind the proxy, compose timing",
            web(Some(timed.clone()), true),
        ),
        ("no proxy, compose timing", web(Some(timed), false)),
        ("no proxy, no healthcheck", web(None, false)),
    ];
    let mut out = String::new();
    for (what, svc) in cases {
        let h = service_health(&svc, "p-web-1", Some("172.30.1.5"));
        let line = |p: &davit_health::Policy| {
            format!(
                "every {:?}, timeout {:?}, start period {:?}, {} success(es), {} failure(s), min healthy {:?}, deadline {:?}",
                p.interval,
                p.timeout,
                p.start_period,
                p.success_threshold,
                p.failure_threshold,
                p.min_healthy_time,
                p.deadline
            )
        };
        out.push_str(&format!(
            "{what}: {}\n  policy:   {}\n  starting: {}\n  watching: {}\n",
            h.probe,
            line(&h.policy),
            line(&paced(&h.policy, START_EVERY)),
            line(&paced(&h.policy, WATCH_EVERY)),
        ));
    }
    insta::assert_snapshot!("health_gates", out);
}

/// A held rollout driven with a commit gate: says when it is held, then commits or aborts.
async fn run_gated(commit: Option<bool>) -> (Outcome, Vec<String>) {
    let rollout = Rollout::new(
        Config {
            strategy: Strategy::Rolling { max_parallel: 1 },
            gates: Gates {
                min_healthy_time: Duration::from_secs(1),
                ..Gates::default()
            },
        },
        vec![HostSpec::new("h1", true), HostSpec::new("h2", true)],
    )
    .unwrap()
    .hold_before_cleanup();
    let fake = Arc::new(Fake {
        bad_host: None,
        log: Mutex::new(Vec::new()),
    });
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (decision_tx, decision_rx) = tokio::sync::oneshot::channel();
    let (_cancel_tx, cancel_rx) = watch::channel(false);
    let task = tokio::spawn(crate::driver::drive_gated(
        rollout,
        fake.clone(),
        cancel_rx,
        None,
        Some(crate::driver::CommitGate {
            reached: reached_tx,
            decision: decision_rx,
        }),
    ));
    reached_rx.await.expect("the rollout is held");
    // Held: every host switched, nothing removed yet.
    let log = fake.log.lock().unwrap().clone();
    assert!(log.iter().all(|l| !l.contains("remove-old")), "{log:?}");
    assert_eq!(
        log.iter().filter(|l| l.contains("route new=100%")).count(),
        2,
        "{log:?}"
    );
    match commit {
        Some(c) => decision_tx.send(c).unwrap(),
        None => drop(decision_tx),
    }
    let outcome = task.await.unwrap();
    let log = fake.log.lock().unwrap().clone();
    (outcome, log)
}

#[tokio::test(start_paused = true)]
async fn driver_holds_until_committed() {
    let (outcome, log) = run_gated(Some(true)).await;
    assert!(outcome.is_success(), "{outcome}");
    assert_eq!(log.iter().filter(|l| l.contains("remove-old")).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn driver_held_then_aborted_or_abandoned_reverts_every_host() {
    for decision in [Some(false), None] {
        let (outcome, log) = run_gated(decision).await;
        assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
        assert!(log.iter().all(|l| !l.contains("remove-old")), "{log:?}");
        for h in ["h1", "h2"] {
            let tail: Vec<&String> = log
                .iter()
                .filter(|l| l.starts_with(h))
                .rev()
                .take(3)
                .collect();
            assert_eq!(
                tail,
                [
                    &format!("{h}: stop-new"),
                    &format!("{h}: route new=0%"),
                    &format!("{h}: start-old")
                ],
                "{log:?}"
            );
        }
    }
}

#[test]
fn json_notes_have_one_value_per_key() {
    use crate::deploy::Note;
    let note = Note::Service {
        service: "web".into(),
        note: DriverNote::Event {
            at_ms: 5,
            event: Event::Completed {
                host: "h1".into(),
                step: Step::StartNew,
            },
        },
    };
    let text = serde_json::to_string(&note).unwrap();
    assert_eq!(text.matches("\"event\":").count(), 2, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["event"], "service", "{text}");
    assert_eq!(v["kind"], "event", "{text}");
    assert_eq!(v["observed"]["event"], "completed", "{text}");
    assert_eq!(v["observed"]["step"]["step"], "start-new", "{text}");
}
