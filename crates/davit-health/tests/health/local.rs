//! Probes of servers on loopback: HTTP that turns healthy, a closed port, a slow endpoint, TLS with
//! a self-signed certificate generated here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use davit_health::{
    DirectDial, Event, HttpProbe, Outcome, Policy, Probe, Prober, Reason, Verdict, parse_target,
    wait_healthy,
};

/// A bounded policy for tests: probes every 100 ms, gives up after 20 s at most.
pub fn quick(failure_threshold: u32) -> Policy {
    Policy {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        failure_threshold,
        deadline: Some(Duration::from_secs(20)),
        ..Policy::default()
    }
}

/// A tiny HTTP/1.1 server on a thread: `respond(path, since_start)` gives status, body and a delay.
pub fn serve(
    respond: impl Fn(&str, Duration) -> (u16, String, Duration) + Send + Sync + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = Instant::now();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let respond = respond.clone();
            std::thread::spawn(move || {
                let path = read_head(&mut conn);
                let (status, body, delay) = respond(&path, start.elapsed());
                std::thread::sleep(delay);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// Reads a request head and returns its path.
pub fn read_head(conn: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split_whitespace().nth(1).unwrap_or("/").to_string()
}

pub async fn run(probe: Probe, policy: Policy) -> (Verdict, Vec<Event>) {
    let prober = Prober::new(Arc::new(DirectDial));
    let prepared = prober.prepare(&probe).unwrap();
    let mut events = Vec::new();
    let verdict = wait_healthy(&prober, &prepared, &policy, |e| events.push(e)).await;
    (verdict, events)
}

fn http(url: &str) -> HttpProbe {
    match parse_target(url).unwrap().probe {
        Probe::Http(h) => h,
        p => panic!("{p:?}"),
    }
}

pub fn results(events: &[Event]) -> Vec<(&'static str, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Result {
                outcome, detail, ..
            } => Some((*outcome, detail.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn http_turns_healthy_after_a_delay() {
    let port = serve(|path, t| {
        assert_eq!(path, "/health");
        if t < Duration::from_millis(700) {
            (503, "starting".into(), Duration::ZERO)
        } else {
            (200, "ok".into(), Duration::ZERO)
        }
    });
    let probe = Probe::Http(http(&format!("http://127.0.0.1:{port}/health")));
    let (verdict, events) = run(probe, quick(1000)).await;
    assert_eq!(verdict, Verdict::Healthy, "{events:#?}");
    let results = results(&events);
    assert!(results.len() >= 2, "{results:?}");
    assert_eq!(
        results[0],
        (
            "failure",
            "status 503 Service Unavailable, expected 200-399".into()
        )
    );
    assert_eq!(results.last().unwrap(), &("success", "200 OK".into()));
    assert!(
        results[..results.len() - 1]
            .iter()
            .all(|(o, _)| *o == "failure")
    );
    // The stream: attempt, result, attempt, result, ..., verdict.
    for (i, pair) in events[..events.len() - 1].chunks(2).enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        assert!(
            matches!(pair[0], Event::Attempt { attempt, .. } if attempt == n),
            "{pair:?}"
        );
        assert!(
            matches!(pair[1], Event::Result { attempt, .. } if attempt == n),
            "{pair:?}"
        );
    }
    assert!(matches!(
        events.last(),
        Some(Event::Verdict {
            healthy: true,
            reason: None,
            ..
        })
    ));
}

#[tokio::test]
async fn http_status_range_and_body_are_checked() {
    let port = serve(|path, _| match path {
        "/teapot" => (418, "short and stout".into(), Duration::ZERO),
        _ => (200, "davit-demo v1".into(), Duration::ZERO),
    });
    let mut probe = http(&format!("http://127.0.0.1:{port}/"));
    probe.expect_body = Some("v2".into());
    let (verdict, events) = run(Probe::Http(probe.clone()), quick(2)).await;
    assert!(
        matches!(&verdict, Verdict::Unhealthy { reason: Reason::Failures { count: 2, last } }
        if last == "200 OK, but the body does not contain \"v2\""),
        "{verdict}"
    );
    assert_eq!(results(&events).len(), 2);

    probe.expect_body = Some("v1".into());
    assert_eq!(run(Probe::Http(probe), quick(2)).await.0, Verdict::Healthy);

    let mut teapot = http(&format!("http://127.0.0.1:{port}/teapot"));
    assert!(
        !run(Probe::Http(teapot.clone()), quick(1))
            .await
            .0
            .is_healthy()
    );
    teapot.expect_status = "418".parse().unwrap();
    assert_eq!(run(Probe::Http(teapot), quick(1)).await.0, Verdict::Healthy);
}

#[tokio::test]
async fn request_headers_are_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    });
    let mut probe = http(&format!("http://127.0.0.1:{port}/ready?deep=1"));
    probe.headers.push(("X-Probe".into(), "davit".into()));
    probe.headers.push(("Host".into(), "web.internal".into()));
    assert_eq!(run(Probe::Http(probe), quick(1)).await.0, Verdict::Healthy);
    let head = seen.join().unwrap();
    assert!(head.starts_with("get /ready?deep=1 http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nx-probe: davit\r\n") && head.contains("\r\nhost: web.internal\r\n"),
        "{head}"
    );
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_closed_port_is_unhealthy_after_the_failure_threshold() {
    let port = closed_port();
    for target in [
        format!("tcp://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let (verdict, events) = run(parse_target(&target).unwrap().probe, quick(3)).await;
        match verdict {
            Verdict::Unhealthy {
                reason: Reason::Failures { count: 3, last },
            } => {
                assert!(
                    last.starts_with(&format!("connect to 127.0.0.1:{port}: ")),
                    "{last}"
                );
                assert!(last.to_lowercase().contains("refused"), "{last}");
            }
            v => panic!("{target}: {v}"),
        }
        assert_eq!(results(&events).len(), 3);
    }
}

#[tokio::test]
async fn tcp_accepting_port_is_healthy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (verdict, events) = run(
        Probe::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        quick(1),
    )
    .await;
    assert_eq!(verdict, Verdict::Healthy);
    assert_eq!(
        results(&events),
        vec![("success", format!("connected to 127.0.0.1:{port}"))]
    );
    drop(listener);
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_the_deadline_holds() {
    let port = serve(|_, _| (200, "late".into(), Duration::from_secs(3)));
    let probe = Probe::Http(http(&format!("http://127.0.0.1:{port}/")));
    let policy = Policy {
        timeout: Duration::from_millis(200),
        ..quick(2)
    };
    let (verdict, events) = run(probe.clone(), policy).await;
    assert!(
        matches!(&verdict, Verdict::Unhealthy { reason: Reason::Failures { count: 2, last } }
        if last == "timed out after 200ms"),
        "{verdict}"
    );
    for e in &events {
        if let Event::Result { latency_ms, .. } = e {
            assert!(
                *latency_ms < 3000,
                "the probe must be cut at its timeout: {e:?}"
            );
        }
    }
    // Only the deadline can end this one: the verdict comes from it, stamped at the deadline.
    let policy = Policy {
        timeout: Duration::from_secs(10),
        deadline: Some(Duration::from_millis(700)),
        ..quick(100)
    };
    let (verdict, events) = run(probe, policy).await;
    assert!(
        matches!(
            &verdict,
            Verdict::Unhealthy {
                reason: Reason::Deadline { .. }
            }
        ),
        "{verdict}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Verdict {
                at_ms: 700,
                healthy: false,
                ..
            })
        ),
        "{events:?}"
    );
}

/// A TLS endpoint with a certificate generated now, for `names`. Returns its port and the
/// certificate (DER).
fn serve_tls(names: &[&str]) -> (u16, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone().into()], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut tcp) = conn else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(mut tls) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
                let _ = read_head(&mut stream);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure",
                );
                let _ = stream.flush();
                tls_close(&mut tls, &mut tcp);
            });
        }
    });
    (port, cert_der)
}

fn tls_close(tls: &mut rustls::ServerConnection, tcp: &mut TcpStream) {
    tls.send_close_notify();
    let _ = tls.complete_io(tcp);
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate_is_refused_unless_told() {
    let (port, cert) = serve_tls(&["localhost", "127.0.0.1"]);
    let mut probe = http(&format!("https://127.0.0.1:{port}/"));
    probe.expect_body = Some("secure".into());

    let (verdict, _) = run(Probe::Http(probe.clone()), quick(1)).await;
    match verdict {
        Verdict::Unhealthy {
            reason: Reason::Failures { last, .. },
        } => {
            assert!(
                last.starts_with(&format!("tls handshake with 127.0.0.1:{port}: ")),
                "{last}"
            );
            assert!(last.contains("UnknownIssuer"), "{last}");
        }
        v => panic!("{v}"),
    }

    let insecure = HttpProbe {
        insecure: true,
        ..probe.clone()
    };
    let (verdict, events) = run(Probe::Http(insecure), quick(1)).await;
    assert_eq!(verdict, Verdict::Healthy);
    assert_eq!(
        results(&events),
        vec![("success", "200 OK, body contains \"secure\"".into())]
    );

    // Trusting the certificate verifies it, name included: `localhost` is in it...
    let trusted = HttpProbe {
        extra_roots: vec![cert.clone()],
        ..http(&format!("https://localhost:{port}/"))
    };
    assert_eq!(
        run(Probe::Http(trusted), quick(1)).await.0,
        Verdict::Healthy
    );
}

#[tokio::test]
async fn tls_names_are_verified() {
    let (port, cert) = serve_tls(&["other.test"]);
    let probe = HttpProbe {
        extra_roots: vec![cert],
        ..http(&format!("https://127.0.0.1:{port}/"))
    };
    match run(Probe::Http(probe), quick(1)).await.0 {
        Verdict::Unhealthy {
            reason: Reason::Failures { last, .. },
        } => assert!(last.contains("not valid for name \"127.0.0.1\""), "{last}"),
        v => panic!("{v}"),
    }
}

#[tokio::test]
async fn container_probes_need_an_engine() {
    let prober = Prober::default();
    let err = prober
        .prepare(&Probe::Container {
            container: "web".into(),
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "probing container://web needs a Docker engine, and none was given"
    );
    assert!(matches!(
        prober
            .check(
                &prober
                    .prepare(&Probe::Tcp {
                        host: "127.0.0.1".into(),
                        port: closed_port()
                    })
                    .unwrap()
            )
            .await,
        Outcome::Failure(_)
    ));
}

#[tokio::test]
async fn min_healthy_time_ends_without_waiting_for_a_hung_probe() {
    // Answers the first request, then hangs every later one.
    let port = serve(|_, t| {
        if t < Duration::from_millis(200) {
            (200, "ok".into(), Duration::ZERO)
        } else {
            (200, "late".into(), Duration::from_secs(60))
        }
    });
    let probe = Probe::Http(http(&format!("http://127.0.0.1:{port}/")));
    let policy = Policy {
        interval: Duration::from_millis(300),
        timeout: Duration::from_secs(30),
        min_healthy_time: Duration::from_millis(800),
        deadline: Some(Duration::from_secs(60)),
        ..Policy::default()
    };
    // Healthy once the first success has held for 800 ms: the second probe, hung for its 30 s
    // timeout, does not hold the verdict back (a generous bound well under that timeout).
    let (verdict, events) = tokio::time::timeout(Duration::from_secs(15), run(probe, policy))
        .await
        .expect("verdict before the hung probe's timeout");
    assert_eq!(verdict, Verdict::Healthy);
    let Some(Event::Result {
        at_ms: first_ok, ..
    }) = events.iter().find(|e| matches!(e, Event::Result { .. }))
    else {
        panic!("{events:?}")
    };
    assert!(
        matches!(events.last(), Some(Event::Verdict { at_ms, healthy: true, .. }) if *at_ms == first_ok + 800),
        "{events:?}"
    );
    assert_eq!(
        results(&events).len(),
        1,
        "the hung probe has no result: {events:?}"
    );
}

#[tokio::test]
async fn runs_can_be_spawned() {
    // The engine runs many probes at once: wait_healthy must be a Send future.
    let port = serve(|_, _| (200, "ok".into(), Duration::ZERO));
    let prober = Prober::default();
    let probe = prober
        .prepare(&Probe::Http(http(&format!("http://127.0.0.1:{port}/"))))
        .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (prober, probe) = (prober.clone(), probe.clone());
            tokio::spawn(async move { wait_healthy(&prober, &probe, &quick(1), |_| {}).await })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), Verdict::Healthy);
    }
}
