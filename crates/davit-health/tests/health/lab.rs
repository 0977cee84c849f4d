//! Probes of lab containers (instance 4, one host): over SSH from the server's side with no port
//! published, and through the host's Docker engine (healthcheck status, exec).
//!
//! The SSH dialer here is the davit-ssh `Host` (a `direct-tcpip` channel per dial), as the engine
//! uses it: the probe reaches the container's address on the host's bridge, which only the host sees.

use std::io;
use std::sync::Arc;
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

use super::local::results;

const INSTANCE: u8 = 4;

/// Dials from the server's side over SSH.
struct SshDial(davit_ssh::Host);

#[async_trait::async_trait]
impl Dial for SshDial {
    async fn dial(&self, host: &str, port: u16) -> io::Result<Box<dyn AsyncReadWrite>> {
        Ok(Box::new(self.0.dial_tcp(host, port).await?))
    }
}

/// The lab host over SSH, host key verified against the lab's known_hosts.
async fn ssh_host(info: &davit_lab::LabInfo, i: usize) -> davit_ssh::Host {
    let mut opts = davit_ssh::SshOptions::default();
    opts.identity = Some(info.identity.clone());
    opts.known_hosts = Some(info.known_hosts.clone());
    opts.use_agent = false;
    let url = davit_ssh::HostUrl::parse(&info.hosts[i].url).unwrap();
    davit_ssh::Host::connect(&url, &opts).await.unwrap()
}

/// The lab host's engine, reached directly (test setup only).
fn engine(docker_host: &str) -> Docker {
    Docker::connect_with_unix(docker_host, 120, bollard::API_DEFAULT_VERSION).unwrap()
}

/// Runs `{registry}/davit-demo:{tag}` as `name`, publishing nothing; returns its address on the
/// host's bridge network.
async fn run_demo(docker: &Docker, registry: &str, tag: &str, name: &str) -> String {
    run_demo_with(docker, registry, tag, name, None).await
}

/// The same, with the image's healthcheck replaced by `healthcheck` when given.
async fn run_demo_with(
    docker: &Docker,
    registry: &str,
    tag: &str,
    name: &str,
    healthcheck: Option<bollard::models::HealthConfig>,
) -> String {
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
        healthcheck,
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

    let prober = Prober::new(Arc::new(SshDial(ssh_host(&info, 0).await)));
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
    // TCP over the channel: the app's port is open, another is refused on the server's side.
    let tcp = prober
        .prepare(&Probe::Tcp {
            host: ip.clone(),
            port: 8080,
        })
        .unwrap();
    assert_eq!(
        wait_healthy(&prober, &tcp, &policy(), |_| {}).await,
        Verdict::Healthy
    );
    let closed = prober
        .prepare(&Probe::Tcp {
            host: ip.clone(),
            port: 8081,
        })
        .unwrap();
    let mut events = Vec::new();
    let verdict = wait_healthy(&prober, &closed, &policy(), |e| events.push(e)).await;
    assert!(!verdict.is_healthy(), "{events:#?}");
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
    // The engine is reached the way the engine crate reaches it: over SSH.
    let prober = Prober::default().with_docker(ssh_host(&info, 0).await.docker());

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
    // An exec of a command the image does not have fails, with the runtime's reason.
    let nothing = Probe::Exec {
        container: "health-status-v1".into(),
        command: vec!["/no-such-binary".into()],
    };
    match wait_healthy(&prober, &prober.prepare(&nothing).unwrap(), &once, |_| {}).await {
        Verdict::Unhealthy {
            reason: Reason::Failures { last, .. },
        } => {
            // Docker reports it as the exec's exit status 126, with the runtime's message.
            assert!(
                last.starts_with("exit 126: ") && last.contains("/no-such-binary"),
                "{last}"
            )
        }
        v => panic!("{v}"),
    }

    // A container whose healthcheck is disabled counts as healthy while it runs.
    let none = bollard::models::HealthConfig {
        test: Some(vec!["NONE".into()]),
        ..Default::default()
    };
    run_demo_with(
        &docker,
        registry,
        "broken",
        "health-status-none",
        Some(none),
    )
    .await;
    let unchecked = prober
        .prepare(&Probe::Container {
            container: "health-status-none".into(),
        })
        .unwrap();
    let mut events = Vec::new();
    let verdict = wait_healthy(&prober, &unchecked, &once, |e| events.push(e)).await;
    assert_eq!(verdict, Verdict::Healthy);
    assert_eq!(
        super::local::results(&events),
        vec![(
            "success",
            "running (the container has no healthcheck)".into()
        )]
    );

    for name in [
        "health-status-v1",
        "health-status-broken",
        "health-status-none",
    ] {
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
