//! The demo app in real containers on a lab host (instance 6), reached at the host's published ports, as
//! the proxy reaches app containers on a server.

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use davit_proxy::api::{TargetSpec, TargetState};
use futures_util::StreamExt;

use crate::support::{Load, TestProxy, free_addr, route};

const INSTANCE: u8 = 6;

async fn demo_container(docker: &Docker, registry: &str, version: &str, host_port: u16) {
    let name = format!("proxy-test-{version}");
    let _ = docker
        .remove_container(
            &name,
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
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    docker.start_container(&name, None).await.unwrap();
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
    let listen = free_addr();
    p.admin
        .put_route("web", &route(listen, vec![TargetSpec::new("v1", v1)]))
        .await
        .unwrap();
    p.wait_state("web", "v1", TargetState::Active).await;
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
