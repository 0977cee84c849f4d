//! The notifier against real local webhook receivers: one that records requests, one that is down, one
//! that never answers, one that answers 500, and one over HTTPS.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use davit_ops::{Event, Format, Notifier, Outcome, Redactor, Target};

/// A request as the receiver saw it.
#[derive(Debug)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request (with a Content-Length body) from `stream`.
fn read_request(stream: &mut impl std::io::Read) -> Seen {
    try_read_request(stream).expect("a well-formed request")
}

fn try_read_request(stream: &mut impl std::io::Read) -> std::io::Result<Seen> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad("header"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| bad("content-length"))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = serde_json::from_slice(&body).map_err(|_| bad("json body"))?;
    Ok(Seen {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
    })
}

/// A receiver on loopback that answers every request with `status` and reports what it saw.
fn receiver(status: u16) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let seen = read_request(&mut stream);
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            )
            .unwrap();
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A receiver that accepts connections and never answers.
fn hanging_receiver() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream.unwrap());
        }
    });
    addr
}

/// A loopback port with nothing listening.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn event(outcome: Outcome, message: &str) -> Event {
    Event {
        outcome,
        project: "shop".into(),
        environment: Some("production".into()),
        release: Some("r7".into()),
        hosts: vec!["ssh://root@10.77.9.2:22".into()],
        message: message.into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn posts_each_format_in_its_shape() {
    let (addr, seen) = receiver(200);
    let notifier = Notifier::new(vec![
        Target::new(
            &format!("http://{addr}/slack/T0/B0?x=1"),
            Some(Format::Slack),
        )
        .unwrap(),
        Target::new(&format!("http://{addr}/discord"), Some(Format::Discord)).unwrap(),
        Target::new(&format!("http://{addr}/generic"), Some(Format::Generic)).unwrap(),
    ]);
    let deliveries = runtime().block_on(notifier.send(&event(Outcome::Succeeded, "all healthy")));
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries.iter().all(|d| d.ok() && d.result == Ok(200)),
        "{deliveries:?}"
    );

    let mut requests: Vec<Seen> = (0..3).map(|_| seen.recv_timeout(WAIT).unwrap()).collect();
    requests.sort_by(|a, b| a.request_line.cmp(&b.request_line));
    for r in &requests {
        assert!(
            r.request_line.starts_with("POST /") && r.request_line.ends_with(" HTTP/1.1"),
            "{}",
            r.request_line
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("host"), Some(addr.to_string().as_str()));
    }
    let [discord, generic, slack] = requests.try_into().unwrap();
    assert_eq!(slack.request_line, "POST /slack/T0/B0?x=1 HTTP/1.1");
    let summary = "✅ davit: shop (production) release r7 deploy succeeded on 1 host (ssh://root@10.77.9.2:22): all healthy";
    assert_eq!(slack.body, serde_json::json!({ "text": summary }));
    assert_eq!(discord.body, serde_json::json!({ "content": summary }));
    assert_eq!(
        generic.body,
        serde_json::json!({
            "event": "deploy",
            "outcome": "succeeded",
            "project": "shop",
            "environment": "production",
            "release": "r7",
            "hosts": ["ssh://root@10.77.9.2:22"],
            "message": "all healthy",
            "text": summary,
        })
    );
}

#[test]
fn every_outcome_is_delivered() {
    let (addr, seen) = receiver(204);
    let notifier = Notifier::new(vec![
        Target::new(&format!("http://{addr}/g"), Some(Format::Generic)).unwrap(),
    ]);
    let rt = runtime();
    for (outcome, name) in [
        (Outcome::Started, "started"),
        (Outcome::Succeeded, "succeeded"),
        (Outcome::Failed, "failed"),
        (Outcome::RolledBack, "rolled_back"),
    ] {
        let d = rt.block_on(notifier.send(&event(outcome, "m")));
        assert_eq!(d[0].result, Ok(204));
        assert_eq!(seen.recv_timeout(WAIT).unwrap().body["outcome"], name);
    }
}

#[test]
fn a_down_webhook_is_reported_not_raised() {
    let addr = closed_port();
    let notifier = Notifier::new(vec![Target::parse(&format!("http://{addr}/hook")).unwrap()]);
    let d = runtime().block_on(notifier.send(&event(Outcome::Failed, "boom")));
    assert_eq!(d.len(), 1);
    assert!(!d[0].ok());
    let err = d[0].result.as_ref().unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(d[0].target, format!("http://{addr}/…"));
}

#[test]
fn a_hanging_webhook_is_cut_off_by_the_timeout_and_others_still_get_theirs() {
    let hang = hanging_receiver();
    let (good, seen) = receiver(200);
    let notifier = Notifier::new(vec![
        Target::parse(&format!("http://{hang}/hook")).unwrap(),
        Target::parse(&format!("http://{good}/hook")).unwrap(),
    ])
    // Generous enough that the good receiver answers in time on a loaded machine.
    .with_timeout(Duration::from_secs(2));
    // The outer bound only keeps a broken timeout from hanging the test run.
    let d = runtime().block_on(async {
        tokio::time::timeout(WAIT, notifier.send(&event(Outcome::Started, "go")))
            .await
            .expect("send is bounded")
    });
    assert_eq!(d[0].result, Err("no answer within 2s".into()));
    assert_eq!(d[1].result, Ok(200));
    assert_eq!(seen.recv_timeout(WAIT).unwrap().body["outcome"], "started");
}

#[test]
fn an_error_status_is_reported() {
    let (addr, _seen) = receiver(500);
    let notifier = Notifier::new(vec![Target::parse(&format!("http://{addr}/")).unwrap()]);
    let d = notifier.send_blocking(&event(Outcome::Failed, "x"));
    assert_eq!(d[0].result, Ok(500));
    assert!(!d[0].ok());
}

#[test]
fn payloads_are_redacted() {
    let (addr, seen) = receiver(200);
    let secret = "3f1c9a0e5d7b2468ace13579bdf02468";
    let mut redactor = Redactor::new();
    redactor.add(secret);
    let notifier = Notifier::new(vec![
        Target::parse(&format!("slack=http://{addr}/")).unwrap(),
    ])
    .with_redactor(redactor);
    notifier.send_blocking(&event(
        Outcome::Failed,
        &format!("container exited: DB_PASSWORD={secret}"),
    ));
    let body = seen.recv_timeout(WAIT).unwrap().body.to_string();
    assert!(!body.contains(secret), "{body}");
    assert!(body.contains("DB_PASSWORD=********"), "{body}");
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with the openssl command.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=davit test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn https_webhooks_verify_the_certificate() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = certificates(dir.path());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_file(&leaf).unwrap()],
            PrivateKeyDer::from_pem_file(&key).unwrap(),
        )
        .unwrap();
    let server_config = std::sync::Arc::new(server_config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut tcp: TcpStream = stream.unwrap();
            let mut conn = rustls::ServerConnection::new(server_config.clone()).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            // A client that refuses our certificate aborts the handshake: just wait for the next one.
            let Ok(seen) = try_read_request(&mut tls) else {
                continue;
            };
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tls.flush();
            if tx.send(seen).is_err() {
                return;
            }
        }
    });

    // Without our CA the certificate is refused (the system store does not know it).
    let untrusting = Notifier::new(vec![
        Target::parse(&format!("https://{addr}/hook")).unwrap(),
    ]);
    let d = untrusting.send_blocking(&event(Outcome::Succeeded, "tls"));
    let err = d[0].result.as_ref().unwrap_err();
    assert!(
        err.contains("TLS handshake failed") || err.contains("no trusted root"),
        "{err}"
    );

    let trusting = Notifier::new(vec![
        Target::parse(&format!("discord=https://{addr}/hook")).unwrap(),
    ])
    .with_root_certificates(vec![CertificateDer::from_pem_file(&ca).unwrap()]);
    let d = trusting.send_blocking(&event(Outcome::Succeeded, "tls"));
    assert_eq!(d[0].result, Ok(200), "{d:?}");
    let r = seen.recv_timeout(WAIT).unwrap();
    assert_eq!(r.request_line, "POST /hook HTTP/1.1");
    assert!(r.body["content"].as_str().unwrap().ends_with(": tls"));
}

#[test]
fn credentials_in_the_url_are_sent_as_basic_auth_and_never_shown() {
    let (addr, seen) = receiver(200);
    let notifier = Notifier::new(vec![
        Target::parse(&format!("http://bot:hunter22@{addr}/h")).unwrap(),
    ]);
    let d = notifier.send_blocking(&event(Outcome::Started, "x"));
    assert_eq!(d[0].result, Ok(200));
    assert_eq!(d[0].target, format!("http://{addr}/…"));
    let r = seen.recv_timeout(WAIT).unwrap();
    // base64("bot:hunter22")
    assert_eq!(r.header("authorization"), Some("Basic Ym90Omh1bnRlcjIy"));
    assert_eq!(r.header("host"), Some(addr.to_string().as_str()));
}
