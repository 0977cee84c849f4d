//! TLS termination. Certificates come through a rustls [`ResolvesServerCert`], the seam for ACME later:
//! today [`FileCertResolver`] serves one chain loaded from PEM files; an ACME resolver would implement
//! the same trait (answering `tls-alpn-01` challenges and swapping renewed keys) without touching the
//! listener code.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

pub use rustls::server::ResolvesServerCert as CertResolver;

/// One certificate chain and key from PEM files, served for every server name.
#[derive(Debug)]
pub struct FileCertResolver {
    key: Arc<CertifiedKey>,
}

impl FileCertResolver {
    /// Loads a PEM chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| format!("cannot read certificates from {}: {e}", cert_file.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate in {}: {e}", cert_file.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", cert_file.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("cannot read a private key from {}: {e}", key_file.display()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("unsupported private key in {}: {e}", key_file.display()))?;
        Ok(Self {
            key: Arc::new(CertifiedKey::new(certs, signing)),
        })
    }
}

impl ResolvesServerCert for FileCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.clone())
    }
}

/// A TLS acceptor offering HTTP/2 and HTTP/1.1 by ALPN, with certificates from `resolver`.
pub fn acceptor(resolver: Arc<dyn ResolvesServerCert>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
