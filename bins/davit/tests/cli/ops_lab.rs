//! The operations toolkit wired into the commands that touch hosts, against lab instance 8 (2 hosts)
//! and, for `davit prune` on hosts, instance 15 (1 host, since prune removes images):
//! preflight refusals, secrets kept out of every output, webhooks during real deploys, `status`,
//! `logs` and host `prune`.
//!
//! One deploy of the project `ops-lab` (2 hosts, secrets in an env file) is shared by the tests that
//! read it (`shared()` deploys it once); the webhook and prune tests deploy their own projects on
//! their own ports, so every test of this module can run at the same time.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use davit_lab::LabInfo;

use crate::text;

const INSTANCE: u8 = 8;
const HOSTS: u16 = 2;
const PRUNE_INSTANCE: u8 = 15;

fn lab() -> LabInfo {
    davit_lab::for_tests(INSTANCE, HOSTS).1
}

/// A project directory: `compose.yaml` with one service `web` behind the proxy, reading
/// `secrets.env`, and an environment `lab` holding the lab's hosts.
struct Project {
    dir: tempfile::TempDir,
    info: LabInfo,
}

impl Project {
    fn new(info: &LabInfo, name: &str, publish: u16, hosts: usize, secrets: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let host_list: Vec<&str> = info.hosts[..hosts].iter().map(|h| h.url.as_str()).collect();
        let compose = format!(
            "name: {name}
services:
  web:
    image: ${{REGISTRY}}/davit-demo:${{TAG-v1}}
    env_file: secrets.env
    environment:
      GREETING: hello
    x-davit:
      proxy: {{port: 8080, health: /health, publish: {publish}}}
x-davit:
  environments:
    lab:
      hosts: [{}]
      variables: {{REGISTRY: \"{}\"}}
",
            host_list.join(", "),
            info.registry.as_deref().expect("the lab has a registry"),
        );
        fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        fs::write(dir.path().join("secrets.env"), secrets).unwrap();
        Project {
            dir,
            info: info.clone(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_davit"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("DAVIT_NOTIFY_URL")
            .env_remove("TAG")
            .env("DAVIT_INSECURE_REGISTRIES", "10.77.0.0/16")
            .env("DAVIT_PROXY_BIN", crate::deploy::proxy_binary())
            .env("DAVIT_IDENTITY", &self.info.identity)
            .env("DAVIT_KNOWN_HOSTS", &self.info.known_hosts);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }
}

fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        crate::ran(out, &[INSTANCE, PRUNE_INSTANCE])
    );
}

const DEPLOY: [&str; 8] = [
    "deploy",
    "--env",
    "lab",
    "--min-healthy-time",
    "1s",
    "--healthy-deadline",
    "40s",
    "--json",
];

fn docker(docker_host: &str) -> bollard::Docker {
    bollard::Docker::connect_with_unix(
        docker_host,
        120,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every container of the project on a host (any state), inspected.
fn containers(docker_host: &str, label: &str) -> Vec<bollard::models::ContainerInspectResponse> {
    use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
    let d = docker(docker_host);
    block_on(async {
        let list = d
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(std::collections::HashMap::from([(
                    "label".to_string(),
                    vec![label.to_string()],
                )])),
                ..Default::default()
            }))
            .await
            .unwrap();
        let mut out = Vec::new();
        for c in list {
            out.push(
                d.inspect_container(c.id.as_deref().unwrap(), None::<InspectContainerOptions>)
                    .await
                    .unwrap(),
            );
        }
        out
    })
}

/// Removes what earlier runs left of `project` on the hosts (its containers and release records),
/// so a test starts from an empty history whatever ran on the lab before.
fn reset(info: &LabInfo, project: &str) {
    for h in &info.hosts {
        let d = docker(&h.docker_host);
        for label in [
            format!("com.docker.compose.project={project}"),
            format!("dev.davit.release.project={project}"),
        ] {
            for c in containers(&h.docker_host, &label) {
                block_on(d.remove_container(
                    c.id.as_deref().unwrap(),
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                ))
                .unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared deploy: `ops-lab` on both hosts of instance 8, with secrets in its env file.

const SHARED_PORT: u16 = 18081;

struct Shared {
    project: Project,
    /// The secret values of `secrets.env`.
    secrets: Vec<String>,
    deploy: Output,
}

fn hex(seed: u8) -> String {
    // Distinct, generated-looking values (not random: a failure must be reproducible).
    (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(seed)))
        .collect()
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    let _g = INIT.lock().unwrap_or_else(|e| e.into_inner());
    SHARED.get_or_init(|| {
        let info = lab();
        // DAVIT_DEMO_VERSION is what the demo prints in its log and serves on `GET /`, so the
        // secret really reaches the container's output, which `davit logs` must mask.
        let secrets = vec![hex(1), hex(2), format!("v1-{}", &hex(3)[..24])];
        let env = format!(
            "DB_PASSWORD={}\nSESSION_KEY={}\nDAVIT_DEMO_VERSION={}\nPORT=8080\n",
            secrets[0], secrets[1], secrets[2]
        );
        reset(&info, "ops-lab");
        let project = Project::new(&info, "ops-lab", SHARED_PORT, 2, &env);
        // Debug logs include the Docker API request bodies (bollard logs them), which carry the
        // containers' environment: they must come out masked.
        let deploy = project.run(&DEPLOY, &[("DAVIT_LOG", "debug")]);
        assert_code(&deploy, 0);
        Shared {
            project,
            secrets,
            deploy,
        }
    })
}

fn assert_no_secret(what: &str, haystack: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !haystack.contains(s.as_str()),
            "{what} shows the secret {s}:\n{haystack}"
        );
    }
}

#[test]
fn secrets_reach_the_containers_and_no_output_record_or_log_shows_them() {
    let sh = shared();
    let secrets = &sh.secrets;
    let p = &sh.project;
    assert_no_secret("deploy --json", &text(&sh.deploy), secrets);
    let log = String::from_utf8_lossy(&sh.deploy.stderr);
    assert!(
        log.contains("=********"),
        "no masked value in the debug log:\n{log}"
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&sh.deploy.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "result" && e["outcome"] == "succeeded"),
        "{events:?}"
    );

    let mut outputs = Vec::new();
    for args in [
        &["releases", "--env", "lab", "--json"][..],
        &["releases", "--env", "lab"],
        &["status", "--env", "lab", "--json"],
        &["status", "--env", "lab"],
        &["logs", "web", "--env", "lab"],
        &["deploy", "--env", "lab", "--dry-run"],
        &["deploy", "--env", "lab", "--dry-run", "--json"],
    ] {
        let out = p.run(args, &[("DAVIT_LOG", "debug")]);
        assert_code(&out, 0);
        assert_no_secret(&args.join(" "), &text(&out), secrets);
        outputs.push(out);
    }
    // The demo printed its version (a secret) at start: `davit logs` shows it masked, from both
    // hosts.
    let logs = String::from_utf8_lossy(&outputs[4].stdout).to_string();
    for h in &p.info.hosts {
        assert!(
            logs.lines()
                .any(|l| l.starts_with(&h.address) && l.contains("davit-demo ******** listening")),
            "{logs}"
        );
    }

    for h in &p.info.hosts {
        // The raw release records on the host: labels (the snapshot) hold no value.
        let records = containers(&h.docker_host, "dev.davit.release.project=ops-lab");
        assert!(!records.is_empty());
        for r in &records {
            let labels = serde_json::to_string(&r.config.as_ref().unwrap().labels).unwrap();
            assert!(labels.contains("dev.davit.release.json"), "{labels}");
            assert_no_secret("the release record's labels", &labels, secrets);
        }
        // The container really received them.
        let web = containers(&h.docker_host, "com.docker.compose.service=web")
            .into_iter()
            .filter(|c| {
                c.config.as_ref().unwrap().labels.as_ref().unwrap()["com.docker.compose.project"]
                    == "ops-lab"
                    && c.state.as_ref().unwrap().running == Some(true)
            })
            .collect::<Vec<_>>();
        assert_eq!(web.len(), 1);
        let env = web[0].config.as_ref().unwrap().env.clone().unwrap();
        for (k, v) in [
            ("DB_PASSWORD", &secrets[0]),
            ("SESSION_KEY", &secrets[1]),
            ("DAVIT_DEMO_VERSION", &secrets[2]),
        ] {
            assert!(env.contains(&format!("{k}={v}")), "{k} not in {env:?}");
        }
        // And serves with it: the demo's body is its version.
        let body = http_get(&format!("{}:{SHARED_PORT}", h.address), "/");
        assert!(body.contains(&secrets[2]), "{body}");
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn status_reports_release_digest_containers_and_host_resources() {
    let sh = shared();
    let out = sh.project.run(&["status", "--env", "lab", "--json"], &[]);
    assert_code(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["project"], "ops-lab");
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    for (h, lab_host) in hosts.iter().zip(&sh.project.info.hosts) {
        assert_eq!(h["host"], lab_host.url.as_str());
        assert_eq!(h["ok"], true);
        let release = h["release"].as_str().unwrap();
        let web = &h["services"][0];
        assert_eq!(web["service"], "web");
        assert_eq!(web["release"], release);
        assert!(
            web["digest"].as_str().unwrap().starts_with("sha256:"),
            "{web}"
        );
        let c = &web["containers"][0];
        assert_eq!(c["state"], "running");
        assert!(c["uptime_secs"].as_u64().is_some(), "{c}");
        assert_eq!(c["restarts"], 0);
        assert!(
            matches!(c["health"].as_str(), Some("healthy" | "starting")),
            "{c}"
        );
        let r = &h["resources"];
        assert!(r["cpus"].as_u64().unwrap() >= 1, "{r}");
        let pct = r["cpu_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{r}");
        assert!(r["load"].as_array().unwrap().len() == 3, "{r}");
        let (used, total) = (
            r["memory_used_bytes"].as_u64().unwrap(),
            r["memory_total_bytes"].as_u64().unwrap(),
        );
        assert!(used > 0 && used < total, "{r}");
        let (dused, dtotal, davail) = (
            r["disk_used_bytes"].as_u64().unwrap(),
            r["disk_total_bytes"].as_u64().unwrap(),
            r["disk_available_bytes"].as_u64().unwrap(),
        );
        assert!(dused + davail <= dtotal && dtotal > 0, "{r}");
    }

    // The table: a block per host with its resources and one row per container.
    let out = sh.project.run(&["status", "--env", "lab"], &[]);
    assert_code(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    for lab_host in &sh.project.info.hosts {
        assert!(
            table.contains(&format!("{}  release ", lab_host.url)),
            "{table}"
        );
    }
    assert!(
        table.contains("SERVICE") && table.contains("UPTIME") && table.contains("RESTARTS"),
        "{table}"
    );
    assert_eq!(table.matches("  cpu ").count(), 2, "{table}");
    assert_eq!(table.matches(" running ").count(), 2, "{table}");

    // An unknown --service is refused before any host is touched.
    let out = sh
        .project
        .run(&["status", "--env", "lab", "--service", "wbe"], &[]);
    assert_code(&out, 2);
    assert!(text(&out).contains("did you mean `web`"), "{}", text(&out));
}

#[test]
fn status_watch_redraws_until_interrupted() {
    let sh = shared();
    let mut child = sh
        .project
        .command(
            &[
                "status",
                "--env",
                "lab",
                "--json",
                "--watch",
                "--interval",
                "300ms",
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut frames = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("a frame").unwrap();
        frames.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    // Still running after two frames: it only stops when told to.
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    for f in &frames {
        assert_eq!(f["hosts"].as_array().unwrap().len(), 2, "{f}");
        assert!(f["time"].as_str().unwrap().ends_with('Z'));
    }
    let uptime = |f: &serde_json::Value| {
        f["hosts"][0]["services"][0]["containers"][0]["uptime_secs"].clone()
    };
    assert!(uptime(&frames[0]).is_u64() && uptime(&frames[1]).is_u64());

    // The people's form: each frame under a header.
    let mut child = sh
        .project
        .command(
            &["status", "--env", "lab", "--watch", "--interval", "300ms"],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut headers = 0;
    for line in lines {
        if line.unwrap().starts_with("every 300ms: davit status") {
            headers += 1;
            if headers == 2 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(headers, 2);
}

#[test]
fn logs_come_from_every_host_prefixed_and_coloured_per_host() {
    let sh = shared();
    let p = &sh.project;
    let hosts = &p.info.hosts;
    let out = p.run(&["logs", "web", "--env", "lab", "--color", "never"], &[]);
    assert_code(&out, 0);
    let plain = String::from_utf8_lossy(&out.stdout).to_string();
    for h in hosts {
        assert!(
            plain
                .lines()
                .any(|l| l.starts_with(&format!("{} | davit-demo", h.address))),
            "{plain}"
        );
    }
    assert!(!plain.contains('\x1b'), "{plain}");

    // Colours: one per host, around the prefix.
    let out = p.run(&["logs", "web", "--env", "lab", "--color", "always"], &[]);
    assert_code(&out, 0);
    let colored = String::from_utf8_lossy(&out.stdout).to_string();
    let color_of = |addr: &str| {
        colored
            .lines()
            .find(|l| l.contains(&format!("{addr} |")))
            .and_then(|l| l.strip_prefix("\x1b["))
            .and_then(|l| l.split_once('m'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_else(|| panic!("no coloured line of {addr}: {colored:?}"))
    };
    assert_ne!(color_of(&hosts[0].address), color_of(&hosts[1].address));

    // --tail 1: one line per host.
    let out = p.run(&["logs", "web", "--env", "lab", "--tail", "1"], &[]);
    assert_code(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // --since: an hour ago has the start lines, a time after they were printed has none.
    let out = p.run(&["logs", "web", "--env", "lab", "--since", "1h"], &[]);
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("listening"));
    let out = p.run(
        &[
            "logs",
            "web",
            "--env",
            "lab",
            "--since",
            "2099-01-01T00:00:00Z",
        ],
        &[],
    );
    assert_code(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = p.run(
        &["logs", "web", "--env", "lab", "--since", "yesterday"],
        &[],
    );
    assert_code(&out, 2);

    // --follow streams new lines as they come: a SIGTERM-less probe, `GET /slow` is not logged,
    // so the test reads the start lines and sees the stream stay open.
    let mut child = p
        .command(
            &["logs", "web", "--env", "lab", "--follow", "--tail", "1"],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(lines.next().expect("a line").unwrap());
    }
    let open = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(open, "--follow ended by itself");
    for h in hosts {
        assert!(seen.iter().any(|l| l.starts_with(&h.address)), "{seen:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Preflight: every command that touches hosts refuses bad input with exit 2 before connecting.

#[test]
fn every_command_that_touches_hosts_runs_preflight_first() {
    let info = lab();
    // A host where nothing listens: a command that got as far as connecting would fail with 1.
    let nowhere = "ssh://root@127.0.0.1:1";
    let p = Project::new(&info, "ops-preflight", 18089, 1, "API_TOKEN=abcdefgh\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["deploy", "--service", "wbe"], "did you mean `web`"),
        (vec!["logs", "wbe"], "valid services: web"),
        (vec!["status", "--service", "db"], "valid services: web"),
    ];
    for (args, needle) in cases {
        let mut all = args.clone();
        all.extend(["--env", "lab", "--host", nowhere]);
        let out = p.run(&all, &[]);
        assert_code(&out, 2);
        assert!(text(&out).contains(needle), "{all:?}: {}", text(&out));
    }

    // A variable with no value and no default (REGISTRY comes only from the environment `lab`).
    for cmd in [
        &["deploy"][..],
        &["rollback"],
        &["status"],
        &["logs", "web"],
        &["releases"],
        &["prune", "--keep", "2"],
    ] {
        let mut all = cmd.to_vec();
        all.extend(["--host", nowhere]);
        let out = p.run(&all, &[]);
        assert_code(&out, 2);
        assert!(
            text(&out).contains("variable `REGISTRY` is not set"),
            "{all:?}: {}",
            text(&out)
        );
    }

    // A missing env file.
    fs::remove_file(p.path().join("secrets.env")).unwrap();
    for cmd in [&["deploy"][..], &["rollback"], &["releases"]] {
        let mut all = cmd.to_vec();
        all.extend(["--env", "lab", "--host", nowhere]);
        let out = p.run(&all, &[]);
        assert_code(&out, 2);
        assert!(
            text(&out).contains("secrets.env")
                && (text(&out).contains("does not exist") || text(&out).contains("not found")),
            "{all:?}: {}",
            text(&out)
        );
    }
    fs::write(p.path().join("secrets.env"), "API_TOKEN=abcdefgh\n").unwrap();

    // Odd image references: the registry twice, an empty tag.
    let registry = info.registry.clone().unwrap();
    for (env, needle) in [
        (
            vec![("REGISTRY", format!("{registry}/{registry}"))],
            "inside its path",
        ),
        (
            vec![("REGISTRY", registry.clone()), ("TAG", String::new())],
            "empty tag",
        ),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for cmd in [&["deploy"][..], &["status"], &["prune", "--keep", "1"]] {
            let mut all = cmd.to_vec();
            all.extend(["--host", nowhere]);
            let out = p.run(&all, &env);
            assert_code(&out, 2);
            assert!(text(&out).contains(needle), "{all:?}: {}", text(&out));
        }
    }
    // The same project with its variables set passes preflight, and then fails to connect (1).
    let out = p.run(&["status", "--host", nowhere], &[("REGISTRY", &registry)]);
    assert_code(&out, 1);
}

// ---------------------------------------------------------------------------------------------
// Webhooks during real deploys.

/// A webhook receiver on loopback: every POST body, in order.
fn receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(&mut stream);
            let mut len = 0;
            let mut first = true;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if first {
                    first = false;
                    continue;
                }
                if line.trim().is_empty() {
                    break;
                }
                if let Some((_, v)) = line
                    .split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx
                .send(serde_json::from_slice(&body).unwrap_or_default())
                .is_err()
            {
                return;
            }
        }
    });
    (format!("http://{addr}/hook"), rx)
}

/// A webhook URL where nothing listens.
fn down_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("generic=http://{addr}/down")
}

fn outcomes(rx: &mpsc::Receiver<serde_json::Value>, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => out.push(v),
            Err(_) => panic!("only {} of {n} notifications: {out:?}", out.len()),
        }
    }
    // Nothing more than expected.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "more notifications than {n}: {out:?}"
    );
    out
}

#[test]
fn webhooks_hear_start_success_failure_and_rollback_and_a_down_one_fails_nothing() {
    let info = lab();
    reset(&info, "ops-hooks");
    let secret = hex(9);
    let p = Project::new(
        &info,
        "ops-hooks",
        18082,
        1,
        &format!("API_TOKEN={secret}\n"),
    );
    let (url, rx) = receiver();
    let down = down_url();
    let notify = ["--notify", &url, "--notify", &down];
    let run = |tag: &str, extra: &[&str]| {
        let mut args = DEPLOY.to_vec();
        args.extend(notify);
        args.extend(extra);
        p.run(&args, &[("TAG", tag)])
    };
    let shape = |v: &serde_json::Value| {
        (
            v["outcome"].as_str().unwrap_or_default().to_string(),
            v["project"].as_str().unwrap_or_default().to_string(),
            v["environment"].as_str().unwrap_or_default().to_string(),
        )
    };

    // v1: started, succeeded. The webhook that is down is reported, and the deploy succeeds.
    let out = run("v1", &[]);
    assert_code(&out, 0);
    let got = outcomes(&rx, 2);
    assert_eq!(
        got.iter().map(shape).collect::<Vec<_>>(),
        [
            ("started".into(), "ops-hooks".into(), "lab".into()),
            ("succeeded".into(), "ops-hooks".into(), "lab".into())
        ]
    );
    assert!(got[1]["release"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(got[1]["hosts"][0], info.hosts[0].url.as_str());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let notified: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "notified")
        .collect();
    assert_eq!(notified.len(), 4, "{stdout}");
    assert_eq!(notified.iter().filter(|v| v["ok"] == true).count(), 2);
    assert!(
        notified
            .iter()
            .filter(|v| v["ok"] == false)
            .all(|v| v["error"].as_str().unwrap().contains("connect")),
        "{notified:?}"
    );

    // broken: started, failed, rolled back; exit 1.
    let out = run("broken", &[]);
    assert_code(&out, 1);
    let got = outcomes(&rx, 3);
    assert_eq!(
        got.iter()
            .map(|v| v["outcome"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ["started", "failed", "rolled_back"]
    );
    assert!(
        got[1]["message"].as_str().unwrap().contains("failed"),
        "{got:?}"
    );
    for v in &got {
        assert!(!v.to_string().contains(&secret), "{v}");
    }
    // v1 still serves.
    let body = http_get(&format!("{}:18082", info.hosts[0].address), "/");
    assert!(body.contains("davit-demo v1"), "{body}");

    // v2, then `davit rollback`: started, rolled back (to v1).
    assert_code(&run("v2", &[]), 0);
    assert_eq!(outcomes(&rx, 2).len(), 2);
    let mut args = vec!["rollback", "--env", "lab", "--json"];
    args.extend(notify);
    let out = p.run(&args, &[]);
    assert_code(&out, 0);
    let got = outcomes(&rx, 2);
    assert_eq!(
        got.iter()
            .map(|v| v["outcome"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        ["started", "rolled_back"]
    );
    assert!(
        got[1]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back to release"),
        "{got:?}"
    );
    let body = http_get(&format!("{}:18082", info.hosts[0].address), "/");
    assert!(body.contains("davit-demo v1"), "{body}");

    // x-davit.notify in the compose file is used too (with no --notify).
    let compose = fs::read_to_string(p.path().join("compose.yaml")).unwrap();
    fs::write(
        p.path().join("compose.yaml"),
        compose.replace(
            "x-davit:\n  environments:",
            &format!("x-davit:\n  notify: [\"{url}\"]\n  environments:"),
        ),
    )
    .unwrap();
    assert_code(&run_plain(&p, "v1"), 0);
    assert_eq!(outcomes(&rx, 2)[1]["outcome"], "succeeded");
}

fn run_plain(p: &Project, tag: &str) -> Output {
    p.run(&DEPLOY, &[("TAG", tag)])
}

// ---------------------------------------------------------------------------------------------
// `davit prune` on hosts (instance 15: it removes images).

#[test]
fn prune_on_hosts_removes_old_releases_images_and_stopped_containers() {
    let (_lab, info) = davit_lab::for_tests(PRUNE_INSTANCE, 1);
    reset(&info, "ops-prune");
    let p = Project::new(&info, "ops-prune", 18083, 1, "API_TOKEN=abcdefgh\n");
    let host = &info.hosts[0];
    let registry = info.registry.clone().unwrap();
    // v1 (release 1), v2 (release 2), broken (release 3, rolled back: v2 keeps running).
    assert_code(&run_plain(&p, "v1"), 0);
    assert_code(&run_plain(&p, "v2"), 0);
    assert_code(&run_plain(&p, "broken"), 1);
    let d = docker(&host.docker_host);
    let digest = |tag: &str| -> String {
        let out = p.run(&["releases", "--env", "lab", "--json"], &[]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["services"][0]["image"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(":{tag}"))
            })
            .map(|r| r["services"][0]["pinned"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (v1, v2, broken) = (digest("v1"), digest("v2"), digest("broken"));
    let present = |image: &str| block_on(d.inspect_image(image)).is_ok();
    assert!(present(&v1) && present(&v2) && present(&broken));
    // A crashed container of the project, left stopped.
    block_on(async {
        let labels = std::collections::HashMap::from([
            (
                "com.docker.compose.project".to_string(),
                "ops-prune".to_string(),
            ),
            ("com.docker.compose.service".to_string(), "web".to_string()),
        ]);
        d.create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some("ops-prune-web-crashed".into()),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some(v2.clone()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    let stopped = || {
        containers(&host.docker_host, "com.docker.compose.project=ops-prune")
            .iter()
            .any(|c| c.name.as_deref() == Some("/ops-prune-web-crashed"))
    };
    assert!(stopped());

    // Dry run: says what would go, removes nothing.
    let out = p.run(
        &[
            "prune",
            "--env",
            "lab",
            "--keep",
            "2",
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_code(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &doc["hosts"][0];
    assert_eq!(doc["dry_run"], true);
    assert_eq!(h["kept_releases"].as_array().unwrap().len(), 2, "{h}");
    let images: Vec<&str> = h["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, [v1.as_str()], "{h}");
    let names: Vec<&str> = h["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ops-prune-web-crashed"), "{h}");
    assert!(present(&v1) && stopped());

    // For real: v1's image and the stopped container go; the running v2 and the kept broken stay.
    let out = p.run(&["prune", "--env", "lab", "--keep", "2"], &[]);
    assert_code(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("removed image {v1}")), "{said}");
    assert!(
        said.contains("removed container ops-prune-web-crashed"),
        "{said}"
    );
    assert!(!present(&v1), "{said}");
    assert!(present(&v2) && present(&broken), "{said}");
    assert!(!stopped());
    let body = http_get(&format!("{}:18083", host.address), "/");
    assert!(body.contains("davit-demo v2"), "{body}");
    // The release history stays whole.
    let out = p.run(&["releases", "--env", "lab", "--json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["releases"].as_array().unwrap().len(), 3);

    // Nothing left to do the second time; the registry form is refused with host flags.
    let out = p.run(&["prune", "--env", "lab", "--keep", "2"], &[]);
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
    let out = p.run(
        &[
            "prune",
            &format!("{registry}/davit-demo"),
            "--keep",
            "2",
            "--env",
            "lab",
        ],
        &[],
    );
    assert_code(&out, 2);
}
