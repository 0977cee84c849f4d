//! `davit deploy` as users run it, against lab instance 9 (2 hosts, the real registry, the real
//! davit-proxy): the real binary killed with SIGKILL, or interrupted with Ctrl-C, in the middle of a
//! rollout, under load.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSTANCE: u8 = 9;
const HOSTS: u16 = 2;

/// The static proxy (`$DAVIT_PROXY_BIN`, else a static build), as the lab finds it.
pub(crate) fn proxy_binary() -> PathBuf {
    davit_lab::static_binary("davit-proxy").expect("a static davit-proxy")
}

/// A compose project of one service behind the proxy, in its own directory.
struct Project {
    dir: tempfile::TempDir,
    info: davit_lab::LabInfo,
    proxy: PathBuf,
    name: String,
}

impl Project {
    fn new(info: &davit_lab::LabInfo, name: &str, compose: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        Project {
            dir,
            info: info.clone(),
            proxy: proxy_binary(),
            name: name.to_string(),
        }
    }

    /// `davit ARGS -f compose.yaml --host h1 --host h2` with `TAG=tag`, ready to run.
    fn command(&self, args: &[&str], tag: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_davit"));
        cmd.args(args)
            .arg("-f")
            .arg(self.dir.path().join("compose.yaml"));
        for h in &self.info.hosts {
            cmd.args(["--host", &h.url]);
        }
        cmd.current_dir(self.dir.path())
            .env("REGISTRY", self.info.registry.as_deref().expect("registry"))
            .env("TAG", tag)
            .env("DAVIT_INSECURE_REGISTRIES", "10.77.0.0/16")
            .env("DAVIT_PROXY_BIN", &self.proxy)
            .env("DAVIT_IDENTITY", &self.info.identity)
            .env("DAVIT_KNOWN_HOSTS", &self.info.known_hosts)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DAVIT_NOTIFY_URL");
        cmd
    }

    fn run(&self, args: &[&str], tag: &str) -> Output {
        self.command(args, tag).output().unwrap()
    }

    /// `run`, which must exit 0 (`what` names the step in the failure, with the hosts' state).
    fn run_ok(&self, args: &[&str], tag: &str, what: &str) -> Output {
        let out = self.run(args, tag);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            crate::ran(&out, &[INSTANCE])
        );
        out
    }

    /// The release history, as `davit releases --json` lists it, newest first.
    fn releases(&self) -> Vec<serde_json::Value> {
        let out = self.run_ok(&["releases", "--json"], "v2", "releases");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["releases"].as_array().unwrap().clone()
    }

    fn addresses(&self) -> Vec<String> {
        self.info.hosts.iter().map(|h| h.address.clone()).collect()
    }

    /// Each host's engine, reached directly (for setup and verification only).
    fn engines(&self) -> Vec<bollard::Docker> {
        self.info
            .hosts
            .iter()
            .map(|h| {
                let path = h.docker_host.trim_start_matches("unix://");
                bollard::Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION).unwrap()
            })
            .collect()
    }

    /// Every container of the project on a host, with the lock and release records: (name,
    /// running, release label).
    fn containers(&self, rt: &tokio::runtime::Runtime, docker: &bollard::Docker) -> Vec<Seen> {
        rt.block_on(async {
            let list = docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
                .unwrap();
            list.into_iter()
                .filter_map(|c| {
                    let name = c
                        .names
                        .as_ref()?
                        .first()?
                        .trim_start_matches('/')
                        .to_string();
                    let mine = name.starts_with(&format!("{}-", self.name))
                        || name.starts_with(&format!("davit-release-{}-", self.name))
                        || name == format!("davit-lock-{}", self.name);
                    mine.then(|| Seen {
                        running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                        release: c
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("dev.davit.release").cloned()),
                        name,
                    })
                })
                .collect()
        })
    }

    /// Asserts that the project is settled on a host on `release`: one app container, running, of
    /// that release, and no lock. Returns everything of the project there.
    fn settled(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &bollard::Docker,
        release: &str,
    ) -> Vec<Seen> {
        let list = self.containers(rt, docker);
        let app: Vec<&Seen> = list
            .iter()
            .filter(|c| c.name.starts_with(&format!("{}-", self.name)))
            .collect();
        assert_eq!(app.len(), 1, "{list:?}");
        assert!(app[0].running, "{list:?}");
        assert_eq!(app[0].release.as_deref(), Some(release), "{list:?}");
        assert!(
            !list
                .iter()
                .any(|c| c.name == format!("davit-lock-{}", self.name)),
            "the lock is still there: {list:?}"
        );
        list
    }

    /// Removes what an earlier run of the test left.
    fn clean(&self, rt: &tokio::runtime::Runtime) {
        for docker in self.engines() {
            for c in self.containers(rt, &docker) {
                rt.block_on(async {
                    let _ = docker
                        .remove_container(
                            &c.name,
                            Some(bollard::query_parameters::RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                });
            }
        }
    }
}

#[derive(Debug)]
struct Seen {
    name: String,
    running: bool,
    release: Option<String>,
}

/// `GET /` on `addr`, one connection per request; the body, or why it failed.
fn get(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET / HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text.lines().next().unwrap_or("empty answer").to_string());
    }
    Ok(text)
}

fn version_of(body: &str) -> &'static str {
    ["v1", "v2"]
        .into_iter()
        .find(|v| body.contains(&format!("davit-demo {v}")))
        .unwrap_or("other")
}

/// Clients hammering `http://ADDR:PORT/` on every host, the whole time.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<BTreeMap<String, u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addresses: &[String], port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = addresses
            .iter()
            .map(|a| {
                let target = format!("{a}:{port}");
                let (stop, ok, errors, versions) =
                    (stop.clone(), ok.clone(), errors.clone(), versions.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match get(&target) {
                            Ok(body) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                *versions
                                    .lock()
                                    .unwrap()
                                    .entry(version_of(&body).to_string())
                                    .or_default() += 1;
                            }
                            Err(e) => errors.lock().unwrap().push(format!("{target}: {e}")),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            versions,
            threads,
        }
    }

    /// Requests served so far, per version.
    fn versions(&self) -> BTreeMap<String, u64> {
        self.versions.lock().unwrap().clone()
    }

    /// Lets the last requests land, stops, and asserts that none failed and more than `min` were
    /// served; returns (served, versions seen).
    fn finish(self, min: u64) -> (u64, BTreeMap<String, u64>) {
        std::thread::sleep(Duration::from_millis(300));
        let (served, errors, versions) = self.stop();
        assert!(
            errors.is_empty(),
            "{} failed requests, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(served > min, "only {served} requests served");
        (served, versions)
    }

    /// Stops; returns (served, failures, versions seen).
    fn stop(self) -> (u64, Vec<String>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        let versions = self.versions.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), errors, versions)
    }
}

fn assert_serves(addresses: &[String], port: u16, version: &str) {
    for a in addresses {
        let body = get(&format!("{a}:{port}")).unwrap_or_else(|e| panic!("{a}:{port}: {e}"));
        assert_eq!(version_of(&body), version, "{a}:{port} serves {body:?}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn compose(name: &str, port: u16) -> String {
    format!(
        "name: {name}\nservices:\n  web:\n    image: ${{REGISTRY}}/davit-demo:${{TAG}}\n    environment:\n      GREETING: hello\n    x-davit:\n      proxy:\n        port: 8080\n        health: /health\n        publish: {port}\n"
    )
}

/// Starts `davit ARGS --json` with `TAG=tag` and reads its events until the new container on host
/// `first` is started (no host has switched yet). Returns the running child, the lines read, and the
/// rest of its output as it comes (read in the background, so the child never blocks on the pipe;
/// the receiver ends when the child closes its stdout).
fn spawn_until_started(
    p: &Project,
    args: &[&str],
    tag: &str,
    first: &str,
) -> (
    std::process::Child,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut args = args.to_vec();
    args.push("--json");
    let mut child = p
        .command(&args, tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no start-new on {first} ({e}); saw:\n{}", seen.join("\n")));
        let started = line.contains("\"completed\"")
            && line.contains("\"start-new\"")
            && line.contains(&format!("\"{first}\""));
        seen.push(line);
        if started {
            break;
        }
    }
    (child, seen, rx)
}

/// Lab instance 9 and project `name` (one service published on `port`) with nothing of an earlier
/// run left on the hosts.
fn fresh(name: &str, port: u16) -> (davit_lab::LabInfo, Project, tokio::runtime::Runtime) {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let rt = runtime();
    let p = Project::new(&info, name, &compose(name, port));
    p.clean(&rt);
    (info, p, rt)
}

#[test]
fn sigkill_mid_rollout_keeps_the_old_version_serving_the_lock_expires_and_a_rerun_converges() {
    let (name, port) = ("killed", 8201);
    let (info, p, rt) = fresh(name, port);
    let addrs = p.addresses();
    let ttl = Duration::from_secs(6);
    let deploy = ["deploy", "--lock-ttl", "6s", "--min-healthy-time", "1s"];

    p.run_ok(&deploy, "v1", "deploy v1");
    assert_serves(&addrs, port, "v1");

    // v2 rolls out under load; davit is SIGKILLed as soon as the first host's new container is
    // started (before any host switched).
    let load = Load::start(&addrs, port);
    let (mut child, seen, _rest) = spawn_until_started(&p, &deploy, "v2", &info.hosts[0].url);
    child.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "davit was killed by a signal");
    let killed_release = seen
        .iter()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["plan"]["release"].as_str().map(str::to_string)
        })
        .expect("the plan event names the release");

    // The old version keeps serving: the new container exists on the first host, no traffic
    // reaches it, and the lock is left behind on every host, no longer renewed. (That a deploy is
    // refused while a lease is fresh is the engine tests' business.)
    let engines = p.engines();
    let on_first = p.containers(&rt, &engines[0]);
    assert!(
        on_first
            .iter()
            .any(|c| c.release.as_deref() == Some(killed_release.as_str())),
        "the killed deploy's container is not on the first host: {on_first:?}"
    );
    let lock = format!("davit-lock-{name}");
    let heartbeats = |engines: &[bollard::Docker]| -> Vec<i64> {
        engines
            .iter()
            .map(|d| {
                let c = rt
                    .block_on(d.inspect_container(
                        &lock,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    ))
                    .unwrap_or_else(|e| panic!("no lock left behind: {e}"));
                c.host_config
                    .and_then(|h| h.restart_policy)
                    .and_then(|r| r.maximum_retry_count)
                    .expect("the lock's heartbeat")
            })
            .collect()
    };
    let stamped = heartbeats(&engines);
    assert_serves(&addrs, port, "v1");

    // Once the lease expired (no heartbeat since the kill), a re-run of the same deploy converges.
    let expired = killed_at + ttl + Duration::from_secs(2);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    assert_eq!(
        heartbeats(&engines),
        stamped,
        "nobody renews a killed deploy's lease"
    );
    assert!(
        load.versions().keys().all(|v| v == "v1"),
        "only the old version served until the re-run"
    );
    p.run_ok(&deploy, "v2", "re-run");
    let (served, versions) = load.finish(50);
    assert!(versions.contains_key("v2"), "{versions:?}");
    eprintln!("SIGKILL mid-rollout then re-run: {served} served, 0 failed, {versions:?}");
    assert_serves(&addrs, port, "v2");

    // Releases: v1 and the re-run's v2, both succeeded (the killed deploy recorded nothing).
    let releases = p.releases();
    assert_eq!(releases.len(), 2, "{releases:?}");
    for r in &releases {
        assert_eq!(r["outcome"], "succeeded", "{r}");
        assert_ne!(r["id"], killed_release.as_str());
    }
    let newest = releases[0]["id"].as_str().unwrap().to_string();
    assert_ne!(
        releases[0]["services"][0]["pinned"], releases[1]["services"][0]["pinned"],
        "{releases:?}"
    );

    // Nothing left over: on every host one running container, of the newest release, its release
    // record, the v1 record, and no lock.
    for docker in &engines {
        let list = p.settled(&rt, docker, &newest);
        let records = list
            .iter()
            .filter(|c| c.name.starts_with("davit-release-"))
            .count();
        assert_eq!(records, 2, "{list:?}");
    }
}

#[test]
fn ctrl_c_mid_rollout_puts_the_old_release_back_and_frees_the_lock() {
    let (name, port) = ("interrupted", 8202);
    let (info, p, rt) = fresh(name, port);
    let addrs = p.addresses();
    // A long lease: a re-run that gets through at once shows the lock was given back, not expired.
    let deploy = ["deploy", "--lock-ttl", "300s", "--min-healthy-time", "1s"];
    p.run_ok(&deploy, "v1", "deploy v1");
    let v1_release = p
        .containers(&rt, &p.engines()[0])
        .into_iter()
        .find_map(|c| {
            c.name
                .starts_with(&format!("{name}-"))
                .then_some(c.release?)
        })
        .expect("v1's container");

    // v2 under load; Ctrl-C (SIGINT) as soon as the first host's new container is started.
    let load = Load::start(&addrs, port);
    let (mut child, seen, rest) = spawn_until_started(&p, &deploy, "v2", &info.hosts[0].url);
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "davit did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<String> = seen.into_iter().chain(rest.iter()).collect();
    assert_eq!(status.code(), Some(1), "exit after Ctrl-C: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let result: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or_else(|| panic!("no result event:\n{}", lines.join("\n")));
    assert_eq!(result["outcome"], "rolled-back", "{result}");
    let cancelled = result["release"].as_str().unwrap().to_string();

    // The old release serves, nothing failed, and nothing of the interrupted release is left:
    // no container, no lock.
    let (_, versions) = load.finish(20);
    assert_eq!(versions.keys().collect::<Vec<_>>(), ["v1"], "{versions:?}");
    assert_serves(&addrs, port, "v1");
    for docker in &p.engines() {
        p.settled(&rt, docker, &v1_release);
    }

    // The history still has v1 as a success; a re-run right away (well within the lease) converges.
    let releases = p.releases();
    assert!(
        releases
            .iter()
            .any(|r| r["id"] == v1_release.as_str() && r["outcome"] == "succeeded"),
        "{releases:?}"
    );
    assert!(
        releases
            .iter()
            .all(|r| r["id"] != cancelled.as_str() || r["outcome"] != "succeeded"),
        "{releases:?}"
    );
    p.run_ok(&deploy, "v2", "re-run");
    assert_serves(&addrs, port, "v2");
}
