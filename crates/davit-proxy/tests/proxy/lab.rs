//! The demo app in real containers on a lab host (instance 6), reached at the host's published ports, as
//! the proxy reaches app containers on a server.

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use davit_proxy::ProxyConfig;
use davit_proxy::api::{TargetSpec, TargetState};
use futures_util::StreamExt;

use crate::support::{BOUND, Load, TestProxy, client, get, route};

const INSTANCE: u8 = 6;

async fn demo_container(docker: &Docker, registry: &str, version: &str, host_port: u16) {
    demo_container_named(
        docker,
        registry,
        version,
        &format!("proxy-test-{version}"),
        host_port,
    )
    .await;
}

async fn demo_container_named(
    docker: &Docker,
    registry: &str,
    version: &str,
    name: &str,
    host_port: u16,
) {
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let image = format!("{registry}/davit-demo:{version}");
    let mut pull = docker.create_image(
        Some(CreateImageOptionsBuilder::new().from_image(&image).build()),
        None,
        None,
    );
    while let Some(step) = pull.next().await {
        step.unwrap_or_else(|e| panic!("pull {image}: {e}"));
    }
    let bindings = HashMap::from([(
        "8080/tcp".to_owned(),
        Some(vec![PortBinding {
            host_ip: None,
            host_port: Some(host_port.to_string()),
        }]),
    )]);
    let body = ContainerCreateBody {
        image: Some(image),
        exposed_ports: Some(vec!["8080/tcp".to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .unwrap();
    docker.start_container(name, None).await.unwrap();
}

fn lab_docker() -> (davit_lab::Lab, davit_lab::LabInfo, Docker) {
    let (lab, info) = davit_lab::for_tests(INSTANCE, 1);
    let socket = info.hosts[0]
        .docker_host
        .strip_prefix("unix://")
        .expect("a unix socket")
        .to_owned();
    let docker = Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION).unwrap();
    (lab, info, docker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containers_on_a_lab_host_switch_under_load_without_losing_a_request() {
    let (_lab, info) = tokio::task::spawn_blocking(|| davit_lab::for_tests(INSTANCE, 1))
        .await
        .unwrap();
    let host = &info.hosts[0];
    let registry = info.registry.clone().expect("the lab has a registry");
    let socket = host
        .docker_host
        .strip_prefix("unix://")
        .expect("a unix socket");
    let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION).unwrap();
    demo_container(&docker, &registry, "v1", 18090).await;
    demo_container(&docker, &registry, "v2", 18091).await;
    let v1: SocketAddr = format!("{}:18090", host.address).parse().unwrap();
    let v2: SocketAddr = format!("{}:18091", host.address).parse().unwrap();

    let p = TestProxy::start().await;
    let listen = p.serve_web(TargetSpec::new("v1", v1)).await;
    let load = Load::start(format!("http://{listen}/"), 8);
    load.wait_more(200).await;
    p.admin
        .put_route("web", &route(listen, vec![TargetSpec::new("v2", v2)]))
        .await
        .unwrap();
    p.wait_state("web", "v1", TargetState::Drained).await;
    // As the engine does once the old target is drained: stop its container (SIGTERM, then it exits).
    docker
        .stop_container(
            "proxy-test-v1",
            Some(StopContainerOptionsBuilder::new().t(10).build()),
        )
        .await
        .unwrap();
    load.wait_more(200).await;
    let (bodies, failures) = load.stop().await;
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "requests were lost while switching containers"
    );
    assert_eq!(bodies.first().map(String::as_str), Some("davit-demo v1\n"));
    assert_eq!(bodies.last().map(String::as_str), Some("davit-demo v2\n"));
    for v in ["v1", "v2"] {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        docker
            .remove_container(&format!("proxy-test-{v}"), Some(opts))
            .await
            .unwrap();
    }
}

/// The checks with the demo app in containers: a slow request survives the switch and the
/// drain; a container killed mid-drain costs only its own request; a 10% canary gets 10% ± 2% of
/// 5,000 new clients and cookies hold clients on their version; maintenance mode; a restarted proxy
/// comes back with its routes from its state file and serves the containers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containers_on_a_lab_host_drain_split_maintenance_and_restart() {
    let (_lab, info, docker) = tokio::task::spawn_blocking(lab_docker).await.unwrap();
    let host = &info.hosts[0];
    let registry = info.registry.clone().expect("the lab has a registry");
    let (n1, n2) = ("proxy-test2-v1", "proxy-test2-v2");
    demo_container_named(&docker, &registry, "v1", n1, 18092).await;
    demo_container_named(&docker, &registry, "v2", n2, 18093).await;
    let v1 = TargetSpec::new("v1", format!("{}:18092", host.address).parse().unwrap());
    let v2 = TargetSpec::new("v2", format!("{}:18093", host.address).parse().unwrap());
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("routes.json");
    let p = TestProxy::start_with(ProxyConfig {
        state_file: Some(state_file.clone()),
        ..ProxyConfig::default()
    })
    .await;
    let listen = p.serve_web(v1.clone()).await;
    let url = format!("http://{listen}/");
    let c = client();

    // A slow request on v1 survives the switch to v2 and v1's drain.
    let slow = tokio::spawn({
        let url = format!("{url}slow?ms=2000");
        async move { get(&client(), &url, &[]).await }
    });
    p.wait_route("web", "the slow request in flight", |s| {
        s.target("v1").unwrap().in_flight == 1
    })
    .await;
    p.admin
        .put_route("web", &route(listen, vec![v2.clone()]))
        .await
        .unwrap();
    let draining = p.wait_state("web", "v1", TargetState::Draining).await;
    assert_eq!(draining.target("v1").unwrap().in_flight, 1);
    for _ in 0..10 {
        assert_eq!(
            get(&c, &url, &[]).await.unwrap().2,
            "davit-demo v2\n",
            "new requests go to v2 while v1 drains"
        );
    }
    let (code, _, body) = tokio::time::timeout(BOUND, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "davit-demo v1 slow 2000ms\n"));
    p.wait_state("web", "v1", TargetState::Drained).await;

    // The v2 container is killed while it drains a slow request: only that request fails.
    let slow = tokio::spawn({
        let url = format!("{url}slow?ms=30000");
        async move { get(&client(), &url, &[]).await }
    });
    p.wait_route("web", "the slow request in flight on v2", |s| {
        s.target("v2").unwrap().in_flight == 1
    })
    .await;
    let load = Load::start(url.clone(), 4);
    load.wait_more(50).await;
    p.admin
        .put_route("web", &route(listen, vec![v1.clone()]))
        .await
        .unwrap();
    p.wait_state("web", "v2", TargetState::Draining).await;
    docker
        .kill_container(n2, Some(KillContainerOptionsBuilder::new().build()))
        .await
        .unwrap();
    p.wait_state("web", "v2", TargetState::Drained).await;
    let (code, _, _) = tokio::time::timeout(BOUND, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code, 502, "the request on the killed container");
    load.wait_more(50).await;
    let (bodies, failures) = load.stop().await;
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(bodies.last().map(String::as_str), Some("davit-demo v1\n"));

    // A 10% canary: 10% ± 2% of 5,000 new clients, and a client's cookie keeps it on its version.
    docker.start_container(n2, None).await.unwrap();
    p.admin
        .put_route(
            "web",
            &route(
                listen,
                vec![v1.clone().with_weight(90), v2.clone().with_weight(10)],
            ),
        )
        .await
        .unwrap();
    p.wait_route("web", "both active", |s| {
        s.targets.iter().all(|t| t.state == TargetState::Active)
    })
    .await;
    let mut on_v2 = 0u32;
    let mut sticky: Vec<(String, String)> = Vec::new();
    for i in 0..5_000 {
        let (code, headers, body) = get(&c, &url, &[]).await.unwrap();
        assert_eq!(code, 200);
        let cookie = headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        if body == "davit-demo v2\n" {
            on_v2 += 1;
        }
        if i % 250 == 0 || (body.contains("v2") && !sticky.iter().any(|s| s.1.contains("v2"))) {
            sticky.push((cookie, body));
        }
    }
    let share = f64::from(on_v2) / 5_000.0;
    assert!((0.08..=0.12).contains(&share), "v2 got {share}");
    for (cookie, body) in &sticky {
        for _ in 0..5 {
            let (_, headers, again) = get(&c, &url, &[("cookie", cookie)]).await.unwrap();
            assert_eq!(&again, body, "{cookie} keeps its client on one version");
            assert!(headers.get("set-cookie").is_none());
        }
    }

    // Maintenance mode: 503 with the page, then back.
    p.admin
        .set_maintenance("web", true, Some("<p>upgrading</p>".into()))
        .await
        .unwrap();
    let (code, headers, body) = get(&c, &url, &[]).await.unwrap();
    assert_eq!((code, body.as_str()), (503, "<p>upgrading</p>"));
    assert_eq!(headers["retry-after"], "30");
    p.admin.set_maintenance("web", false, None).await.unwrap();
    assert_eq!(get(&c, &url, &[]).await.unwrap().0, 200);

    // A restarted proxy comes back with its routes (read from the state file) and serves at once.
    let before = p.admin.route("web").await.unwrap().unwrap().spec;
    assert_eq!(p.proxy.shutdown(BOUND).await, 0);
    drop(p);
    let p = TestProxy::start_with(ProxyConfig {
        state_file: Some(state_file),
        ..ProxyConfig::default()
    })
    .await;
    assert_eq!(p.admin.route("web").await.unwrap().unwrap().spec, before);
    let (code, _, body) = get(&client(), &url, &[]).await.unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("davit-demo v"), "{body}");

    for name in [n1, n2] {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        docker.remove_container(name, Some(opts)).await.unwrap();
    }
}
