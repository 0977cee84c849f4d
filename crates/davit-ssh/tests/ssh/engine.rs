//! The Docker API, TCP dials and commands over SSH, on real engines.

use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use davit_ssh::{Host, HostUrl, check_hosts};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{connect, lab, opts, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_check_reports_every_engine_as_its_own_socket_does() {
    let (_lab, info) = lab();
    let urls: Vec<HostUrl> = (1..=3).map(|i| url(&info, i)).collect();
    let reports = check_hosts(&urls, &opts(&info)).await;
    assert_eq!(reports.len(), 3);
    for (i, r) in reports.iter().enumerate() {
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.url, info.hosts[i].url,
            "reports come back in the order asked"
        );
        assert!(r.error.is_none());
        // The same engine reached directly through its socket must describe itself the same way.
        let direct = HostUrl::parse(&info.hosts[i].docker_host).unwrap();
        let d = &check_hosts(std::slice::from_ref(&direct), &opts(&info)).await[0];
        assert!(d.ok, "{d:?}");
        assert_eq!(r.engine_version, d.engine_version);
        assert_eq!(r.api_version.as_deref(), Some("1.41"));
        assert_eq!(r.os, d.os);
        assert_eq!(r.cpus, d.cpus);
        assert_eq!(r.memory_bytes, d.memory_bytes);
        assert!(r.cpus.unwrap() >= 1);
        assert!(r.free_disk_bytes.unwrap() > 0);
    }
    let json = serde_json::to_value(&reports[0]).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["url"], info.hosts[0].url.as_str());
    assert!(
        json["engine_version"].is_string() && json.get("error").is_none(),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_handle_is_shared_and_runs_commands_with_exit_status() {
    let (_lab, info) = lab();
    let host = connect(&info, 1).await;
    let other = host.clone();
    let (a, b) = tokio::join!(
        host.exec("echo out; echo err >&2; exit 3"),
        other.exec("cat /etc/hostname >/dev/null; printf x")
    );
    let a = a.unwrap();
    assert_eq!(a.status, Some(3));
    assert!(!a.success());
    assert_eq!(String::from_utf8_lossy(&a.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&a.stderr), "err\n");
    assert_eq!(b.unwrap().stdout, b"x");
    // Streaming: output arrives in order into any writer.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let st = host
        .exec_streaming("for i in 1 2 3; do echo $i; done", &mut out, &mut err)
        .await
        .unwrap();
    assert_eq!(st, Some(0));
    assert_eq!(out, b"1\n2\n3\n");
    // Many API calls in parallel over the one connection.
    let docker = host.docker();
    let calls = (0..20).map(|_| docker.ping());
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap(), "OK");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hosts_share_the_same_api() {
    let (_lab, info) = lab();
    let host = Host::connect(
        &HostUrl::parse(&info.hosts[0].docker_host).unwrap(),
        &opts(&info),
    )
    .await
    .unwrap();
    assert!(!host.is_remote());
    assert_eq!(host.docker().ping().await.unwrap(), "OK");
    let out = host.exec("echo local; exit 4").await.unwrap();
    assert_eq!((out.status, out.stdout), (Some(4), b"local\n".to_vec()));
    // dial_tcp on a local host is a plain TCP connection: to a listener of our own.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
    });
    let mut s = host.dial_tcp("127.0.0.1", port).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert_eq!(buf, "hello");
    server.await.unwrap();
}

async fn http_get(stream: &mut davit_ssh::Stream, path: &str) -> String {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_over_the_tunnel() {
    let (_lab, info) = lab();
    let registry = info.registry.clone().expect("the lab has a registry");
    let host = connect(&info, 2).await;
    let docker = host.docker();
    let image = format!("{registry}/davit-demo:v1");

    // Pull through the engine (the registry is reached from the host's side).
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.clone()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(step) = pull.next().await {
        step.unwrap_or_else(|e| panic!("pulling {image}: {e}"));
    }

    let name = format!("davit-ssh-test-{}", std::process::id());
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!created.id.is_empty());
    docker.start_container(&name, None).await.unwrap();

    // The image's HEALTHCHECK turns the container healthy (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(120);
    let ip = loop {
        let c = docker.inspect_container(&name, None).await.unwrap();
        let state = c.state.clone().unwrap();
        let health = state.health.and_then(|h| h.status);
        if health == Some(HealthStatusEnum::HEALTHY) {
            let nets = c.network_settings.unwrap().networks.unwrap();
            break nets
                .values()
                .find_map(|n| n.ip_address.clone().filter(|a| !a.is_empty()))
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never turned healthy: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // direct-tcpip: the container's port, reached from the server's side.
    let mut s = host.dial_tcp(&ip, 8080).await.unwrap();
    let body = http_get(&mut s, "/").await;
    assert!(
        body.starts_with("HTTP/1.1 200") && body.contains("davit-demo v1"),
        "{body}"
    );

    // Exec inside the container (an HTTP upgrade carried over the channel).
    let exec = docker
        .create_exec(
            &name,
            bollard::exec::CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["/davit-demo", "check"]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match docker.start_exec(&exec.id, None).await.unwrap() {
        bollard::exec::StartExecResults::Attached { mut output, .. } => {
            while output.next().await.transpose().unwrap().is_some() {}
        }
        bollard::exec::StartExecResults::Detached => panic!("exec was not attached"),
    }
    let inspected = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(
        inspected.exit_code,
        Some(0),
        "the health check command passes inside the container"
    );

    // Logs stream back.
    let logs: Vec<_> = docker
        .logs(
            &name,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        )
        .collect()
        .await;
    let text: String = logs.into_iter().map(|l| l.unwrap().to_string()).collect();
    assert!(!text.is_empty(), "the demo logs something on start");

    docker
        .stop_container(
            &name,
            Some(StopContainerOptions {
                t: Some(10),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let c = docker.inspect_container(&name, None).await.unwrap();
    assert_eq!(c.state.unwrap().running, Some(false));
    docker.remove_container(&name, None).await.unwrap();
    let gone = docker.inspect_container(&name, None).await.unwrap_err();
    assert!(gone.to_string().contains("No such container"), "{gone}");
}

/// An sshd of our own on loopback that forbids stream-local forwarding (with a host key filed under
/// `[127.0.0.1]:PORT`): the engine is then reached through `docker system dial-stdio`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_streamlocal_forwarding_the_engine_is_reached_through_dial_stdio() {
    let (lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    let hostkey = crate::keygen(dir.path(), "hostkey", &["-t", "ed25519"], "");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nUsePAM no\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             AllowStreamLocalForwarding no\nAllowTcpForwarding yes\n",
            hostkey.display(),
            lab.dir().join("authorized_keys").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut sshd = std::process::Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "our sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kh = dir.path().join("known_hosts");
    let public = std::fs::read_to_string(hostkey.with_extension("pub")).unwrap();
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{port} {}\n",
            public
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    let mut o = opts(&info);
    o.known_hosts = Some(kh);
    let socket = info.hosts[5].docker_host.trim_start_matches("unix://");
    let url = HostUrl::parse(&format!("ssh://root@127.0.0.1:{port}?socket={socket}")).unwrap();

    let result = async {
        let host = Host::connect(&url, &o).await?;
        // The streamlocal channel is refused with a clear reason...
        let refused = host.dial_unix(socket).await.unwrap_err();
        let version = host.docker().version().await;
        let ping = host.docker().ping().await;
        Ok::<_, davit_ssh::Error>((refused, version, ping))
    }
    .await;
    let _ = sshd.kill();
    let _ = sshd.wait();
    let (refused, version, ping) = result.unwrap();
    assert!(
        refused.to_string().contains("AllowStreamLocalForwarding"),
        "{refused}"
    );
    let direct = Host::connect(
        &HostUrl::parse(&info.hosts[5].docker_host).unwrap(),
        &opts(&info),
    )
    .await
    .unwrap();
    let want = direct.docker().version().await.unwrap();
    assert_eq!(version.unwrap().version, want.version);
    assert_eq!(ping.unwrap(), "OK");
}
