//! `davit probe`: exit 0 healthy within the deadline, 1 not, 2 for a bad target or option.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Runs `davit probe ARGS`, killing it if it has not finished within a generous bound.
fn probe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_davit"))
        .arg("probe")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bound = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > bound {
            child.kill().unwrap();
            panic!("davit probe {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}")))
        .collect()
}

/// An HTTP server that answers 503 to its first `failures` requests, then 200 `ready`. Returns
/// its port and the count of requests it answered.
fn turning_healthy(failures: u32) -> (u16, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if n < failures {
                ("503 Service Unavailable", "wait")
            } else {
                ("200 OK", "ready")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}

#[test]
fn bad_targets_exit_2_naming_the_target() {
    for (target, says) in [
        ("ftp://example", "unsupported scheme \"ftp\""),
        ("tcp://127.0.0.1", "missing port"),
        ("127.0.0.1:80", "expected http://"),
        ("container://-bad", "container name"),
        ("container://web@ftp://x", "the host after '@'"),
    ] {
        let out = probe(&[target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("bad probe target {target:?}")) && err.contains(says),
            "{target}: {err}"
        );
    }
}

#[test]
fn bad_options_exit_2() {
    for args in [
        &["tcp://127.0.0.1:9", "--interval", "5"][..],
        &["tcp://127.0.0.1:9", "--deadline", "soon"],
        &["tcp://127.0.0.1:9", "--failure-threshold", "0"],
        &["http://127.0.0.1:9/", "--expect-status", "6xx"],
        &["tcp://127.0.0.1:9", "--expect-body", "ok"],
        &["http://127.0.0.1:9/", "--header", "no colon"],
        &["http://127.0.0.1:9/", "--from", "ftp://x"],
        &["container://web", "--from", "local"],
    ] {
        let out = probe(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "nothing is probed: {args:?}");
    }
    let err = stderr(&probe(&["tcp://127.0.0.1:9", "--expect-body", "ok"]));
    assert!(
        err.contains("--expect-body applies to http:// and https:// targets only"),
        "{err}"
    );
}

#[test]
fn healthy_after_a_delay_exits_0_and_sees_it_at_the_next_probe() {
    let (port, answered) = turning_healthy(3);
    let url = format!("http://127.0.0.1:{port}/health");
    let out = probe(&[
        &url,
        "--interval",
        "100ms",
        "--failure-threshold",
        "10",
        "--deadline",
        "60s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events = json_lines(&out);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "attempt", "result", "attempt", "result", "attempt", "result", "attempt", "result",
            "verdict"
        ]
    );
    let outcomes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["failure", "failure", "failure", "success"]);
    assert_eq!(
        events[1]["detail"],
        "status 503 Service Unavailable, expected 200-399"
    );
    assert_eq!(events[8]["healthy"], true);
    // Health was seen by the first probe after it arrived, and no probe went unreported.
    assert_eq!(answered.load(Ordering::SeqCst), 4);
    assert_eq!(events[7]["attempt"], 4);
    // Attempts are an interval apart, never sooner.
    let starts: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "attempt")
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[1] >= w[0] + 100), "{starts:?}");
}

#[test]
fn human_output_reports_progress_and_the_verdict() {
    let (port, _) = turning_healthy(1);
    let url = format!("http://127.0.0.1:{port}/");
    let out = probe(&[
        &url,
        "--interval",
        "100ms",
        "--expect-body",
        "ready",
        "--expect-status",
        "2xx",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("healthy: {url}\n")
    );
    let err = stderr(&out);
    assert!(
        err.contains("probe #1: failure")
            && err.contains("status 503 Service Unavailable, expected 200-299"),
        "{err}"
    );
    assert!(
        err.contains("probe #2: success") && err.contains("body contains \"ready\""),
        "{err}"
    );
}

#[test]
fn a_closed_port_exits_1_after_the_failure_threshold() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("tcp://127.0.0.1:{port}");
    let out = probe(&[&target, "--interval", "100ms", "--failure-threshold", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "unhealthy: {target}: 2 consecutive failures, last: connect to 127.0.0.1:{port}"
        )),
        "{stdout}"
    );
}

#[test]
fn gives_up_at_the_deadline_never_later() {
    // Accepts connections and never answers: only the deadline can end the wait.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let url = format!("http://127.0.0.1:{port}/");
    let out = probe(&[
        &url,
        "--timeout",
        "30s",
        "--interval",
        "100ms",
        "--deadline",
        "1500ms",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = json_lines(&out);
    let verdict = events.last().unwrap();
    assert_eq!(verdict["event"], "verdict");
    assert_eq!(verdict["healthy"], false);
    assert_eq!(verdict["at_ms"], 1500);
    let reason = verdict["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("not healthy within the deadline of 1.5s, last: timed out after 1."),
        "{reason}"
    );
    // The one probe was cut at the deadline, not at its 30 s timeout.
    assert_eq!(events.iter().filter(|e| e["event"] == "attempt").count(), 1);
}

#[test]
fn container_health_through_the_engine() {
    use bollard::query_parameters::{
        CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
    };
    use futures_util::StreamExt;

    let (_lab, info) = davit_lab::for_tests(4, 1);
    let host = &info.hosts[0];
    let registry = info.registry.clone().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let docker =
        bollard::Docker::connect_with_unix(&host.docker_host, 120, bollard::API_DEFAULT_VERSION)
            .unwrap();
    rt.block_on(async {
        for (tag, name) in [("v1", "cli-probe-v1"), ("broken", "cli-probe-broken")] {
            let image = format!("{registry}/davit-demo");
            let opts = CreateImageOptions {
                from_image: Some(image.clone()),
                tag: Some(tag.into()),
                ..Default::default()
            };
            let mut pull = docker.create_image(Some(opts), None, None);
            while let Some(step) = pull.next().await {
                step.unwrap();
            }
            let rm = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = docker.remove_container(name, Some(rm)).await;
            let body = bollard::models::ContainerCreateBody {
                image: Some(format!("{image}:{tag}")),
                ..Default::default()
            };
            let opts = CreateContainerOptions {
                name: Some(name.into()),
                ..Default::default()
            };
            docker.create_container(Some(opts), body).await.unwrap();
            docker.start_container(name, None).await.unwrap();
        }
    });
    let ssh_args = |target: String| {
        vec![
            target,
            "--identity".into(),
            info.identity.display().to_string(),
            "--known-hosts".into(),
            info.known_hosts.display().to_string(),
            "--interval".into(),
            "500ms".into(),
            "--failure-threshold".into(),
            "1".into(),
            "--deadline".into(),
            "90s".into(),
        ]
    };
    // Over SSH, as users name a server.
    let args = ssh_args(format!("container://cli-probe-v1@{}", host.url));
    let out = probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("docker healthcheck: healthy"),
        "{}",
        stderr(&out)
    );

    let args = ssh_args(format!("container://cli-probe-broken@{}", host.url));
    let out = probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("docker healthcheck: unhealthy"), "{stdout}");

    // An HTTP probe from the server's side: the container's address on the host's bridge, no port
    // published, reached over SSH.
    let ip = rt.block_on(async {
        let info = docker
            .inspect_container("cli-probe-v1", None)
            .await
            .unwrap();
        let networks = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        networks
            .get("bridge")
            .and_then(|e| e.ip_address.clone())
            .unwrap()
    });
    // (the app already answers: its Docker healthcheck passed above)
    let mut args = ssh_args(format!("http://{ip}:8080/"));
    args.extend([
        "--expect-body".into(),
        "davit-demo v1".into(),
        "--from".into(),
        host.url.clone(),
    ]);
    let out = probe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("healthy: http://{ip}:8080/\n")
    );

    // The same engine through its socket.
    let target = format!("container://cli-probe-v1@{}", host.docker_host);
    let out = probe(&[&target, "--interval", "500ms", "--deadline", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    rt.block_on(async {
        for name in ["cli-probe-v1", "cli-probe-broken"] {
            let rm = bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            docker.remove_container(name, Some(rm)).await.unwrap();
        }
    });
}
