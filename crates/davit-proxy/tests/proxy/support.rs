//! Upstreams, a proxy with its admin API, and a load generator.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use davit_proxy::api::{HealthSpec, RouteSpec, RouteStatus, TargetSpec, TargetState};
use davit_proxy::client::{AdminClient, TcpConnect};
use davit_proxy::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Every wait in these tests is bounded by this.
pub const BOUND: Duration = Duration::from_secs(60);

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// The real demo app on a loopback port; killed when dropped.
pub struct Demo {
    pub addr: SocketAddr,
    pub version: String,
    child: Child,
}

impl Demo {
    pub async fn start(version: &str) -> Self {
        Self::start_with(version, false).await
    }

    pub async fn start_broken(version: &str) -> Self {
        Self::start_with(version, true).await
    }

    async fn start_with(version: &str, broken: bool) -> Self {
        let bin = std::env::var("DAVIT_DEMO_BIN").expect(
            "DAVIT_DEMO_BIN must name the davit-demo binary (tests/setup.sh builds it into target/static)",
        );
        let addr = free_addr();
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr.to_string(), "--version", version])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if broken {
            cmd.env("DAVIT_DEMO_BROKEN", "1");
        }
        let child = cmd.spawn().expect("spawn davit-demo");
        let deadline = tokio::time::Instant::now() + BOUND;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "davit-demo never listened on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            addr,
            version: version.to_owned(),
            child,
        }
    }

    pub fn target(&self) -> TargetSpec {
        TargetSpec::new(self.version.clone(), self.addr)
    }

    /// SIGKILL: the upstream dies without draining.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A proxy in this process with its admin API on a loopback port.
pub struct TestProxy {
    pub proxy: Proxy,
    pub admin: AdminClient<TcpConnect>,
    pub admin_addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestProxy {
    pub async fn start() -> Self {
        Self::start_with(ProxyConfig::default()).await
    }

    pub async fn start_with(config: ProxyConfig) -> Self {
        let proxy = Proxy::start(config).await.expect("start the proxy");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("admin listener");
        let admin_addr = listener.local_addr().expect("admin addr");
        let p = proxy.clone();
        let task = tokio::spawn(async move { p.serve_admin(listener).await });
        Self {
            proxy,
            admin: AdminClient::tcp(admin_addr),
            admin_addr,
            task,
        }
    }

    /// Waits until `pred` holds for route `name`'s status, and returns that status.
    pub async fn wait_route(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&RouteStatus) -> bool,
    ) -> RouteStatus {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let status = self
                .admin
                .route(name)
                .await
                .expect("GET route")
                .expect("route exists");
            if pred(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "route {name} never got {what}: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts route `web` with the single `target` (see [`route`]) on a free port, waits until the
    /// target serves, and returns the route's address.
    pub async fn serve_web(&self, target: TargetSpec) -> SocketAddr {
        let listen = free_addr();
        let id = target.id.clone();
        self.admin
            .put_route("web", &route(listen, vec![target]))
            .await
            .unwrap();
        self.wait_state("web", &id, TargetState::Active).await;
        listen
    }

    pub async fn wait_state(&self, name: &str, target: &str, state: TargetState) -> RouteStatus {
        self.wait_route(name, &format!("{target} {state:?}"), |s| {
            s.target(target).is_some_and(|t| t.state == state)
        })
        .await
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A route checking `/health` every 50 ms.
pub fn route(listen: SocketAddr, targets: Vec<TargetSpec>) -> RouteSpec {
    let mut health = HealthSpec::http("/health");
    health.interval_ms = 50;
    health.timeout_ms = 1_000;
    RouteSpec::new(listen, targets)
        .with_health(health)
        .with_drain_timeout_ms(30_000)
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A keep-alive client that never retries on its own (so every failure of the proxy shows).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .retry_canceled_requests(false)
        .build_http()
}

/// GET `url` with optional headers: status, headers and body.
pub async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, http::HeaderMap, String), String> {
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Constant load: `workers` keep-alive clients sending `GET /` in a loop until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
    bodies: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    pub fn start(url: String, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, bodies, url) =
                    (stop.clone(), ok.clone(), bodies.clone(), url.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut failures = Vec::new();
                    while !stop.load(Relaxed) {
                        match get(&client, &url, &[]).await {
                            Ok((200, _, body)) => {
                                ok.fetch_add(1, Relaxed);
                                bodies.lock().unwrap().push(body);
                            }
                            Ok((status, _, body)) => failures.push(format!("{status} {body}")),
                            Err(e) => failures.push(e),
                        }
                    }
                    failures
                })
            })
            .collect();
        Self {
            stop,
            ok,
            tasks,
            bodies,
        }
    }

    /// Waits until `n` more requests succeeded.
    pub async fn wait_more(&self, n: u64) {
        let start = self.ok.load(Relaxed);
        let deadline = tokio::time::Instant::now() + BOUND;
        while self.ok.load(Relaxed) < start + n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "load made no progress"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops and returns (successful bodies in order, failures).
    pub async fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Relaxed);
        let mut failures = Vec::new();
        for t in self.tasks {
            failures.extend(t.await.expect("load worker"));
        }
        let bodies = std::mem::take(&mut *self.bodies.lock().unwrap());
        (bodies, failures)
    }
}
