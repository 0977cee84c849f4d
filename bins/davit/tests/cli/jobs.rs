//! `davit deploy` with a one-off job (a `service_completed_successfully` dependency, e.g. a
//! migration) and `x-davit.hooks`, on a real lab host through its sshd, engine and davit-proxy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const INSTANCE: u8 = 16;
const PUBLISH: u16 = 8190;

fn deploy(dir: &Path, info: &davit_lab::LabInfo, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_davit"))
        .current_dir(dir)
        .args(["deploy", "--host", &info.hosts[0].url])
        .arg("--identity")
        .arg(&info.identity)
        .arg("--known-hosts")
        .arg(&info.known_hosts)
        .args(["--min-healthy-time", "1s", "--healthy-deadline", "60s"])
        .args(extra)
        .env("DAVIT_INSECURE_REGISTRIES", "10.77.0.0/16")
        .env_remove("DAVIT_NOTIFY_URL")
        .output()
        .unwrap()
}

/// The body of `GET /` through the host's proxy.
fn body(address: &str) -> String {
    let mut s = TcpStream::connect_timeout(
        &format!("{address}:{PUBLISH}").parse().unwrap(),
        Duration::from_secs(3),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

fn engine<T>(info: &davit_lab::LabInfo, f: impl AsyncFnOnce(bollard::Docker) -> T) -> T {
    let path = info.hosts[0]
        .docker_host
        .trim_start_matches("unix://")
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let docker =
            bollard::Docker::connect_with_unix(&path, 60, bollard::API_DEFAULT_VERSION).unwrap();
        f(docker).await
    })
}

/// Every container of the project `jobs`, running or not.
async fn project_containers(docker: &bollard::Docker) -> Vec<bollard::models::ContainerSummary> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec!["com.docker.compose.project=jobs".to_string()],
    )]);
    docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap()
}

/// The project's containers on the host: (service, state, "Exited (N)" or "").
fn containers(info: &davit_lab::LabInfo) -> Vec<(String, String, String)> {
    engine(info, async |docker| {
        let list = project_containers(&docker).await;
        let mut out: Vec<(String, String, String)> = list
            .into_iter()
            .map(|c| {
                let l = c.labels.unwrap_or_default();
                let status = c.status.unwrap_or_default();
                let exit = match status.find(')') {
                    Some(i) if status.starts_with("Exited (") => status[..=i].to_string(),
                    _ => String::new(),
                };
                (
                    l.get("com.docker.compose.service")
                        .cloned()
                        .unwrap_or_default(),
                    c.state.map(|s| s.to_string()).unwrap_or_default(),
                    exit,
                )
            })
            .collect();
        out.sort();
        out
    })
}

/// Removes every container of the project from the host.
fn remove_project(info: &davit_lab::LabInfo) {
    engine(info, async |docker| {
        let list = project_containers(&docker).await;
        for c in &list {
            let _ = docker
                .remove_container(
                    c.id.as_deref().unwrap_or_default(),
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    });
    assert!(containers(info).is_empty());
}

fn write_project(dir: &Path, registry: &str, web: &str, check: &str, pre: &str) {
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: jobs
services:
  db:
    image: {registry}/davit-demo:v1
  migrate:
    image: {registry}/davit-demo:v1
    command: ["check", "http://db:8080{check}"]
    depends_on: [db]
  web:
    image: {registry}/davit-demo:{web}
    depends_on:
      migrate: {{condition: service_completed_successfully}}
    x-davit:
      proxy: {{port: 8080, health: /health, publish: {PUBLISH}}}
x-davit:
  hooks:
    pre-deploy: '{pre}echo "pre $$DAVIT_HOOK $$DAVIT_PROJECT $$DAVIT_RELEASE $$DAVIT_SERVICES" >> hooks.log'
    post-deploy: [sh, -c, 'echo "post $$DAVIT_RELEASE $$DAVIT_OUTCOME" >> hooks.log']
"#
        ),
    )
    .unwrap();
}

fn hooks_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_job_runs_under_the_lock_before_its_dependents_and_hooks_run_around_the_deploy() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, 1);
    let registry = info.registry.clone().unwrap();
    let address = info.hosts[0].address.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Start from nothing: a previous run's containers would make the first deploy a no-op.
    remove_project(&info);

    // 1. The job succeeds: every service is up, the job exited 0, both hooks ran.
    write_project(dir, &registry, "v1", "/health", "");
    let out = deploy(dir, &info, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::ran(&out, &[INSTANCE])
    );
    assert!(body(&address).contains("v1"));
    let cs = containers(&info);
    let migrate: Vec<_> = cs.iter().filter(|c| c.0 == "migrate").collect();
    assert_eq!(migrate.len(), 1, "{cs:?}");
    assert_eq!(migrate[0].1, "exited", "{cs:?}");
    assert_eq!(migrate[0].2, "Exited (0)", "{cs:?}");
    // Docker Compose itself, on the server, sees the project: same labels, same names.
    let ps = Command::new(
        std::env::var("DAVIT_COMPOSE_BIN").expect("DAVIT_COMPOSE_BIN (tests/run.sh sets it)"),
    )
    .args(["-p", "jobs", "ps", "-a", "--format", "json"])
    .env("DOCKER_HOST", &info.hosts[0].docker_host)
    .output()
    .unwrap();
    assert!(ps.status.success(), "{}", crate::report(&ps));
    let mut seen: Vec<(String, String)> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            (
                v["Service"].as_str().unwrap_or_default().to_string(),
                v["State"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("db", "running"), ("migrate", "exited"), ("web", "running")]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        "{}",
        crate::report(&ps)
    );
    let log = hooks_log(dir);
    assert_eq!(log.len(), 2, "{log:?}");
    let pre: Vec<&str> = log[0].split(' ').collect();
    assert_eq!(&pre[..3], ["pre", "pre-deploy", "jobs"], "{log:?}");
    assert_eq!(pre[4], "db,migrate,web", "{log:?}");
    let release = pre[3];
    assert_eq!(log[1], format!("post {release} succeeded"));

    // 2. Nothing changed: the job does not run again, no hook runs.
    let out = deploy(dir, &info, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::ran(&out, &[INSTANCE])
    );
    assert_eq!(
        hooks_log(dir).len(),
        2,
        "no hook for a deploy with nothing to do"
    );
    assert_eq!(containers(&info), cs, "nothing touched");

    // 3. The job fails: the deploy fails before web moves; web keeps serving v1.
    write_project(dir, &registry, "v2", "/no-such-path", "");
    let out = deploy(dir, &info, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::ran(&out, &[INSTANCE])
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job migrate") && err.contains("exited with code 1"),
        "{}",
        crate::report(&out)
    );
    assert!(body(&address).contains("v1"), "the old web still serves");
    let web: Vec<_> = containers(&info)
        .into_iter()
        .filter(|c| c.0 == "web")
        .collect();
    assert_eq!(web.len(), 1, "no v2 web was started: {web:?}");
    let log = hooks_log(dir);
    assert!(log[3].ends_with(" rolled-back"), "{log:?}");

    // 4. A failing pre-deploy hook fails the deploy with nothing changed.
    write_project(dir, &registry, "v2", "/health", "exit 3; ");
    let before = containers(&info);
    let out = deploy(dir, &info, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::ran(&out, &[INSTANCE])
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pre-deploy hook"),
        "{}",
        crate::report(&out)
    );
    assert_eq!(containers(&info), before, "nothing touched");
    assert!(body(&address).contains("v1"));

    // 5. --skip-hooks, and the fixed job: v2 goes out.
    let out = deploy(dir, &info, &["--skip-hooks"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::ran(&out, &[INSTANCE])
    );
    assert!(body(&address).contains("v2"));
    assert_eq!(hooks_log(dir).len(), 5, "the skipped hooks did not run");
}
