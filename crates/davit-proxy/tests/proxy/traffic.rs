//! Traffic through the proxy while routes change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use davit_proxy::api::{RouteSpec, TargetSpec, TargetState};
use davit_proxy::client::AdminClient;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{BOUND, Demo, Load, TestProxy, client, free_addr, get, route};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_targets_under_constant_load_loses_no_request() {
    let v1 = Demo::start("v1").await;
    let v2 = Demo::start("v2").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;

    let load = Load::start(format!("http://{listen}/"), 8);
    load.wait_more(300).await;
    let status = p
        .admin
        .put_route("web", &route(listen, vec![v2.target()]))
        .await
        .unwrap();
    // Until v2 passes its check, v1 keeps serving.
    assert_ne!(
        status.target("v1").unwrap().state,
        TargetState::Drained,
        "{status:#?}"
    );
    p.wait_route("web", "v2 active and v1 drained", |s| {
        s.target("v2")
            .is_some_and(|t| t.state == TargetState::Active)
            && s.target("v1")
                .is_some_and(|t| t.state == TargetState::Drained)
    })
    .await;
    load.wait_more(300).await;
    // And back again, under the same load.
    p.admin
        .put_route("web", &route(listen, vec![v1.target()]))
        .await
        .unwrap();
    let settled = p.wait_route("web", "settled on v1", |s| s.settled()).await;
    load.wait_more(300).await;
    let (bodies, failures) = load.stop().await;

    assert_eq!(
        failures,
        Vec::<String>::new(),
        "requests were lost during the switches"
    );
    let v2_first = bodies
        .iter()
        .position(|b| b.contains("v2"))
        .expect("v2 answered");
    let v2_last = bodies.iter().rposition(|b| b.contains("v2")).unwrap();
    assert!(bodies[..v2_first].iter().all(|b| b == "davit-demo v1\n"));
    assert!(bodies[v2_last + 1..].iter().all(|b| b == "davit-demo v1\n"));
    assert!(
        bodies.len() - v2_last > 100,
        "v1 served again after the switch back"
    );
    assert_eq!(settled.target("v2").unwrap().state, TargetState::Drained);
    assert_eq!(settled.target("v2").unwrap().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_request_survives_the_switch_and_the_drain() {
    let v1 = Demo::start("v1").await;
    let v2 = Demo::start("v2").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;

    let slow =
        tokio::spawn(
            async move { get(&client(), &format!("http://{listen}/slow?ms=2000"), &[]).await },
        );
    p.wait_route("web", "the slow request in flight on v1", |s| {
        s.target("v1").unwrap().in_flight == 1
    })
    .await;
    p.admin
        .put_route("web", &route(listen, vec![v2.target()]))
        .await
        .unwrap();
    let draining = p.wait_state("web", "v1", TargetState::Draining).await;
    assert_eq!(draining.target("v1").unwrap().in_flight, 1, "{draining:#?}");
    assert_eq!(draining.target("v2").unwrap().state, TargetState::Active);

    // New requests go to v2 while v1 drains.
    let c = client();
    for _ in 0..20 {
        let (status, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "davit-demo v2\n"));
    }
    assert_eq!(
        p.admin
            .route("web")
            .await
            .unwrap()
            .unwrap()
            .target("v1")
            .unwrap()
            .state,
        TargetState::Draining
    );

    let (status, _, body) = tokio::time::timeout(BOUND, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "davit-demo v1 slow 2000ms\n")
    );
    let drained = p.wait_state("web", "v1", TargetState::Drained).await;
    assert_eq!(drained.target("v1").unwrap().in_flight, 0);
    assert!(drained.settled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_that_dies_mid_drain_ends_its_drain_and_costs_only_its_own_requests() {
    let mut v1 = Demo::start("v1").await;
    let v2 = Demo::start("v2").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;

    let slow = tokio::spawn(async move {
        get(&client(), &format!("http://{listen}/slow?ms=30000"), &[]).await
    });
    p.wait_route("web", "the slow request in flight on v1", |s| {
        s.target("v1").unwrap().in_flight == 1
    })
    .await;
    let load = Load::start(format!("http://{listen}/"), 4);
    load.wait_more(100).await;
    p.admin
        .put_route("web", &route(listen, vec![v2.target()]))
        .await
        .unwrap();
    p.wait_state("web", "v1", TargetState::Draining).await;
    load.wait_more(100).await;
    v1.kill();

    let drained = p.wait_state("web", "v1", TargetState::Drained).await;
    assert_eq!(drained.target("v1").unwrap().in_flight, 0);
    let (status, _, _) = tokio::time::timeout(BOUND, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        status, 502,
        "the request in flight on the dead upstream fails as a bad gateway"
    );
    load.wait_more(200).await;
    let (bodies, failures) = load.stop().await;
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "only the dead upstream's own request may fail"
    );
    assert!(bodies.last().unwrap().contains("v2"));
    let metrics = p.admin.metrics().await.unwrap();
    assert!(
        metrics.contains("davit_proxy_responses_5xx_total{route=\"web\",target=\"v1\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_percent_weight_gives_ten_percent_and_cookies_stick() {
    let v1 = Demo::start("v1").await;
    let v2 = Demo::start("v2").await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let targets = vec![v1.target().with_weight(90), v2.target().with_weight(10)];
    p.admin
        .put_route("web", &route(listen, targets))
        .await
        .unwrap();
    p.wait_route("web", "both active", |s| {
        s.targets.iter().all(|t| t.state == TargetState::Active)
    })
    .await;

    let c = client();
    let url = format!("http://{listen}/");
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut cookies: Vec<(String, String)> = Vec::new();
    for i in 0..5_000 {
        let (status, headers, body) = get(&c, &url, &[]).await.unwrap();
        assert_eq!(status, 200);
        let cookie = headers
            .get("set-cookie")
            .expect("a new client gets the sticky cookie")
            .to_str()
            .unwrap();
        let value = cookie.split(';').next().unwrap().to_owned();
        let version = body.trim().rsplit(' ').next().unwrap().to_owned();
        assert_eq!(
            value,
            format!("davit_target={version}"),
            "the cookie names the target that answered"
        );
        *counts.entry(version.clone()).or_default() += 1;
        if i % 25 == 0 {
            cookies.push((value, version));
        }
    }
    let share = f64::from(counts["v2"]) / 5_000.0;
    assert!(
        (0.08..=0.12).contains(&share),
        "v2 got {share} of the requests, want 0.10 ± 0.02: {counts:?}"
    );

    // Clients that carry the cookie stay on their target.
    assert!(
        cookies.iter().any(|c| c.1 == "v2") && cookies.iter().any(|c| c.1 == "v1"),
        "{cookies:?}"
    );
    for (cookie, version) in &cookies {
        for _ in 0..10 {
            let (status, headers, body) = get(&c, &url, &[("cookie", cookie)]).await.unwrap();
            assert_eq!((status, body), (200, format!("davit-demo {version}\n")));
            assert!(
                headers.get("set-cookie").is_none(),
                "a sticky client keeps its cookie"
            );
        }
    }
    // A cookie naming a target that no longer serves is replaced.
    let (_, headers, _) = get(&c, &url, &[("cookie", "davit_target=gone")])
        .await
        .unwrap();
    assert!(headers.get("set-cookie").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_never_turns_healthy_gets_no_traffic() {
    let v1 = Demo::start("v1").await;
    let broken = Demo::start_broken("broken").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;
    p.admin
        .put_route("web", &route(listen, vec![broken.target()]))
        .await
        .unwrap();
    // Three failures in a row (the default failure threshold) make it unhealthy; it never passed,
    // so it never got traffic.
    let status = p.wait_state("web", "broken", TargetState::Unhealthy).await;
    assert_eq!(
        status.target("broken").unwrap().last_check.as_deref(),
        Some("500 Internal Server Error")
    );
    let c = client();
    for _ in 0..50 {
        let (_, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
        assert_eq!(body, "davit-demo v1\n", "the old target keeps serving");
    }
    let status = p.admin.route("web").await.unwrap().unwrap();
    assert_eq!(status.target("v1").unwrap().state, TargetState::Active);
    assert_eq!(status.target("broken").unwrap().requests, 0);
    // The engine rolls back: the route settles on v1 and the broken target is drained.
    p.admin
        .put_route("web", &route(listen, vec![v1.target()]))
        .await
        .unwrap();
    let settled = p.wait_route("web", "settled", |s| s.settled()).await;
    assert_eq!(
        settled.target("broken").unwrap().state,
        TargetState::Drained
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_errors_are_retried_on_another_target() {
    let v1 = Demo::start("v1").await;
    let mut v2 = Demo::start("v2").await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(listen, vec![v1.target(), v2.target()]);
    spec.health.interval_ms = 60_000; // v2 stays "active" after it dies: only retries can hide it
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_route("web", "both active", |s| {
        s.targets.iter().all(|t| t.state == TargetState::Active)
    })
    .await;
    v2.kill();
    let c = client();
    for _ in 0..200 {
        let (status, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "davit-demo v1\n"));
    }
    let metrics = p.admin.metrics().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("davit_proxy_connect_errors_total{route=\"web\",target=\"v2\"}"))
        .unwrap();
    let errors: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(errors > 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_mode_serves_503_with_the_page_and_is_remembered_in_the_route() {
    let v1 = Demo::start("v1").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;
    let c = client();
    let url = format!("http://{listen}/");
    let status = p
        .admin
        .set_maintenance("web", true, Some("<h1>back soon</h1>".into()))
        .await
        .unwrap();
    assert!(status.spec.maintenance.is_some());
    let (code, headers, body) = get(&c, &url, &[]).await.unwrap();
    assert_eq!((code, body.as_str()), (503, "<h1>back soon</h1>"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    p.admin.set_maintenance("web", false, None).await.unwrap();
    let (code, _, body) = get(&c, &url, &[]).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "davit-demo v1\n"));
    let err = p
        .admin
        .set_maintenance("nope", true, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the proxy refused POST /routes/nope/maintenance: 404 no route named \"nope\""
    );
}

/// An upstream that answers every request with the headers it got, and upgrades `Upgrade: echo`
/// requests to a byte echo.
pub(crate) async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|mut req: http::Request<Incoming>| async move {
                        if req.uri().path() == "/health" {
                            return Ok::<_, Infallible>(http::Response::new(Full::new(
                                Bytes::from("ok"),
                            )));
                        }
                        if req.method() == http::Method::POST {
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .map(|b| b.to_bytes().len());
                            return Ok(http::Response::new(Full::new(Bytes::from(format!(
                                "got {body:?}"
                            )))));
                        }
                        if req.headers().get("upgrade").is_some_and(|v| v == "echo") {
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(on.await.unwrap());
                                let mut buf = [0u8; 1024];
                                loop {
                                    let n = io.read(&mut buf).await.unwrap_or(0);
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let resp = http::Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "echo")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok(resp);
                        }
                        let mut lines: Vec<String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                            .collect();
                        lines.sort();
                        lines.insert(
                            0,
                            format!("{} {} {:?}", req.method(), req.uri(), req.version()),
                        );
                        Ok(http::Response::new(Full::new(Bytes::from(
                            lines.join("\n"),
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrades_pass_through_and_count_in_flight_until_closed() {
    let echo = echo_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    p.admin
        .put_route("ws", &route(listen, vec![TargetSpec::new("echo", echo)]))
        .await
        .unwrap();
    p.wait_state("ws", "echo", TargetState::Active).await;

    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "head cut short: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("upgrade: echo\r\n"), "{head}");
    for msg in ["hello", "through the proxy"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, msg.as_bytes());
    }
    let open = p.admin.route("ws").await.unwrap().unwrap();
    assert_eq!(
        open.target("echo").unwrap().in_flight,
        1,
        "the tunnel counts as in flight"
    );
    drop(s);
    p.wait_route("ws", "the tunnel closed", |s| {
        s.target("echo").unwrap().in_flight == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_headers_http2_clients_and_body_limit() {
    let echo = echo_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec: RouteSpec = route(listen, vec![TargetSpec::new("echo", echo)]);
    spec.max_body_bytes = 16;
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_state("web", "echo", TargetState::Active).await;

    let (status, _, body) = get(
        &client(),
        &format!("http://{listen}/a?b=c"),
        &[("x-forwarded-for", "10.1.2.3")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    insta::assert_snapshot!(
        "http1_upstream_request",
        body.replace(&listen.port().to_string(), "PORT")
    );

    let h2: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let (status, _, body) = get(&h2, &format!("http://{listen}/h2"), &[]).await.unwrap();
    assert_eq!(status, 200);
    insta::assert_snapshot!(
        "http2_client_upstream_request",
        body.replace(&listen.port().to_string(), "PORT")
    );

    let big = http::Request::post(format!("http://{listen}/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 100])))
        .unwrap();
    let c: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(c.request(big).await.unwrap().status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_client_works_over_any_stream_and_refuses_bad_routes() {
    let v1 = Demo::start("v1").await;
    let p = TestProxy::start().await;
    let admin_addr = p.admin_addr;
    let dials = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = dials.clone();
    // As the engine does over SSH: a closure that opens a stream per call.
    let admin = AdminClient::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::net::TcpStream::connect(admin_addr)
    });
    admin.healthz().await.unwrap();
    let listen = free_addr();
    admin
        .put_route("a", &route(listen, vec![v1.target()]))
        .await
        .unwrap();
    let err = admin
        .put_route("b", &route(listen, vec![v1.target()]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the proxy refused PUT /routes/b: 422 invalid route \"b\": {listen} is already the listen address of route \"a\""
        )
    );
    let dup = route(free_addr(), vec![v1.target(), v1.target()]);
    let err = admin.put_route("c", &dup).await.unwrap_err();
    assert!(
        err.to_string().ends_with("target id \"v1\" appears twice"),
        "{err}"
    );
    let routes = admin.routes().await.unwrap();
    assert_eq!(
        routes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert!(admin.delete_route("a").await.unwrap());
    assert!(!admin.delete_route("a").await.unwrap());
    assert_eq!(admin.route("a").await.unwrap(), None);
    assert!(
        tokio::net::TcpStream::connect(listen).await.is_err(),
        "a deleted route's listener is closed"
    );
    assert_eq!(dials.load(std::sync::atomic::Ordering::Relaxed), 8);
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_and_idle_timeouts() {
    let v1 = Demo::start("v1").await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(listen, vec![v1.target()]);
    spec.timeouts.request_ms = 300;
    spec.timeouts.idle_ms = 300;
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_state("web", "v1", TargetState::Active).await;

    let (status, _, body) = get(&client(), &format!("http://{listen}/slow?ms=5000"), &[])
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (504, "upstream timed out\n"));
    let metrics = p.admin.metrics().await.unwrap();
    assert!(
        metrics.contains("davit_proxy_responses_5xx_total{route=\"web\",target=\"v1\"} 1\n"),
        "{metrics}"
    );

    // A keep-alive connection with no request is closed by the proxy.
    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was never closed");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("davit-demo v1\n"),
        "{text}"
    );
}

/// An upstream whose `/health` fails its first `fail_first` checks, then passes; it counts the checks
/// and answers `scripted` everywhere else.
async fn scripted_server(fail_first: usize) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = checks.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let mut resp = http::Response::new(Full::new(Bytes::from("scripted\n")));
                        if req.uri().path() == "/health"
                            && counter.fetch_add(1, SeqCst) < fail_first
                        {
                            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_target_is_gated_by_the_health_crate_policy() {
    use std::sync::atomic::Ordering::SeqCst;
    let v1 = Demo::start("v1").await;
    let (late, late_checks) = scripted_server(3).await;
    let (never, _) = scripted_server(usize::MAX).await;
    let p = TestProxy::start().await;
    let c = client();

    // Start period: its first three failures are not counted (with a failure threshold of 1 they
    // would make it unhealthy), then two passes in a row (the success threshold) let traffic in.
    let listen = free_addr();
    let gated = |targets| {
        let mut spec = route(listen, targets);
        spec.health.success_threshold = 2;
        spec.health.failure_threshold = 1;
        spec.health.start_period_ms = 60_000;
        spec
    };
    p.admin
        .put_route("web", &gated(vec![v1.target()]))
        .await
        .unwrap();
    p.wait_state("web", "v1", TargetState::Active).await;
    p.admin
        .put_route("web", &gated(vec![TargetSpec::new("late", late)]))
        .await
        .unwrap();
    let mut served_before = 0;
    loop {
        let status = p.admin.route("web").await.unwrap().unwrap();
        let t = status.target("late").unwrap();
        if t.state == TargetState::Active {
            break;
        }
        assert_eq!(t.state, TargetState::Pending, "{status:#?}");
        assert_eq!(t.requests, 0);
        let (code, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
        if body == "scripted\n" {
            // The check that let it in passed between the status and this request: it is active
            // now, and it got no request before.
            let status = p.admin.route("web").await.unwrap().unwrap();
            assert_eq!(
                status.target("late").unwrap().state,
                TargetState::Active,
                "{status:#?}"
            );
            break;
        }
        assert_eq!((code, body.as_str()), (200, "davit-demo v1\n"));
        served_before += 1;
        assert!(served_before < 10_000, "late never became active");
    }
    assert!(
        late_checks.load(SeqCst) >= 5,
        "3 failures and 2 successes before traffic moved, saw {} checks",
        late_checks.load(SeqCst)
    );
    let (code, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "scripted\n"));

    // Without a start period, one failure (the threshold) makes a new target unhealthy at once; it
    // never gets traffic and the old target keeps the route.
    let listen = free_addr();
    let strict = |targets| {
        let mut spec = route(listen, targets);
        spec.health.failure_threshold = 1;
        spec
    };
    p.admin
        .put_route("strict", &strict(vec![v1.target()]))
        .await
        .unwrap();
    p.wait_state("strict", "v1", TargetState::Active).await;
    p.admin
        .put_route("strict", &strict(vec![TargetSpec::new("never", never)]))
        .await
        .unwrap();
    let status = p
        .wait_state("strict", "never", TargetState::Unhealthy)
        .await;
    assert_eq!(status.target("v1").unwrap().state, TargetState::Active);
    let (code, _, body) = get(&c, &format!("http://{listen}/"), &[]).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "davit-demo v1\n"));
}

/// RFC 6455's `Sec-WebSocket-Accept` for a key.
fn websocket_accept(key: &str) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A WebSocket echo server (RFC 6455: the handshake, then unmasked frames back for masked frames in,
/// a close answered with a close).
async fn websocket_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|mut req: http::Request<Incoming>| async move {
                        let mut resp = http::Response::new(Full::new(Bytes::from("ok")));
                        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                            return Ok::<_, Infallible>(resp);
                        };
                        assert_eq!(req.headers()["upgrade"], "websocket");
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            loop {
                                let mut head = [0u8; 2];
                                if io.read_exact(&mut head).await.is_err() {
                                    return;
                                }
                                let (opcode, len) = (head[0] & 0x0f, usize::from(head[1] & 0x7f));
                                assert!(head[1] & 0x80 != 0, "client frames are masked");
                                assert!(len < 126, "short frames only here");
                                let mut mask = [0u8; 4];
                                io.read_exact(&mut mask).await.unwrap();
                                let mut payload = vec![0u8; len];
                                io.read_exact(&mut payload).await.unwrap();
                                for (i, b) in payload.iter_mut().enumerate() {
                                    *b ^= mask[i % 4];
                                }
                                let mut frame = vec![0x80 | opcode, u8::try_from(len).unwrap()];
                                frame.extend_from_slice(&payload);
                                io.write_all(&frame).await.unwrap();
                                if opcode == 0x8 {
                                    return;
                                }
                            }
                        });
                        *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                        let h = resp.headers_mut();
                        h.insert("connection", "Upgrade".parse().unwrap());
                        h.insert("upgrade", "websocket".parse().unwrap());
                        h.insert(
                            "sec-websocket-accept",
                            websocket_accept(key.to_str().unwrap()).parse().unwrap(),
                        );
                        Ok(resp)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// One masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_passes_through_the_proxy() {
    let ws = websocket_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(listen, vec![TargetSpec::new("ws", ws)]);
    spec.health.path = None;
    p.admin.put_route("ws", &spec).await.unwrap();
    p.wait_state("ws", "ws", TargetState::Active).await;

    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "{head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    // The RFC's own example: this key's accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    for msg in ["hello", "through the proxy"] {
        s.write_all(&client_frame(0x1, msg.as_bytes()))
            .await
            .unwrap();
        let mut back = vec![0u8; 2 + msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back[..2], [0x81, u8::try_from(msg.len()).unwrap()]);
        assert_eq!(&back[2..], msg.as_bytes());
    }
    assert_eq!(
        p.admin
            .route("ws")
            .await
            .unwrap()
            .unwrap()
            .target("ws")
            .unwrap()
            .in_flight,
        1,
        "the open WebSocket counts as in flight"
    );
    s.write_all(&client_frame(0x8, &[0x03, 0xe8]))
        .await
        .unwrap();
    let mut close = [0u8; 4];
    s.read_exact(&mut close).await.unwrap();
    assert_eq!(close, [0x88, 2, 0x03, 0xe8]);
    drop(s);
    p.wait_route("ws", "the WebSocket closed", |s| {
        s.target("ws").unwrap().in_flight == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_body_over_the_limit_is_refused() {
    let echo = echo_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(listen, vec![TargetSpec::new("echo", echo)]);
    spec.max_body_bytes = 16;
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_state("web", "echo", TargetState::Active).await;
    // Chunked: no Content-Length to refuse up front, the limit applies while the body streams.
    let post = |chunks: Vec<&'static [u8]>| {
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(c)))),
        ));
        http::Request::post(format!("http://{listen}/upload"))
            .body(body)
            .unwrap()
    };
    let c = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let small = c.request(post(vec![b"0123", b"45678"])).await.unwrap();
    assert_eq!(small.status(), 200);
    let body = http_body_util::BodyExt::collect(small.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"got Ok(9)");
    let big = c
        .request(post(vec![b"0123456789", b"0123456789", b"0123456789"]))
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
}

/// An upstream that reads each request and closes the connection without answering; it counts the
/// requests it got.
async fn swallowing_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let counter = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                counter.fetch_add(1, SeqCst);
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_reached_an_upstream_is_never_retried() {
    use std::sync::atomic::Ordering::SeqCst;
    let (a, got_a) = swallowing_server().await;
    let (b, got_b) = swallowing_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(
        listen,
        vec![TargetSpec::new("a", a), TargetSpec::new("b", b)],
    );
    spec.health.path = None;
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_route("web", "both active", |s| {
        s.targets.iter().all(|t| t.state == TargetState::Active)
    })
    .await;
    let c = client();
    for i in 1..=20 {
        let (code, _, body) = get(&c, &format!("http://{listen}/{i}"), &[]).await.unwrap();
        assert_eq!((code, body.as_str()), (502, "upstream failed\n"));
        // Each request reached exactly one upstream: it failed there and was not sent again.
        assert_eq!(got_a.load(SeqCst) + got_b.load(SeqCst), i);
    }
    let status = p.admin.route("web").await.unwrap().unwrap();
    let sent: u64 = status.targets.iter().map(|t| t.requests).sum();
    let failed: u64 = status.targets.iter().map(|t| t.responses_5xx).sum();
    assert_eq!((sent, failed), (20, 20));
}

/// An upstream speaking raw HTTP/1.1 with the framings a proxy meets (length, chunked with an
/// extension and a trailer, interim 100, until close, `Connection: close`, 204, HEAD, a body larger
/// than a read). It logs `(connection number, request head)` for every request.
async fn raw_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<(usize, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = log.clone();
    tokio::spawn(async move {
        for id in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    requests.lock().unwrap().push((id, head.clone()));
                    let big = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n{}",
                        "x".repeat(200_000)
                    );
                    let (pieces, close): (Vec<&str>, bool) = match path.as_str() {
                        "/length" => (
                            vec![
                                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-drop\r\nKeep-Alive: timeout=5\r\nX-Drop: 1\r\nX-Keep: 1\r\n\r\nhello",
                            ],
                            false,
                        ),
                        "/chunked" => (
                            vec![
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r",
                                "\nhel",
                                "lo\r\n6\r\n world\r\n0\r\nTrailer-X: 1\r\n",
                                "\r\n",
                            ],
                            false,
                        ),
                        "/continue" => (
                            vec![
                                "HTTP/1.1 100 Continue\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                            ],
                            false,
                        ),
                        "/eof" => (vec!["HTTP/1.1 200 OK\r\n\r\nuntil ", "close"], true),
                        "/close" => (
                            vec![
                                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
                            ],
                            true,
                        ),
                        "/nocontent" => (vec!["HTTP/1.1 204 No Content\r\n\r\n"], false),
                        "/big" => (vec![big.as_str()], false),
                        _ => (
                            vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
                            false,
                        ),
                    };
                    let head_request = head.starts_with("HEAD ");
                    for piece in pieces {
                        let piece = if head_request {
                            &piece[..piece.find("\r\n\r\n").map_or(piece.len(), |i| i + 4)]
                        } else {
                            piece
                        };
                        if s.write_all(piece.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_framings_pass_through_and_connections_are_reused() {
    let (upstream, log) = raw_server().await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    p.admin
        .put_route(
            "web",
            &route(listen, vec![TargetSpec::new("raw", upstream)]),
        )
        .await
        .unwrap();
    p.wait_state("web", "raw", TargetState::Active).await;
    let c = client();
    let url = |path: &str| format!("http://{listen}{path}");

    let (status, headers, body) = get(&c, &url("/length"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(headers.get("x-keep").unwrap(), "1");
    for hop in ["keep-alive", "x-drop"] {
        assert!(!headers.contains_key(hop), "{hop} passed: {headers:?}");
    }
    let (status, headers, body) = get(&c, &url("/chunked"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello world"));
    assert!(!headers.contains_key("trailer-x"), "{headers:?}");
    let (status, _, body) = get(&c, &url("/continue"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(&c, &url("/nocontent"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, _, body) = get(&c, &url("/eof"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "until close"));
    let (status, _, body) = get(&c, &url("/close"), &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "bye"));
    let (status, _, body) = get(&c, &url("/big"), &[]).await.unwrap();
    assert_eq!((status, body.len()), (200, 200_000));
    assert!(body.bytes().all(|b| b == b'x'));
    let head = http::Request::head(url("/length"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = c.request(head).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-length").unwrap(), "5");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(body.is_empty());

    // Sequential requests reuse one pooled upstream connection.
    for _ in 0..3 {
        let (status, _, body) = get(&c, &url("/again"), &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    let log = log.lock().unwrap().clone();
    let again: Vec<usize> = log
        .iter()
        .filter(|(_, h)| h.starts_with("GET /again "))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(again.len(), 3, "{log:?}");
    assert!(again.iter().all(|id| *id == again[0]), "{log:?}");
    // No hop-by-hop header went upstream, and every request was sent once.
    for (_, h) in log.iter().filter(|(_, h)| !h.contains(" /health ")) {
        let lower = h.to_ascii_lowercase();
        assert!(
            !lower.contains("\r\nconnection:") && !lower.contains("\r\nkeep-alive:"),
            "{h}"
        );
        assert!(lower.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{h}");
    }
    let sent = log.iter().filter(|(_, h)| !h.contains(" /health ")).count();
    assert_eq!(sent, 11, "{log:?}");
}

/// A client whose connection the proxy accepted just as it began to stop (the listeners close, the
/// connections that served a request are closed after the close grace) still gets its first request
/// answered, with `Connection: close`; a connection that never sends one is closed after a grace, so
/// the stop still ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_accepted_as_the_proxy_stops_gets_its_first_request_answered() {
    let v1 = Demo::start("v1").await;
    let p = TestProxy::start().await;
    let listen = p.serve_web(v1.target()).await;
    let mut late = tokio::net::TcpStream::connect(listen).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(listen).await.unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    while p.proxy.client_connections() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = tokio::spawn({
        let proxy = p.proxy.clone();
        async move { proxy.shutdown(BOUND).await }
    });
    // Past the close grace (1 s): the proxy has told every connection to stop by now.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(
        !stopping.is_finished(),
        "the stop waits for connections that have not sent their first request"
    );
    late.write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, late.read_to_string(&mut response))
        .await
        .expect("the response ends")
        .expect("the connection is not reset");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{response}"
    );
    assert!(response.ends_with("davit-demo v1\n"), "{response}");
    assert_eq!(
        tokio::time::timeout(BOUND, stopping)
            .await
            .unwrap()
            .unwrap(),
        0
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(BOUND, silent.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the silent connection was closed: {read:?}"
    );
    assert_eq!(p.proxy.client_connections(), 0);
}

/// Listening sockets on `port` in this network namespace, from `/proc/net/tcp` (state `0A`: LISTEN).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&port) && f[3] == "0A"
        })
        .count()
}

/// Clients that each open a new connection per request (`Connection: close`), until stopped:
/// they meet connections in every state an accept queue holds them in.
fn fresh_connection_load(
    listen: SocketAddr,
    clients: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failures) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let exchange = async {
                        let mut s = tokio::net::TcpStream::connect(listen).await?;
                        s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                            .await?;
                        let mut answer = Vec::new();
                        s.read_to_end(&mut answer).await?;
                        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
                    };
                    match tokio::time::timeout(BOUND, exchange).await {
                        Ok(Ok(a)) if a.starts_with("HTTP/1.1 200") => ok += 1,
                        Ok(Ok(a)) => failures.push(a.lines().next().unwrap_or("").to_owned()),
                        Ok(Err(e)) => failures.push(e.to_string()),
                        Err(_) => failures.push("timed out".into()),
                    }
                }
                (ok, failures)
            })
        })
        .collect()
}

/// A proxy started with the handover socket of a running one takes its listening sockets over (the
/// route restored from the state file accepts from the very same socket, so the port never has a
/// second listener), and when the old one stops, nothing closes: no request fails, however the
/// kernel would treat a closing listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_proxy_takes_the_listening_sockets_over_and_no_request_fails() {
    let v1 = Demo::start("v1").await;
    let dir = tempfile::tempdir().unwrap();
    let config = || davit_proxy::ProxyConfig {
        state_file: Some(dir.path().join("routes.json")),
        handover: Some(dir.path().join("handover.sock")),
        ..davit_proxy::ProxyConfig::default()
    };
    let old = TestProxy::start_with(config()).await;
    let old_handover = old
        .proxy
        .serve_handover(&dir.path().join("handover.sock"))
        .unwrap();
    let listen = old.serve_web(v1.target()).await;
    assert_eq!(listening_sockets(listen.port()), 1);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = fresh_connection_load(listen, 4, &stop);
    old.wait_route("web", "requests", |s| s.target("v1").unwrap().requests > 50)
        .await;

    let new = TestProxy::start_with(config()).await;
    let new_handover = new
        .proxy
        .serve_handover(&dir.path().join("handover.sock"))
        .unwrap();
    assert_eq!(new.proxy.listen_addr("web").await, Some(listen));
    assert_eq!(
        listening_sockets(listen.port()),
        1,
        "the new proxy accepts from the old one's socket, it bound none of its own"
    );
    new.wait_route("web", "requests on the new proxy", |s| {
        s.target("v1").unwrap().requests > 20
    })
    .await;

    // The old proxy stops: its listening sockets stay open in the new one, which gets every
    // connection from now on.
    assert_eq!(old.proxy.shutdown(BOUND).await, 0);
    old_handover.abort();
    drop(old);
    assert_eq!(listening_sockets(listen.port()), 1);
    let at_stop = new.admin.route("web").await.unwrap().unwrap();
    new.wait_route("web", "more requests once the old proxy is gone", |s| {
        s.target("v1").unwrap().requests > at_stop.target("v1").unwrap().requests + 100
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failures) = (0, Vec::new());
    for t in load {
        let (o, f) = t.await.unwrap();
        ok += o;
        failures.extend(f);
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "requests failed at the handover"
    );
    assert!(ok > 170, "the load ran: {ok} requests");

    // The new proxy, stopped with nobody to take over, closes the port.
    new_handover.abort();
    assert_eq!(new.proxy.shutdown(BOUND).await, 0);
    drop(new);
    assert_eq!(listening_sockets(listen.port()), 0, "the port is closed");
}
