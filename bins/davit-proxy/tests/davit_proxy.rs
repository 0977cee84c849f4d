//! Tests of the `davit-proxy` binary itself: restart with the state file, standalone mode, usage errors.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proxy::api::{HealthSpec, RouteSpec, TargetSpec, TargetState};
use proxy::client::AdminClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_davit-proxy");
const BOUND: Duration = Duration::from_secs(60);

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.0.wait().unwrap().code()
    }
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn demo(version: &str) -> (Proc, SocketAddr) {
    let bin =
        std::env::var("DAVIT_DEMO_BIN").expect("DAVIT_DEMO_BIN must name the davit-demo binary");
    let addr = free_addr();
    let child = Command::new(bin)
        .args(["--listen", &addr.to_string(), "--version", version])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Proc(child), addr)
}

fn proxy(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Like [`get`], with I/O errors returned instead of panicking.
async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    Ok((status, body))
}

fn state_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_comes_back_with_its_routes() {
    let (_demo, demo_addr) = demo("v1");
    wait_listening(demo_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/routes.json");
    let admin_addr = free_addr();
    let args = [
        "--admin",
        &admin_addr.to_string(),
        "--state",
        state.to_str().unwrap(),
    ];
    let first = proxy(&args);
    wait_listening(admin_addr).await;
    let admin = AdminClient::tcp(admin_addr);
    admin.healthz().await.unwrap();

    let (web, down) = (free_addr(), free_addr());
    let spec = RouteSpec::new(web, vec![TargetSpec::new("v1", demo_addr)])
        .with_health(HealthSpec::http("/health"));
    admin.put_route("web", &spec).await.unwrap();
    admin
        .put_route(
            "down",
            &RouteSpec::new(down, vec![TargetSpec::new("v1", demo_addr)]),
        )
        .await
        .unwrap();
    admin
        .set_maintenance("down", true, Some("gone fishing".into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    while admin
        .route("web")
        .await
        .unwrap()
        .unwrap()
        .target("v1")
        .unwrap()
        .state
        != TargetState::Active
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "v1 never became active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(web, "/").await, (200, "davit-demo v1\n".to_owned()));
    let saved = state_json(&state);
    assert_eq!(saved["routes"]["web"]["listen"], web.to_string());
    assert_eq!(
        saved["routes"]["down"]["maintenance"]["page"],
        "gone fishing"
    );
    let before = admin.routes().await.unwrap();
    // SIGTERM with a request in flight: the proxy stops accepting, lets it finish, then exits 0.
    let slow = tokio::spawn(get(web, "/slow?ms=1500"));
    let deadline = tokio::time::Instant::now() + BOUND;
    while admin
        .route("web")
        .await
        .unwrap()
        .unwrap()
        .target("v1")
        .unwrap()
        .in_flight
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never reached v1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        first.terminate(),
        Some(0),
        "SIGTERM stops the proxy cleanly"
    );
    assert_eq!(
        slow.await.unwrap(),
        (200, "davit-demo v1 slow 1500ms\n".to_owned())
    );
    assert!(
        tokio::net::TcpStream::connect(web).await.is_err(),
        "the route's listener went with the proxy"
    );

    let _second = proxy(&args);
    wait_listening(admin_addr).await;
    let after = admin.routes().await.unwrap();
    let specs = |v: &[proxy::api::RouteStatus]| {
        v.iter()
            .map(|r| (r.name.clone(), r.spec.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(specs(&after), specs(&before));
    // The first request waits for the restored target's first check instead of failing.
    wait_listening(web).await;
    assert_eq!(get(web, "/").await, (200, "davit-demo v1\n".to_owned()));
    assert_eq!(get(down, "/").await, (503, "gone fishing".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_proxies_to_one_target() {
    let (_demo, demo_addr) = demo("v2");
    wait_listening(demo_addr).await;
    let listen = free_addr();
    let p = proxy(&[
        "--listen",
        &listen.to_string(),
        "--target",
        &demo_addr.to_string(),
        "--health",
        "/health",
    ]);
    wait_listening(listen).await;
    for _ in 0..5 {
        assert_eq!(get(listen, "/").await, (200, "davit-demo v2\n".to_owned()));
    }
    assert_eq!(
        get(listen, "/slow?ms=10").await,
        (200, "davit-demo v2 slow 10ms\n".to_owned())
    );
    assert_eq!(p.terminate(), Some(0));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--listen", "127.0.0.1:1"][..],
        &["--target", "127.0.0.1:1"],
        &["--admin", "nowhere"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_switches_targets_under_load_without_losing_a_request() {
    let (_v1, v1_addr) = demo("v1");
    let (_v2, v2_addr) = demo("v2");
    wait_listening(v1_addr).await;
    wait_listening(v2_addr).await;
    let admin_addr = free_addr();
    // Two worker threads: connections and their upstream pools are spread over both.
    let _p = proxy(&["--admin", &admin_addr.to_string(), "--threads", "2"]);
    wait_listening(admin_addr).await;
    let admin = AdminClient::tcp(admin_addr);
    let web = free_addr();
    let mut health = HealthSpec::http("/health");
    health.interval_ms = 50;
    let spec = |id: &str, addr| {
        RouteSpec::new(web, vec![TargetSpec::new(id, addr)]).with_health(health.clone())
    };
    admin.put_route("web", &spec("v1", v1_addr)).await.unwrap();
    let wait = |want: &'static str, state: TargetState| {
        let admin = admin.clone();
        async move {
            let deadline = tokio::time::Instant::now() + BOUND;
            while admin
                .route("web")
                .await
                .unwrap()
                .unwrap()
                .target(want)
                .map(|t| t.state)
                != Some(state)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{want} never got {state:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait("v1", TargetState::Active).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.push(get(web, "/").await);
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin.put_route("web", &spec("v2", v2_addr)).await.unwrap();
    wait("v1", TargetState::Drained).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let bad: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(bad.is_empty(), "lost requests: {bad:?}");
    assert!(
        all.iter().any(|(_, b)| b == "davit-demo v1\n")
            && all.iter().any(|(_, b)| b == "davit-demo v2\n")
    );
}

/// A keep-alive HTTP/1.1 client sending `GET /` in a loop until `stop`; it reconnects when an answer
/// says `Connection: close` (and counts any other broken exchange as a failure). Returns (successes,
/// failures).
async fn keep_alive_client(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let (mut ok, mut failures) = (0, Vec::new());
    let mut conn: Option<tokio::io::BufReader<tokio::net::TcpStream>> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let c = match &mut conn {
            Some(c) => c,
            None => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => conn.insert(tokio::io::BufReader::new(s)),
                Err(e) => {
                    failures.push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let exchange = async {
            c.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .await?;
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if c.read_line(&mut line).await? == 0 {
                    return Err(std::io::Error::other(format!(
                        "closed after {} header lines",
                        head.len()
                    )));
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_lowercase());
            }
            let len: usize = head
                .iter()
                .find_map(|h| h.strip_prefix("content-length: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            c.read_exact(&mut body).await?;
            let close = head.iter().any(|h| h == "connection: close");
            Ok::<_, std::io::Error>((
                head[0].clone(),
                String::from_utf8_lossy(&body).into_owned(),
                close,
            ))
        };
        match exchange.await {
            Ok((status, body, close)) => {
                if status.starts_with("http/1.1 200") && body == "davit-demo v1\n" {
                    ok += 1;
                } else {
                    failures.push(format!("{status} {body}"));
                }
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                failures.push(format!("keep-alive exchange: {e}"));
                conn = None;
            }
        }
    }
    (ok, failures)
}

/// A process in the network namespace `ns` (a lab host's).
fn in_netns(ns: &str, program: &str, args: &[&str]) -> Proc {
    Proc(
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Route `default`'s requests according to the admin API at `admin`, once its target is active.
async fn served(admin: &AdminClient<proxy::client::TcpConnect>) -> u64 {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Ok(Some(r)) = admin.route("default").await
            && r.targets.iter().all(|t| t.state == TargetState::Active)
        {
            return r.targets.iter().map(|t| t.requests).sum();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy's target never became active"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_takes_the_port_over_while_the_old_one_drains_on_sigterm() {
    // Both proxies run in a lab host's own network namespace (instance 12), with
    // net.ipv4.tcp_migrate_req off there (without touching this machine's settings): the kernel
    // would reset connections queued on a closing SO_REUSEPORT listener. None closes: the new proxy
    // takes the old one's listening sockets over through the handover socket.
    let info = tokio::task::spawn_blocking(|| {
        davit_lab::Lab::up(&davit_lab::Options::new(12, 1, false))
            .unwrap_or_else(|e| panic!("lab instance 12 did not come up: {e}"))
    })
    .await
    .unwrap();
    let host = &info.hosts[0];
    let sysctl = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", host.netns))
        .args(["sysctl", "-qw", "net.ipv4.tcp_migrate_req=0"])
        .status()
        .unwrap();
    assert!(
        sysctl.success(),
        "cannot set net.ipv4.tcp_migrate_req in the lab host"
    );
    let demo_bin =
        std::env::var("DAVIT_DEMO_BIN").expect("DAVIT_DEMO_BIN must name the davit-demo binary");
    let _demo = in_netns(
        &host.netns,
        &demo_bin,
        &["--listen", "127.0.0.1:18301", "--version", "v1"],
    );
    let web: SocketAddr = format!("{}:18300", host.address).parse().unwrap();
    let (admin_a, admin_b): (SocketAddr, SocketAddr) = (
        format!("{}:18302", host.address).parse().unwrap(),
        format!("{}:18303", host.address).parse().unwrap(),
    );
    let state = tempfile::tempdir().unwrap();
    let handover = state.path().join("handover.sock");
    let args = |admin: SocketAddr| {
        vec![
            "--handover".to_owned(),
            handover.display().to_string(),
            "--listen".into(),
            "0.0.0.0:18300".into(),
            "--target".into(),
            "127.0.0.1:18301".into(),
            "--health".into(),
            "/health".into(),
            "--admin".into(),
            admin.to_string(),
        ]
    };
    let a_args = args(admin_a);
    let old = in_netns(
        &host.netns,
        BIN,
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_listening(admin_a).await;
    let (a, b) = (AdminClient::tcp(admin_a), AdminClient::tcp(admin_b));
    served(&a).await;

    // Constant load: new connections (one request each) and keep-alive clients.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut fresh = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..3 {
        let halt = stop.clone();
        fresh.push(tokio::spawn(async move {
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(BOUND, try_get(web, "/")).await {
                    Ok(Ok((200, body))) if body == "davit-demo v1\n" => ok += 1,
                    Ok(other) => failures.push(format!("{other:?}")),
                    Err(_) => failures.push("timed out".into()),
                }
            }
            (ok, failures)
        }));
        kept.push(tokio::spawn(keep_alive_client(web, stop.clone())));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new proxy binds the same port while the old one still listens.
    let b_args = args(admin_b);
    let _new = in_netns(
        &host.netns,
        BIN,
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_listening(admin_b).await;
    served(&b).await;
    // One listening socket on the port, in both processes: the new proxy bound none of its own.
    let ss = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", host.netns))
        .args(["ss", "-Hltn", "sport = :18300"])
        .output()
        .unwrap();
    let listeners = String::from_utf8_lossy(&ss.stdout).into_owned();
    assert_eq!(
        listeners.lines().count(),
        1,
        "one listening socket, passed over, not one per proxy: {listeners}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_served = served(&a).await;
    assert!(old_served > 0);
    assert_eq!(old.terminate(), Some(0), "the old proxy drains and exits 0");
    let b_at_exit = served(&b).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    for t in fresh.into_iter().chain(kept) {
        let (o, f) = t.await.unwrap();
        ok += o;
        failures.extend(f);
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "requests failed during the handover"
    );
    let b_final = served(&b).await;
    assert!(
        b_final > b_at_exit,
        "the new proxy serves once the old one is gone ({b_at_exit} -> {b_final})"
    );
    assert!(ok > 100, "the load ran: {ok} requests");
}
