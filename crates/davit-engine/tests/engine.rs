//! Integration tests of `davit-engine` on lab instance 7 (3 hosts, real registry, real sshd, the real
//! davit-proxy): deploys under constant HTTP load, failures, rollback, the lock, faults.
//!
//! Tests share the lab's hosts, so they run one at a time (a process-wide mutex); each uses its own
//! project name and published port.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use davit_engine::adapters::{RegistryResolver, SshRemote};
use davit_engine::deploy::{Note, Notes, Options, Report, releases, rollback_target};
use davit_engine::driver::DriverNote;
use davit_engine::proxyhost::ProxyImage;
use davit_engine::release::ReleaseOutcome;
use davit_engine::{Error, ProjectSpec, ProxySpec, RemoteRef, ServiceSpec};
use davit_lab::{Lab, LabInfo};
use davit_rollout::{Action, Gates, Step, Strategy};

const INSTANCE: u8 = 7;
const HOSTS: u16 = 3;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Env {
    lab: Lab,
    info: LabInfo,
    rt: tokio::runtime::Runtime,
    image: ProxyImage,
}

/// The static proxy (`$DAVIT_PROXY_BIN`, else a static build), as the lab finds it.
fn proxy_binary() -> std::path::PathBuf {
    davit_lab::static_binary("davit-proxy").expect("a static davit-proxy")
}

fn env() -> Env {
    let (lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let bin = proxy_binary();
    let image = ProxyImage::from_binary(&bin).expect("proxy image");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    Env {
        lab,
        info,
        rt,
        image,
    }
}

impl Env {
    /// Asserts that a deploy succeeded; when it did not, the message also shows the lab hosts' state.
    #[track_caller]
    fn succeeded(&self, r: &davit_engine::deploy::Report) {
        assert_eq!(
            r.outcome,
            ReleaseOutcome::Succeeded,
            "{:?}\n{}",
            r.message,
            davit_lab::diagnose::lab(&self.info)
        );
    }

    fn hosts(&self, n: usize) -> Vec<RemoteRef> {
        self.hosts_at(&(0..n).collect::<Vec<_>>())
    }

    /// The lab hosts at indices `at`, connected over SSH.
    fn hosts_at(&self, at: &[usize]) -> Vec<RemoteRef> {
        let mut opts = davit_ssh::SshOptions::default();
        opts.identity = Some(self.info.identity.clone());
        opts.known_hosts = Some(self.info.known_hosts.clone());
        self.rt.block_on(async {
            let mut out: Vec<RemoteRef> = Vec::new();
            for &i in at {
                let url = davit_ssh::HostUrl::parse(&self.info.hosts[i].url).unwrap();
                out.push(Arc::new(
                    SshRemote::connect(&url, &opts).await.expect("connect"),
                ));
            }
            out
        })
    }

    fn addresses(&self, n: usize) -> Vec<String> {
        self.addresses_at(&(0..n).collect::<Vec<_>>())
    }

    /// The addresses of the lab hosts at indices `at`.
    fn addresses_at(&self, at: &[usize]) -> Vec<String> {
        at.iter()
            .map(|&i| self.info.hosts[i].address.clone())
            .collect()
    }

    fn project(&self, name: &str, publish: u16, tag: &str, strategy: Strategy) -> ProjectSpec {
        let mut web = ServiceSpec::new(
            "web",
            format!(
                "{}/davit-demo:{tag}",
                self.info
                    .registry
                    .as_deref()
                    .expect("the lab has a registry")
            ),
        );
        web.proxy = Some(ProxySpec {
            port: 8080,
            health: "/health".into(),
            publish,
        });
        web.strategy = strategy;
        web.environment.insert("GREETING".into(), "hello".into());
        ProjectSpec {
            name: name.into(),
            working_dir: "/tmp".into(),
            services: vec![web],
        }
    }

    fn resolver(&self) -> RegistryResolver {
        RegistryResolver {
            settings: davit_registry::Settings {
                insecure: vec!["10.77.0.0/16".into()],
                ..Default::default()
            },
        }
    }

    /// Prepares and deploys; returns the report (or the error).
    fn deploy(
        &self,
        project: &ProjectSpec,
        hosts: &[RemoteRef],
        opts: &Options,
        notes: Option<Notes>,
    ) -> Result<Report, Error> {
        self.rt.block_on(async {
            let p = davit_engine::prepare(project, opts, &self.resolver()).await?;
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let notes = notes.unwrap_or_else(|| Arc::new(|_: &Note| {}));
            let (_, report) =
                davit_engine::deploy(p, hosts.to_vec(), opts, Some(self.image.clone()), rx, notes)
                    .await?;
            Ok(report.expect("not a dry run"))
        })
    }
}

fn opts() -> Options {
    Options {
        gates: Gates {
            min_healthy_time: Duration::from_secs(1),
            healthy_deadline: Duration::from_secs(40),
            progress_deadline: Duration::from_secs(120),
        },
        lock_ttl: Duration::from_secs(6),
        who: "engine-tests".into(),
        ..Options::default()
    }
}

/// `GET /` on `addr`, one connection per request; the body, or why it failed.
fn get(addr: &str) -> Result<String, String> {
    get_path(addr, "/")
}

/// `GET path` on `addr`, one connection per request; the body, or why it failed.
fn get_path(addr: &str, path: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text.lines().next().unwrap_or("empty answer").to_string());
    }
    Ok(text)
}

/// A client hammering `http://ADDR:PORT/` on every host, the whole time.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addresses: &[String], port: u16) -> Load {
        Load::start_path(addresses, port, "/", 1)
    }

    /// `clients` clients per host asking for `path`.
    fn start_path(addresses: &[String], port: u16, path: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let mut threads = Vec::new();
        for a in addresses
            .iter()
            .flat_map(|a| std::iter::repeat_n(a, clients))
        {
            let target = format!("{a}:{port}");
            let path = path.to_string();
            let (stop, ok, failed, errors, versions) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                errors.clone(),
                versions.clone(),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get_path(&target, &path) {
                        Ok(body) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            let v = ["v1", "v2"]
                                .iter()
                                .find(|v| body.contains(&format!("davit-demo {v}")))
                                .map_or("other", |v| v);
                            *versions.lock().unwrap().entry(v.to_string()).or_default() += 1;
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().unwrap().push(format!("{target}: {e}"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            errors,
            versions,
            threads,
        }
    }

    /// Stops; returns (served, failed, first errors, versions seen).
    fn stop(
        self,
    ) -> (
        u64,
        u64,
        Vec<String>,
        std::collections::BTreeMap<String, u64>,
    ) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors: Vec<String> = self
            .errors
            .lock()
            .unwrap()
            .iter()
            .take(5)
            .cloned()
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
            self.versions.lock().unwrap().clone(),
        )
    }
}

fn assert_serves(addresses: &[String], port: u16, version: &str) {
    for a in addresses {
        let body = get(&format!("{a}:{port}")).unwrap_or_else(|e| panic!("{a}:{port}: {e}"));
        assert!(
            body.contains(&format!("davit-demo {version}")),
            "{a}:{port} serves {body:?}, expected {version}"
        );
    }
}

fn rolling() -> Strategy {
    Strategy::Rolling { max_parallel: 1 }
}

/// Removes what earlier runs of a test left (its project's containers, releases, lock, route).
/// The start of a lab test: the lab to itself (tests run one at a time), the hosts at lab indices
/// `at` connected, their addresses, and every trace of project `name` gone from them.
fn begin(name: &str, at: &[usize]) -> (MutexGuard<'static, ()>, Env, Vec<RemoteRef>, Vec<String>) {
    let turn = serial();
    let env = env();
    let hosts = env.hosts_at(at);
    let addrs = env.addresses_at(at);
    clean(&env, &hosts, name);
    (turn, env, hosts, addrs)
}

fn clean(env: &Env, hosts: &[RemoteRef], project: &str) {
    env.rt.block_on(async {
        for h in hosts {
            let docker = h.docker();
            let mut filters = std::collections::HashMap::new();
            filters.insert("name".to_string(), vec![project.to_string()]);
            let list = docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                }))
                .await
                .unwrap_or_default();
            for c in list {
                let name = davit_engine::hostops::name_of(&c);
                if name.starts_with(&format!("{project}-"))
                    || name.starts_with(&format!("davit-release-{project}-"))
                    || name == format!("davit-lock-{project}")
                {
                    let _ = davit_engine::hostops::remove(&docker, &name).await;
                }
            }
            for service in ["web", "api"] {
                let _ = davit_engine::exec::admin(h.clone())
                    .delete_route(&davit_engine::exec::route_name(project, service))
                    .await;
            }
        }
    });
}

#[test]
fn rolling_v1_to_v2_under_load_then_broken_then_rollback() {
    let (name, port) = ("rollt", 8101);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);

    // First deploy: v1 everywhere.
    let r = env
        .deploy(
            &env.project(name, port, "v1", rolling()),
            &hosts,
            &opts(),
            None,
        )
        .expect("deploy v1");
    env.succeeded(&r);
    assert_serves(&addrs, port, "v1");

    // v1 → v2 under constant load: not one failed request.
    let load = Load::start(&addrs, port);
    std::thread::sleep(Duration::from_millis(500));
    let r = env
        .deploy(
            &env.project(name, port, "v2", rolling()),
            &hosts,
            &opts(),
            None,
        )
        .expect("deploy v2");
    std::thread::sleep(Duration::from_millis(500));
    let (served, failed, errors, versions) = load.stop();
    env.succeeded(&r);
    assert_eq!(failed, 0, "failed requests during the rollout: {errors:?}");
    assert!(served > 50, "only {served} requests served");
    assert!(
        versions.contains_key("v1") && versions.contains_key("v2"),
        "{versions:?}"
    );
    eprintln!("rolling v1→v2: {served} served, {failed} failed, {versions:?}");
    assert_serves(&addrs, port, "v2");

    // A version that never turns healthy: rolled back, v2 keeps serving, no failed request.
    let load = Load::start(&addrs, port);
    let r = env
        .deploy(
            &env.project(name, port, "broken", rolling()),
            &hosts,
            &opts(),
            None,
        )
        .expect("deploy broken");
    let (served, failed, errors, _) = load.stop();
    assert_eq!(r.outcome, ReleaseOutcome::RolledBack, "{:?}", r.message);
    assert_eq!(
        failed, 0,
        "failed requests during the failed rollout: {errors:?}"
    );
    assert!(served > 10);
    assert_serves(&addrs, port, "v2");

    // Releases: v1, v2 succeeded, broken rolled back; newest first.
    let list = env.rt.block_on(releases(name, &hosts)).unwrap();
    let outcomes: Vec<_> = list.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            ReleaseOutcome::RolledBack,
            ReleaseOutcome::Succeeded,
            ReleaseOutcome::Succeeded
        ]
    );
    assert!(list[1].services[0].pinned.contains("@sha256:"));
    let json = serde_json::to_string(&list).unwrap();
    assert!(
        !json.contains("hello"),
        "a release leaked an environment value"
    );

    // Rollback: back to v1, under load, from the snapshot on the hosts.
    let (target, spec) = env
        .rt
        .block_on(rollback_target(name, &hosts, None))
        .unwrap();
    assert_eq!(target.id, list[2].id);
    assert_eq!(spec.services[0].environment["GREETING"], "hello");
    let load = Load::start(&addrs, port);
    let r = env
        .deploy(
            &spec,
            &hosts,
            &Options {
                rollback_of: Some(target.id.clone()),
                ..opts()
            },
            None,
        )
        .expect("rollback");
    let (_, failed, errors, _) = load.stop();
    env.succeeded(&r);
    assert_eq!(failed, 0, "{errors:?}");
    assert_serves(&addrs, port, "v1");
}

#[test]
fn failure_on_the_second_host_reverts_the_first() {
    let (name, port) = ("revert", 8102);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);
    deploy_ok(&env, name, port, "v1", &hosts);

    // When the second host has started its new containers, kill them behind davit's back: the
    // first host, already switched, must go back.
    let second = hosts[1].name().to_string();
    let first = hosts[0].name().to_string();
    let sabotage = hosts[1].clone();
    let handle = env.rt.handle().clone();
    let switched_first = Arc::new(AtomicBool::new(false));
    let sf = switched_first.clone();
    let release = Arc::new(Mutex::new(String::new()));
    let notes: Notes = Arc::new(move |n: &Note| match n {
        Note::Plan { plan } => *release.lock().unwrap() = plan.release.clone(),
        Note::Service {
            note: DriverNote::Event { event, .. },
            ..
        } => match event {
            davit_rollout::Event::Completed {
                host,
                step: Step::Route { weight: 100 },
            } if *host == first => sf.store(true, Ordering::SeqCst),
            davit_rollout::Event::Completed {
                host,
                step: Step::StartNew,
            } if *host == second => {
                let s = sabotage.clone();
                let rel = release.lock().unwrap().clone();
                handle.spawn(async move {
                    let docker = s.docker();
                    let list =
                        davit_engine::hostops::list_containers(&docker, "revert", Some("web"))
                            .await
                            .unwrap_or_default();
                    for c in list {
                        if davit_engine::hostops::label(&c, "dev.davit.release").as_deref()
                            == Some(rel.as_str())
                        {
                            let n = davit_engine::hostops::name_of(&c);
                            let _ = docker
                                .kill_container(
                                    &n,
                                    None::<bollard::query_parameters::KillContainerOptions>,
                                )
                                .await;
                        }
                    }
                });
            }
            _ => {}
        },
        _ => {}
    });
    let load = Load::start(&addrs, port);
    let r = env
        .deploy(
            &env.project(name, port, "v2", rolling()),
            &hosts,
            &opts(),
            Some(notes),
        )
        .unwrap();
    let (_, failed, errors, _) = load.stop();
    assert!(
        switched_first.load(Ordering::SeqCst),
        "the first host never switched"
    );
    assert_eq!(r.outcome, ReleaseOutcome::RolledBack, "{:?}", r.message);
    assert!(
        r.message.as_deref().unwrap_or("").contains(hosts[1].name()),
        "{:?}",
        r.message
    );
    assert_eq!(failed, 0, "{errors:?}");
    // Both hosts are back on v1.
    assert_serves(&addrs, port, "v1");
}

#[test]
fn concurrent_deploys_one_is_refused_and_an_abandoned_lock_expires() {
    let (name, port) = ("locks", 8103);
    let (_g, env, hosts, _) = begin(name, &[0]);
    // A deploy that died holding the lock (SIGKILL leaves its lease behind).
    env.rt.block_on(async {
        davit_engine::proxyhost::load_image(&hosts[0], &env.image)
            .await
            .unwrap();
        davit_engine::release::acquire(
            &hosts[0],
            &env.image.tag,
            name,
            "dead-deploy",
            "someone@else",
            Duration::from_secs(6),
            false,
        )
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    });
    let project = env.project(name, port, "v1", rolling());
    let e = env.deploy(&project, &hosts, &opts(), None).unwrap_err();
    assert!(
        matches!(e, Error::Locked { ref who, .. } if who == "someone@else"),
        "{e}"
    );
    assert!(e.to_string().contains("--force-unlock"), "{e}");
    // Its heartbeat stops: after the TTL the lease is expired and a re-run converges.
    std::thread::sleep(Duration::from_secs(8));
    let r = env.deploy(&project, &hosts, &opts(), None).unwrap();
    env.succeeded(&r);
    assert_serves(&env.addresses(1), port, "v1");

    // Two deploys at once: one holds the lock, the other is refused. The second starts once the first
    // is rolling out (so under its lock), not after a fixed delay, which a fast first deploy outran.
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = (Mutex::new(Some(started_tx)), Mutex::new(started));
    let notes: Notes = Arc::new(move |n: &Note| {
        if matches!(n, Note::Service { .. })
            && let Some(tx) = started_tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    });
    let e1 = std::thread::scope(|s| {
        let a = s.spawn(|| {
            env.deploy(
                &env.project(name, port, "v2", rolling()),
                &hosts,
                &opts(),
                Some(notes),
            )
        });
        let b = s.spawn(|| {
            started
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(120))
                .expect("the first deploy never started rolling out");
            env.deploy(
                &env.project(name, port, "v2", rolling()),
                &hosts,
                &opts(),
                None,
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let results = [e1.0, e1.1];
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Locked { .. })))
        .count();
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(rep) if rep.outcome == ReleaseOutcome::Succeeded))
        .count();
    assert_eq!((ok, refused), (1, 1), "{results:?}");
}

#[test]
fn registry_down_fails_before_touching_any_host() {
    let (name, port) = ("regdown", 8104);
    let (_g, env, hosts, _) = begin(name, &[0]);
    env.lab.stop_registry();
    let project = env.project(name, port, "v1", rolling());
    let r = env
        .rt
        .block_on(davit_engine::prepare(&project, &opts(), &env.resolver()));
    env.lab.start_registry().expect("registry back");
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Resolve { .. }), "{e}");
    assert!(!e.is_input());
    assert_untouched(&env, &hosts[0], name);
}

#[test]
fn blue_green_and_canary_under_load() {
    let (name, port) = ("bgcan", 8105);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);
    deploy_ok(&env, name, port, "v1", &hosts);

    let bg = Strategy::BlueGreen {
        promote_after: Some(Duration::from_secs(2)),
    };
    let load = Load::start(&addrs, port);
    let r = env
        .deploy(&env.project(name, port, "v2", bg), &hosts, &opts(), None)
        .unwrap();
    let (served, failed, errors, _) = load.stop();
    env.succeeded(&r);
    assert_eq!(failed, 0, "blue-green: {errors:?}");
    eprintln!("blue-green v1→v2: {served} served, {failed} failed");
    assert_serves(&addrs, port, "v2");

    let canary = Strategy::Canary(davit_rollout::Canary {
        steps: vec![25, 100],
        hold: Duration::from_secs(2),
        max_error_rate: 0.01,
        max_p99: Duration::from_secs(1),
    });
    let saw_weights = Arc::new(Mutex::new(Vec::new()));
    let sw = saw_weights.clone();
    let notes: Notes = Arc::new(move |n: &Note| {
        if let Note::Service {
            note:
                DriverNote::Action {
                    action:
                        Action::Do {
                            step: Step::Route { weight },
                            ..
                        },
                    ..
                },
            ..
        } = n
        {
            sw.lock().unwrap().push(*weight);
        }
    });
    let load = Load::start(&addrs, port);
    let r = env
        .deploy(
            &env.project(name, port, "v1", canary),
            &hosts,
            &opts(),
            Some(notes),
        )
        .unwrap();
    let (served, failed, errors, versions) = load.stop();
    env.succeeded(&r);
    assert_eq!(failed, 0, "canary: {errors:?}");
    assert_eq!(*saw_weights.lock().unwrap(), vec![25, 25, 100, 100]);
    eprintln!("canary v2→v1: {served} served, {failed} failed, {versions:?}");
    assert_serves(&addrs, port, "v1");
}

#[test]
fn dry_run_plans_and_touches_nothing() {
    let (name, port) = ("dryrun", 8106);
    let (_g, env, hosts, _) = begin(name, &[0, 1]);
    let project = env.project(name, port, "v1", rolling());
    let plan = env.rt.block_on(async {
        let p = davit_engine::prepare(&project, &opts(), &env.resolver())
            .await
            .unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let (plan, report) = davit_engine::deploy(
            p,
            hosts.clone(),
            &Options {
                dry_run: true,
                ..opts()
            },
            Some(env.image.clone()),
            rx,
            Arc::new(|_: &Note| {}),
        )
        .await
        .unwrap();
        assert!(report.is_none());
        plan
    });
    assert!(plan.has_changes());
    let text = plan.render();
    assert!(
        text.contains("service web (rolling, behind the proxy)"),
        "{text}"
    );
    assert!(text.contains(": create"), "{text}");
    assert!(text.contains("@sha256:"), "{text}");
    assert_untouched(&env, &hosts[0], name);
}

#[test]
fn a_probe_that_never_passes_is_reported_with_what_docker_sees() {
    let (name, port) = ("nopath", 8115);
    let (_g, env, hosts, _) = begin(name, &[0]);
    // The app runs and answers, but not on the health path the proxy is told to probe.
    let mut project = env.project(name, port, "v1", rolling());
    project.services[0].proxy.as_mut().unwrap().health = "/no-such-path".into();
    let r = env.deploy(&project, &hosts, &opts(), None).unwrap();
    assert_eq!(r.outcome, ReleaseOutcome::RolledBack, "{:?}", r.message);
    let message = r.message.unwrap_or_default();
    assert!(
        message.contains("status 404") && message.contains("(Docker sees it running at 172."),
        "{message}"
    );
    assert_untouched(&env, &hosts[0], name);
}

#[test]
fn sshd_stopped_mid_deploy_fails_no_request_and_a_rerun_converges() {
    let (name, port) = ("sshcut", 8107);
    let (_g, env, hosts, addrs) = begin(name, &[2]);
    deploy_ok(&env, name, port, "v1", &hosts);

    // Cut SSH as soon as the new containers are started.
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    let notes: Notes = Arc::new(move |n: &Note| {
        if let Note::Service {
            note:
                DriverNote::Event {
                    event:
                        davit_rollout::Event::Completed {
                            step: Step::StartNew,
                            ..
                        },
                    ..
                },
            ..
        } = n
            && !c.swap(true, Ordering::SeqCst)
        {
            let (lab, _) = davit_lab::for_tests(INSTANCE, HOSTS);
            lab.stop_sshd(3);
        }
    });
    let load = Load::start(&addrs, port);
    let quick = Options {
        gates: Gates {
            healthy_deadline: Duration::from_secs(10),
            ..opts().gates
        },
        ..opts()
    };
    let r = env.deploy(
        &env.project(name, port, "v2", rolling()),
        &hosts,
        &quick,
        Some(notes),
    );
    let (served, failed, errors, _) = load.stop();
    env.lab.start_sshd(3).expect("sshd back");
    assert!(cut.load(Ordering::SeqCst), "SSH was never cut");
    // Stopping sshd refuses new connections; davit's established connection may carry on. Either
    // the deploy finished, or it failed and the old version still serves: never a failed request.
    let finished = matches!(&r, Ok(rep) if rep.outcome == ReleaseOutcome::Succeeded);
    eprintln!(
        "deploy with sshd stopped: {:?}",
        r.as_ref().map(|rep| (&rep.outcome, &rep.message))
    );
    assert_eq!(failed, 0, "requests failed: {errors:?}");
    assert!(served > 10);
    assert_serves(&addrs, port, if finished { "v2" } else { "v1" });

    // The dead deploy's lock (if it could not remove it) expires; a re-run converges on v2.
    std::thread::sleep(Duration::from_secs(8));
    let hosts = env.hosts_at(&[2]);
    deploy_ok(&env, name, port, "v2", &hosts);
    assert_serves(&addrs, port, "v2");
}

#[test]
fn a_stopped_engine_fails_the_deploy_before_any_host_changes() {
    let (name, port) = ("engdown", 8108);
    let (_g, env, hosts, _) = begin(name, &[0, 2]);
    env.lab.stop_engine(3);
    let r = env.deploy(
        &env.project(name, port, "v1", rolling()),
        &hosts,
        &opts(),
        None,
    );
    env.lab.start_engine(3).expect("engine back");
    let e = r.expect_err("a deploy to a host without engine must fail");
    assert!(
        matches!(e, Error::Host { ref host, .. } if host == hosts[1].name()),
        "{e}"
    );
    // The other host was only read: nothing of the project runs there.
    assert_untouched(&env, &hosts[0], name);
}

#[test]
fn a_failed_service_reverts_the_services_already_switched_on_every_host() {
    let (name, web_port, api_port) = ("multi", 8109, 8110);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);
    // Two services behind the proxy: `web`, then `api`.
    let project = |web: &str, api: &str| {
        let mut p = env.project(name, web_port, web, rolling());
        let mut second = env
            .project(name, api_port, api, rolling())
            .services
            .remove(0);
        second.name = "api".into();
        p.services.push(second);
        p
    };
    let r = env
        .deploy(&project("v1", "v1"), &hosts, &opts(), None)
        .unwrap();
    env.succeeded(&r);
    assert_serves(&addrs, web_port, "v1");
    assert_serves(&addrs, api_port, "v1");

    // web goes to v2 on both hosts, then api never turns healthy: web must come back to v1 too.
    let web_switched = Arc::new(Mutex::new(Vec::new()));
    let ws = web_switched.clone();
    let notes: Notes = Arc::new(move |n: &Note| {
        if let Note::Service {
            service,
            note:
                DriverNote::Event {
                    event:
                        davit_rollout::Event::Completed {
                            host,
                            step: Step::Route { weight: 100 },
                        },
                    ..
                },
        } = n
            && service == "web"
        {
            ws.lock().unwrap().push(host.clone());
        }
    });
    let quick = Options {
        gates: Gates {
            healthy_deadline: Duration::from_secs(20),
            ..opts().gates
        },
        ..opts()
    };
    let load = Load::start(&addrs, web_port);
    let r = env
        .deploy(&project("v2", "broken"), &hosts, &quick, Some(notes))
        .unwrap();
    let (served, failed, errors, versions) = load.stop();
    assert_eq!(
        web_switched.lock().unwrap().len(),
        2,
        "web switched on every host before api failed"
    );
    assert_eq!(r.outcome, ReleaseOutcome::RolledBack, "{:?}", r.message);
    let message = r.message.clone().unwrap_or_default();
    assert!(
        message.contains("service api") && message.contains("web reverted"),
        "{message}"
    );
    let outcomes: Vec<(&str, bool)> = r
        .services
        .iter()
        .map(|(s, o)| {
            (
                s.as_str(),
                matches!(o, davit_rollout::Outcome::RolledBack { .. }),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![("web", true), ("api", true)],
        "{:?}",
        r.services
    );
    assert_eq!(failed, 0, "{errors:?}");
    assert!(served > 10);
    assert!(
        versions.contains_key("v2"),
        "web served v2 while held: {versions:?}"
    );
    eprintln!("web v2 then api broken: {served} served, {failed} failed, {versions:?}");
    // The project as a whole is back on the previous release, on every host.
    assert_serves(&addrs, web_port, "v1");
    assert_serves(&addrs, api_port, "v1");
    let v1 = env.rt.block_on(releases(name, &hosts)).unwrap();
    let first = v1.last().unwrap().id.clone();
    for h in &hosts {
        let list = env
            .rt
            .block_on(davit_engine::hostops::list_containers(
                &h.docker(),
                name,
                None,
            ))
            .unwrap();
        let releases: Vec<String> = list
            .iter()
            .filter_map(|c| davit_engine::hostops::label(c, "dev.davit.release"))
            .collect();
        assert_eq!(releases, vec![first.clone(), first.clone()], "{}", h.name());
    }
}

#[test]
fn a_slow_canary_is_rolled_back_on_its_p99() {
    let (name, port) = ("slowcan", 8111);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);
    deploy_ok(&env, name, port, "v1", &hosts);

    // Every request takes 250 ms: no error, but the new version's p99 is above its 100 ms bound.
    let canary = Strategy::Canary(davit_rollout::Canary {
        steps: vec![50, 100],
        hold: Duration::from_secs(3),
        max_error_rate: 0.01,
        max_p99: Duration::from_millis(100),
    });
    let load = Load::start_path(&addrs, port, "/slow?ms=250", 3);
    let r = env
        .deploy(
            &env.project(name, port, "v2", canary),
            &hosts,
            &opts(),
            None,
        )
        .unwrap();
    let (served, failed, errors, _) = load.stop();
    assert_eq!(r.outcome, ReleaseOutcome::RolledBack, "{:?}", r.message);
    match &r.services[0].1 {
        davit_rollout::Outcome::RolledBack {
            cause:
                davit_rollout::Cause::CanaryBounds {
                    weight,
                    requests,
                    errors,
                    p99_ms,
                },
        } => {
            assert_eq!(*weight, 50);
            assert!(*requests > 0 && *errors == 0, "{:?}", r.services);
            assert!(*p99_ms >= 250, "p99 {p99_ms} ms");
        }
        other => panic!("expected a canary bound failure: {other:?}"),
    }
    assert_eq!(failed, 0, "{errors:?}");
    assert!(served > 10);
    assert_serves(&addrs, port, "v1");
}

/// `net.ipv4.tcp_migrate_req` in the network namespace `netns` (a lab host's).
fn migrate_req(netns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "sysctl",
            "-n",
            "net.ipv4.tcp_migrate_req",
        ])
        .output()
        .expect("ip netns exec");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_migrate_req(netns: &str, value: &str) {
    let ok = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-qw"])
        .arg(format!("net.ipv4.tcp_migrate_req={value}"))
        .status()
        .expect("ip netns exec")
        .success();
    assert!(ok, "cannot set net.ipv4.tcp_migrate_req in {netns}");
}

#[test]
fn a_proxy_of_another_build_is_replaced_and_keeps_its_routes() {
    let (name, port) = ("proxyup", 8112);
    let (_g, env, hosts, addrs) = begin(name, &[1]);
    let netns = env.info.hosts[1].netns.clone();
    // The host runs without the kernel's help for SO_REUSEPORT handovers: the old proxy passes its
    // listening sockets to the new one, so none closes and the setting is neither needed nor set.
    set_migrate_req(&netns, "0");
    assert_eq!(migrate_req(&netns), "0");
    // "Another davit build": the same proxy binary with one more byte, so another image.
    let dir = std::env::temp_dir().join(format!("davit-engine-proxyup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut data = std::fs::read(proxy_binary()).unwrap();
    data.push(0);
    std::fs::write(dir.join("davit-proxy"), &data).unwrap();
    let older = ProxyImage::from_binary(&dir.join("davit-proxy")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_ne!(older.tag, env.image.tag);
    let phases = Arc::new(Mutex::new(Vec::<String>::new()));
    let deploy_with = |tag: &str, image: &ProxyImage| {
        let project = env.project(name, port, tag, rolling());
        let phases = phases.clone();
        env.rt.block_on(async {
            let p = davit_engine::prepare(&project, &opts(), &env.resolver())
                .await
                .unwrap();
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let (_, report) = davit_engine::deploy(
                p,
                hosts.clone(),
                &opts(),
                Some(image.clone()),
                rx,
                Arc::new(move |n: &Note| {
                    if let Note::Phase { message } = n {
                        phases.lock().unwrap().push(message.clone());
                    }
                }),
            )
            .await
            .unwrap();
            report.unwrap()
        })
    };
    let proxy_image = || {
        env.rt.block_on(async {
            hosts[0]
                .docker()
                .inspect_container(
                    "davit-proxy",
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .unwrap()
                .config
                .and_then(|c| c.image)
                .unwrap()
        })
    };
    let exists = |container: &str| {
        env.rt
            .block_on(hosts[0].docker().inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            ))
            .is_ok()
    };
    let r = deploy_with("v1", &older);
    env.succeeded(&r);
    assert_eq!(proxy_image(), older.tag, "the older proxy runs");
    assert_serves(&addrs, port, "v1");

    // The next deploy, by this build, replaces the proxy; the routes come with it. Several clients,
    // each a new connection per request, so that connections sit in the accept queues when the old
    // proxy stops: had it closed its listeners, without tcp_migrate_req those would be reset.
    phases.lock().unwrap().clear();
    let load = Load::start_path(&addrs, port, "/", 4);
    let r = deploy_with("v2", &env.image);
    std::thread::sleep(Duration::from_millis(300));
    let (served, failed, errors, versions) = load.stop();
    eprintln!("proxy replaced under load: {served} served, {failed} failed, {versions:?}");
    env.succeeded(&r);
    let phases = phases.lock().unwrap().clone();
    assert!(
        phases.iter().any(|p| p.contains("replaced side by side")
            && p.contains("its listening sockets passed to the new one")),
        "{phases:?}"
    );
    assert_eq!(
        failed, 0,
        "requests failed while the proxy was replaced: {errors:?}"
    );
    assert!(served > 50 && versions.contains_key("v2"), "{versions:?}");
    assert_eq!(proxy_image(), env.image.tag, "the proxy was replaced");
    assert_serves(&addrs, port, "v2");
    assert!(
        !exists(davit_engine::proxyhost::RETIRING_CONTAINER),
        "the old proxy is gone"
    );
    assert!(
        !exists(davit_engine::proxyhost::SYSCTL_CONTAINER),
        "the one-shot sysctl container is removed"
    );
    assert_eq!(
        migrate_req(&netns),
        "0",
        "the upgrade needed no sysctl (no container allowed to write /proc/sys ran)"
    );
    let route = env
        .rt
        .block_on(
            davit_engine::exec::admin(hosts[0].clone())
                .route(&davit_engine::exec::route_name(name, "web")),
        )
        .unwrap();
    assert!(route.is_some(), "the route survived the upgrade");
}

/// A note callback that runs `fault` once, blocking the deploy (so nothing more happens on any host
/// until the fault is in place), when `host` has switched its traffic to the new version.
fn when_switched(
    host: String,
    fault: impl Fn() + Send + Sync + 'static,
) -> (Notes, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let notes: Notes = Arc::new(move |n: &Note| {
        if let Note::Service {
            note:
                DriverNote::Event {
                    event:
                        davit_rollout::Event::Completed {
                            host: h,
                            step: Step::Route { weight: 100 },
                        },
                    ..
                },
            ..
        } = n
            && *h == host
            && !d.swap(true, Ordering::SeqCst)
        {
            tokio::task::block_in_place(&fault);
        }
    });
    (notes, done)
}

/// Deploys v2 of project `name` under load on `load_on`, with `fault` injected once the first host
/// has switched (see [`when_switched`]); asserts the fault happened, that the deploy was rolled
/// back naming the second host, and that no request failed. Returns (served, versions seen).
fn v2_with_fault(
    env: &Env,
    (name, port): (&str, u16),
    hosts: &[RemoteRef],
    load_on: &[String],
    what: &str,
    fault: impl Fn() + Send + Sync + 'static,
) -> (u64, std::collections::BTreeMap<String, u64>) {
    let (notes, done) = when_switched(hosts[0].name().to_string(), fault);
    let load = Load::start(load_on, port);
    let r = env.deploy(
        &env.project(name, port, "v2", rolling()),
        hosts,
        &opts(),
        Some(notes),
    );
    let (served, failed, errors, versions) = load.stop();
    eprintln!(
        "{what} mid-deploy: {:?}; {served} served, {failed} failed, {versions:?}",
        r.as_ref().map(|rep| (&rep.outcome, &rep.message))
    );
    assert!(
        done.load(Ordering::SeqCst),
        "{what}: the fault never happened"
    );
    assert_rolled_back_on(&r, hosts[1].name());
    assert_eq!(failed, 0, "requests failed: {errors:?}");
    (served, versions)
}

/// The deploy was rolled back because of `host`, every host restored (`host` was never changed: the
/// fault hit it before it started anything).
fn assert_rolled_back_on(r: &Result<Report, Error>, host: &str) {
    let rep = r.as_ref().expect("a report");
    let text = rep.message.clone().unwrap_or_default();
    assert_eq!(rep.outcome, ReleaseOutcome::RolledBack, "{text}");
    assert!(
        text.contains(host),
        "the failure does not name {host}: {text}"
    );
}

/// The release of each container of `project` on each host.
/// Asserts that nothing of project `name` exists on `host`.
fn assert_untouched(env: &Env, host: &RemoteRef, name: &str) {
    let left = env
        .rt
        .block_on(davit_engine::hostops::list_containers(
            &host.docker(),
            name,
            None,
        ))
        .unwrap();
    assert!(left.is_empty(), "a host was touched: {left:?}");
}

fn container_releases(env: &Env, hosts: &[RemoteRef], project: &str) -> Vec<Vec<String>> {
    hosts
        .iter()
        .map(|h| {
            env.rt
                .block_on(davit_engine::hostops::list_containers(
                    &h.docker(),
                    project,
                    None,
                ))
                .unwrap()
                .iter()
                .map(|c| davit_engine::hostops::label(c, "dev.davit.release").unwrap_or_default())
                .collect()
        })
        .collect()
}

/// Deploys again once the dead deploy's lock has expired (bounded); the deploy must succeed.
fn rerun_until_unlocked(env: &Env, project: &ProjectSpec, hosts: &[RemoteRef]) -> Report {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match env.deploy(project, hosts, &opts(), None) {
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            r => {
                let r = r.expect("the re-run");
                env.succeeded(&r);
                return r;
            }
        }
    }
}

/// Deploys `tag` of project `name` (one service on `port`, rolling) and asserts it succeeded.
fn deploy_ok(env: &Env, name: &str, port: u16, tag: &str, hosts: &[RemoteRef]) -> Report {
    let r = env
        .deploy(
            &env.project(name, port, tag, rolling()),
            hosts,
            &opts(),
            None,
        )
        .unwrap();
    env.succeeded(&r);
    r
}

/// Asserts that the hosts' history still lists `release` as a success.
fn assert_listed(env: &Env, name: &str, hosts: &[RemoteRef], release: &str) {
    let list = env.rt.block_on(releases(name, hosts)).unwrap();
    assert!(
        list.iter()
            .any(|r| r.id == release && r.outcome == ReleaseOutcome::Succeeded),
        "{list:?}"
    );
}

/// A re-run of `tag` converges: every host runs one container, of the re-run's release.
fn assert_rerun_converges(env: &Env, name: &str, port: u16, tag: &str, hosts: &[RemoteRef]) {
    let r = rerun_until_unlocked(env, &env.project(name, port, tag, rolling()), hosts);
    assert_eq!(
        container_releases(env, hosts, name),
        vec![vec![r.release.clone()]; hosts.len()],
        "no container left over"
    );
}

#[test]
fn ssh_cut_to_the_second_host_mid_deploy_reverts_the_first_and_a_rerun_converges() {
    let (name, port) = ("sshcut2", 8113);
    let (_g, env, hosts, addrs) = begin(name, &[0, 1]);
    let v1 = deploy_ok(&env, name, port, "v1", &hosts);

    // Once the first host serves v2, every SSH connection to the second host is cut (its sshd
    // killed, established sessions included) and no new one is accepted.
    let lab = env.lab.clone();
    let (served, versions) =
        v2_with_fault(&env, (name, port), &hosts, &addrs, "ssh cut", move || {
            lab.cut_ssh(2)
        });
    // The connection davit held is really gone (not only the listener).
    assert!(
        env.rt.block_on(hosts[1].docker().ping()).is_err(),
        "the second host still answers over SSH"
    );
    assert!(served > 20 && versions.contains_key("v2"), "{versions:?}");
    assert_serves(&addrs, port, "v1");
    assert_eq!(
        container_releases(&env, &hosts[..1], name),
        vec![vec![v1.release.clone()]],
        "the first host is back on v1"
    );

    // SSH back: the history is intact, and a re-run (a new process: new connections) converges.
    env.lab.start_sshd(2).expect("sshd back");
    let hosts = env.hosts(2);
    assert_listed(&env, name, &hosts, &v1.release);
    assert_rerun_converges(&env, name, port, "v2", &hosts);
    assert_serves(&addrs, port, "v2");
}

#[test]
fn an_engine_stopped_mid_deploy_reverts_the_first_host_and_comes_back_on_v1() {
    let (name, port) = ("engcut", 8114);
    let (_g, env, hosts, addrs) = begin(name, &[0, 2]);
    let (first_addr, second_addr) = (addrs[0].clone(), addrs[1].clone());
    let v1 = deploy_ok(&env, name, port, "v1", &hosts);

    // Once the first host serves v2, the second host's engine stops (its containers with it).
    let lab = env.lab.clone();
    let (served, versions) = v2_with_fault(
        &env,
        (name, port),
        &hosts,
        std::slice::from_ref(&first_addr),
        "engine stopped",
        move || lab.stop_engine(3),
    );
    env.lab.start_engine(3).expect("engine back");
    assert!(served > 10 && versions.contains_key("v2"), "{versions:?}");
    assert_serves(std::slice::from_ref(&first_addr), port, "v1");
    assert_eq!(
        container_releases(&env, &hosts[..1], name),
        vec![vec![v1.release.clone()]],
        "the first host is back on v1"
    );

    // The engine back, its v1 containers and proxy restart (restart policies), and v1 is served.
    let target = format!("{second_addr}:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match get(&target) {
            Ok(body) if body.contains("davit-demo v1") => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{target} after the engine restarted: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    assert_listed(&env, name, &hosts, &v1.release);
    assert_rerun_converges(&env, name, port, "v2", &hosts);
    assert_serves(&[first_addr, second_addr], port, "v2");
}
