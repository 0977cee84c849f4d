//! One HTTP(S) probe over any dialed stream: hyper's HTTP/1 client connection, rustls for TLS.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::Error;
use crate::dial::{AsyncReadWrite, Dial};
use crate::machine::Outcome;
use crate::probe::HttpProbe;

/// How much of a body is read to look for `expect_body`.
const BODY_LIMIT: usize = 1 << 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!("loading a system root certificate: {e}");
        }
        loaded.certs
    })
}

/// The TLS client configuration for `probe`: system roots plus its extra roots, or no
/// verification at all when it is `insecure`.
pub(crate) fn tls_config(probe: &HttpProbe) -> Result<Arc<ClientConfig>, Error> {
    let tls_err = |source| Error::Tls {
        target: probe.url.to_string(),
        source,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let mut config = if probe.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        for der in &probe.extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(tls_err)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate (`--insecure`), but still checks the handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs one request. Every way it can go wrong is a [`Outcome::Failure`] naming the step.
pub(crate) async fn check(
    dialer: &dyn Dial,
    probe: &HttpProbe,
    tls: Option<&Arc<ClientConfig>>,
) -> Outcome {
    let host = probe.host();
    let port = probe.port();
    let stream = match dialer.dial(&host, port).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(format!("connect to {host}:{port}: {e}")),
    };
    let stream: Box<dyn AsyncReadWrite> = match tls {
        Some(config) => {
            let name = match ServerName::try_from(host.clone()) {
                Ok(n) => n,
                Err(e) => {
                    return Outcome::Failure(format!(
                        "tls: {host:?} is not a valid server name: {e}"
                    ));
                }
            };
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            match connector.connect(name, stream).await {
                Ok(s) => Box::new(s),
                Err(e) => {
                    return Outcome::Failure(format!(
                        "tls handshake with {host}:{port}: {}",
                        tls_message(&e)
                    ));
                }
            }
        }
        None => stream,
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return Outcome::Failure(format!("http handshake: {e}")),
    };
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let outcome = request(&mut sender, probe).await;
    driver.abort();
    outcome
}

fn tls_message(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    probe: &HttpProbe,
) -> Outcome {
    let path = match probe.url.query() {
        Some(q) => format!("{}?{q}", probe.url.path()),
        None => probe.url.path().to_string(),
    };
    let authority = match probe.url.port() {
        Some(p) => format!("{}:{p}", probe.url.host_str().unwrap_or_default()),
        None => probe.url.host_str().unwrap_or_default().to_string(),
    };
    let mut req = hyper::Request::get(path).header(http::header::USER_AGENT, "davit-probe");
    if !probe
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        req = req.header(http::header::HOST, authority);
    }
    for (k, v) in &probe.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(http_body_util::Empty::new()) {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("building the request: {e}")),
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("http request: {e}")),
    };
    let status = resp.status();
    let code = status.as_u16();
    let status_text = format!("{code} {}", status.canonical_reason().unwrap_or(""));
    let status_text = status_text.trim_end().to_string();
    if !probe.expect_status.contains(code) {
        return Outcome::Failure(format!(
            "status {status_text}, expected {}",
            probe.expect_status
        ));
    }
    let Some(expected) = &probe.expect_body else {
        return Outcome::Success(status_text);
    };
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    while seen.len() < BODY_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Outcome::Failure(format!("reading the body: {e}")),
            None => break,
        }
    }
    if String::from_utf8_lossy(&seen).contains(expected.as_str()) {
        Outcome::Success(format!("{status_text}, body contains {expected:?}"))
    } else {
        Outcome::Failure(format!(
            "{status_text}, but the body does not contain {expected:?}"
        ))
    }
}
