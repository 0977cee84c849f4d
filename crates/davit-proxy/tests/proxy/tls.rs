//! TLS termination with certificates from files (made here with the openssl CLI).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use davit_proxy::api::{TargetSpec, TargetState, TlsSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Demo, TestProxy, free_addr, route};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a `localhost` leaf signed by it.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=davit test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
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
            "ext",
        ],
    );
}

fn connector(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_from_certificate_files_with_http2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let v1 = Demo::start("v1").await;
    let p = TestProxy::start().await;
    let listen = free_addr();
    let mut spec = route(listen, vec![TargetSpec::new("v1", v1.addr)]);
    spec.tls = Some(TlsSpec {
        cert_file: dir.path().join("leaf.pem"),
        key_file: dir.path().join("leaf.key"),
    });
    p.admin.put_route("web", &spec).await.unwrap();
    p.wait_state("web", "v1", TargetState::Active).await;

    let name = ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
    let mut tls = connector(&dir.path().join("ca.pem"), &[b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\ndavit-demo v1\n"), "{out}");

    let tcp = tokio::net::TcpStream::connect(listen).await.unwrap();
    let tls = connector(&dir.path().join("ca.pem"), &[b"h2", b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"davit-demo v1\n");

    // X-Forwarded-Proto says https to an upstream behind a TLS route.
    let echo = crate::traffic::echo_server().await;
    let echo_listen = free_addr();
    let mut echo_spec = route(echo_listen, vec![TargetSpec::new("echo", echo)]);
    echo_spec.tls = spec.tls.clone();
    p.admin.put_route("echo", &echo_spec).await.unwrap();
    p.wait_state("echo", "echo", TargetState::Active).await;
    let tcp = tokio::net::TcpStream::connect(echo_listen).await.unwrap();
    let mut tls = connector(&dir.path().join("ca.pem"), &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("\r\n\r\nGET /x HTTP/1.1\n"), "{out}");
    assert!(out.contains("\nx-forwarded-proto: https"), "{out}");
    assert!(out.contains("\nx-forwarded-host: localhost"), "{out}");

    // A key file that is not there is refused with the route named.
    spec.tls = Some(TlsSpec {
        cert_file: dir.path().join("leaf.pem"),
        key_file: dir.path().join("missing.key"),
    });
    let err = p
        .admin
        .put_route("web", &spec)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("the proxy refused PUT /routes/web: 422 TLS for route \"web\": cannot read a private key from"), "{err}");
}
