//! Probes of lab containers (instance 4, one host): over SSH from the server's side with no port
//! published, and through the host's Docker engine (healthcheck status, exec).
//!
//! The SSH dialer here runs `ssh -W host:port` (OpenSSH) as its transport: the davit-ssh crate had
//! no usable API when this was written; the engine implements [`Dial`] with its `direct-tcpip`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
};
use davit_health::{
    AsyncReadWrite, Dial, HttpProbe, Policy, Probe, Prober, Reason, Verdict, parse_target,
    wait_healthy,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::local::results;

const INSTANCE: u8 = 4;

/// Dials `host:port` from the lab host's side: `ssh -W` through its sshd, host key verified.
struct SshW {
    identity: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    address: String,
}

/// The `ssh -W` process's stdout and stdin as one stream; the process dies with it.
struct Piped {
    io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    _child: tokio::process::Child,
}

impl AsyncRead for Piped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Piped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Dial for SshW {
    async fn dial(&self, host: &str, port: u16) -> io::Result<Box<dyn AsyncReadWrite>> {
        let mut child = tokio::process::Command::new("ssh")
            .arg("-i")
            .arg(&self.identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "ConnectTimeout=10",
                "-W",
                &format!("{host}:{port}"),
                &format!("root@{}", self.address),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        Ok(Box::new(Piped {
            io: tokio::io::join(stdout, stdin),
            _child: child,
        }))
    }
}

/// The lab host's engine, reached directly (test setup only).
fn engine(docker_host: &str) -> Docker {
    Docker::connect_with_unix(docker_host, 120, bollard::API_DEFAULT_VERSION).unwrap()
}

/// Runs `{registry}/davit-demo:{tag}` as `name`, publishing nothing; returns its address on the
/// host's bridge network.
async fn run_demo(docker: &Docker, registry: &str, tag: &str, name: &str) -> String {
    let image = format!("{registry}/davit-demo");
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.clone()),
            tag: Some(tag.into()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(step) = pull.next().await {
        step.unwrap_or_else(|e| panic!("pulling {image}:{tag}: {e}"));
    }
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let body = ContainerCreateBody {
        image: Some(format!("{image}:{tag}")),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.into()),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap();
    docker.start_container(name, None).await.unwrap();
    let info = docker.inspect_container(name, None).await.unwrap();
    let networks = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let ip = networks
        .get("bridge")
        .and_then(|e| e.ip_address.clone())
        .filter(|ip| !ip.is_empty());
    ip.unwrap_or_else(|| panic!("{name} has no address on the bridge network"))
}

fn policy() -> Policy {
    Policy {
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        failure_threshold: 1,
        deadline: Some(Duration::from_secs(120)),
        ..Policy::default()
    }
}

#[tokio::test]
async fn http_probe_from_the_servers_side_over_ssh() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, 1);
    let host = &info.hosts[0];
    let registry = info.registry.as_deref().expect("the lab has a registry");
    let docker = engine(&host.docker_host);
    let ip = run_demo(&docker, registry, "v1", "health-ssh-v1").await;

    let dialer = SshW {
        identity: info.identity.clone(),
        known_hosts: info.known_hosts.clone(),
        address: host.address.clone(),
    };
    let prober = Prober::new(Arc::new(dialer));
    let mut probe = match parse_target(&format!("http://{ip}:8080/")).unwrap().probe {
        Probe::Http(h) => h,
        p => panic!("{p:?}"),
    };
    probe.expect_body = Some("davit-demo v1".into());
    // The app may take a moment to listen: a generous failure threshold, bounded by the deadline.
    let patient = Policy {
        failure_threshold: 100,
        ..policy()
    };
    let mut events = Vec::new();
    let verdict = wait_healthy(
        &prober,
        &prober.prepare(&Probe::Http(probe.clone())).unwrap(),
        &patient,
        |e| events.push(e),
    )
    .await;
    assert_eq!(verdict, Verdict::Healthy, "{events:#?}");
    assert_eq!(
        results(&events).last().unwrap(),
        &("success", "200 OK, body contains \"davit-demo v1\"".into())
    );

    // The same container answers v1, not v2: the body check is real over this path too.
    let v2 = HttpProbe {
        expect_body: Some("davit-demo v2".into()),
        ..probe
    };
    let verdict = wait_healthy(
        &prober,
        &prober.prepare(&Probe::Http(v2)).unwrap(),
        &policy(),
        |_| {},
    )
    .await;
    assert!(
        matches!(&verdict, Verdict::Unhealthy { reason: Reason::Failures { last, .. } }
        if last.contains("does not contain \"davit-demo v2\"")),
        "{verdict}"
    );
    docker
        .remove_container(
            "health-ssh-v1",
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn docker_healthcheck_status_healthy_and_failing() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, 1);
    let host = &info.hosts[0];
    let registry = info.registry.as_deref().expect("the lab has a registry");
    let docker = engine(&host.docker_host);
    run_demo(&docker, registry, "v1", "health-status-v1").await;
    run_demo(&docker, registry, "broken", "health-status-broken").await;
    let prober = Prober::default().with_docker(docker.clone());

    let mut events = Vec::new();
    let good = prober
        .prepare(&Probe::Container {
            container: "health-status-v1".into(),
        })
        .unwrap();
    let verdict = wait_healthy(&prober, &good, &policy(), |e| events.push(e)).await;
    assert_eq!(verdict, Verdict::Healthy, "{events:#?}");
    let results = results(&events);
    assert_eq!(
        results.last().unwrap(),
        &("success", "docker healthcheck: healthy".into())
    );
    assert!(
        results[..results.len() - 1]
            .iter()
            .all(|(o, _)| *o == "pending"),
        "{results:?}"
    );

    let mut events = Vec::new();
    let bad = prober
        .prepare(&Probe::Container {
            container: "health-status-broken".into(),
        })
        .unwrap();
    let verdict = wait_healthy(&prober, &bad, &policy(), |e| events.push(e)).await;
    match &verdict {
        Verdict::Unhealthy {
            reason: Reason::Failures { count: 1, last },
        } => {
            assert!(last.starts_with("docker healthcheck: unhealthy"), "{last}")
        }
        v => panic!("{v}: {events:#?}"),
    }

    // Exec probes: the image's own check command, run by us.
    let check = |container: &str| Probe::Exec {
        container: container.into(),
        command: vec!["/davit-demo".into(), "check".into()],
    };
    let once = Policy {
        failure_threshold: 1,
        ..policy()
    };
    let verdict = wait_healthy(
        &prober,
        &prober.prepare(&check("health-status-v1")).unwrap(),
        &once,
        |_| {},
    )
    .await;
    assert_eq!(verdict, Verdict::Healthy);
    let mut events = Vec::new();
    let verdict = wait_healthy(
        &prober,
        &prober.prepare(&check("health-status-broken")).unwrap(),
        &once,
        |e| events.push(e),
    )
    .await;
    match &verdict {
        Verdict::Unhealthy {
            reason: Reason::Failures { last, .. },
        } => assert!(last.starts_with("exit "), "{last}"),
        v => panic!("{v}"),
    }

    // A container that does not exist is a failure naming it, not a hang.
    let missing = prober
        .prepare(&Probe::Container {
            container: "health-no-such".into(),
        })
        .unwrap();
    match wait_healthy(&prober, &missing, &once, |_| {}).await {
        Verdict::Unhealthy {
            reason: Reason::Failures { last, .. },
        } => {
            assert!(
                last.starts_with("inspecting container health-no-such: "),
                "{last}"
            )
        }
        v => panic!("{v}"),
    }
    for name in ["health-status-v1", "health-status-broken"] {
        docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
}
