//! The registry client: one registry, its credentials and scheme. Built on `oci-client` for the
//! distribution API it covers (blobs, mounts, manifests, tags) and on plain requests for what it does not
//! (the access check before any work, and manifest deletion, whose token needs the `delete` scope).

use std::sync::Arc;

use bytes::Bytes;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::Error;
use crate::auth::{Credentials, Settings};

/// Manifest media types this client asks for and understands.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A client for one registry (`host[:port]`). Cheap to clone; clones share connections and tokens.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    scheme: &'static str,
    credentials: Credentials,
    oci: oci_client::Client,
    http: reqwest::Client,
    /// Bearer tokens we fetched ourselves, by scope.
    tokens: Mutex<Vec<(String, String)>>,
    concurrency: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.inner.host)
            .field("scheme", &self.inner.scheme)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

/// A parsed `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference as Docker does (`app` is `docker.io/library/app:latest`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let r: Reference = s.parse().map_err(|e: oci_client::ParseError| {
            Error::invalid("image reference", s, e.to_string())
        })?;
        Ok(ImageRef {
            registry: r.resolve_registry().to_string(),
            repository: r.repository().to_string(),
            tag: r.tag().map(String::from),
            digest: r.digest().map(String::from),
        })
    }

    /// The tag or digest part (`latest` when neither was given).
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks a tag against the distribution spec's grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), Error> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "tag",
            tag,
            "a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'",
        ))
    }
}

/// Checks a repository name: lowercase path components of `[a-z0-9]` separated by `.`, `_`, `__`, `-`.
pub fn validate_repository(repo: &str) -> Result<(), Error> {
    let comp_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .next()
                .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
            && c.chars()
                .last()
                .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
            && c.chars().all(|x| {
                x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, '.' | '_' | '-')
            })
    };
    if !repo.is_empty() && repo.split('/').all(comp_ok) {
        Ok(())
    } else {
        Err(Error::invalid(
            "repository",
            repo,
            "a repository is lowercase letters and digits, with '.', '_', '-' inside and '/' between parts",
        ))
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Registry {
    /// A client for `host` (`host[:port]`), with credentials found per `settings`.
    pub fn new(host: &str, settings: &Settings) -> Result<Self, Error> {
        let credentials = settings.credentials_for(host)?;
        Self::with_credentials(host, settings, credentials)
    }

    /// A client for `host` with the given credentials.
    pub fn with_credentials(
        host: &str,
        settings: &Settings,
        credentials: Credentials,
    ) -> Result<Self, Error> {
        let insecure = settings.is_insecure(host);
        let scheme = if insecure { "http" } else { "https" };
        let concurrency = settings.concurrency.max(1);
        let config = ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            // As Docker does for insecure registries: no certificate checks (and no loading of the
            // system's roots, which costs more than a whole unchanged re-push).
            accept_invalid_certificates: insecure,
            max_concurrent_upload: concurrency,
            max_concurrent_download: concurrency,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(300)),
            user_agent: concat!("davit/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("davit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Registry {
                registry: host.into(),
                action: "setting up HTTP".into(),
                source: Box::new(e),
            })?;
        Ok(Registry {
            inner: Arc::new(Inner {
                host: host.to_string(),
                scheme,
                credentials,
                oci: oci_client::Client::new(config),
                http,
                tokens: Mutex::new(Vec::new()),
                concurrency,
            }),
        })
    }

    /// `host[:port]` of this registry.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Blobs sent at a time.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    pub(crate) fn oci(&self) -> &oci_client::Client {
        &self.inner.oci
    }

    pub(crate) fn oci_auth(&self) -> oci_client::secrets::RegistryAuth {
        self.inner.credentials.to_oci()
    }

    pub(crate) fn reference(&self, repository: &str, reference: &str) -> Reference {
        if reference.contains(':') {
            Reference::with_digest(self.inner.host.clone(), repository.into(), reference.into())
        } else {
            Reference::with_tag(self.inner.host.clone(), repository.into(), reference.into())
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.inner.scheme, self.inner.host, path)
    }

    /// Maps an oci-client error to ours, naming the action.
    pub(crate) fn map_oci(&self, action: &str, e: OciDistributionError) -> Error {
        let registry = self.inner.host.clone();
        match e {
            OciDistributionError::RequestError(re) if re.is_connect() || re.is_timeout() => {
                Error::Unreachable {
                    registry,
                    url: self.url("/v2/"),
                    source: Box::new(re),
                }
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(401),
            OciDistributionError::ImageManifestNotFoundError(what) => {
                Error::NotFound { registry, what }
            }
            OciDistributionError::ServerError { code: 401, .. } => self.unauthorized(401),
            OciDistributionError::ServerError { code: 403, .. } => self.unauthorized(403),
            other => Error::Registry {
                registry,
                action: action.into(),
                source: Box::new(other),
            },
        }
    }

    fn unauthorized(&self, status: u16) -> Error {
        Error::Unauthorized {
            registry: self.inner.host.clone(),
            who: self.inner.credentials.who(),
            status,
            hint: "check DAVIT_REGISTRY_USER / DAVIT_REGISTRY_PASSWORD, or log in (~/.docker/config.json)",
        }
    }

    fn request_error(&self, url: &str, action: &str, e: reqwest::Error) -> Error {
        if e.is_connect() || e.is_timeout() || e.is_request() {
            Error::Unreachable {
                registry: self.inner.host.clone(),
                url: url.into(),
                source: Box::new(e),
            }
        } else {
            Error::Registry {
                registry: self.inner.host.clone(),
                action: action.into(),
                source: Box::new(e),
            }
        }
    }

    /// Sends one request, answering the registry's challenge (basic, or a bearer token for `scope`).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        scope: Option<&str>,
        accept: &[&str],
    ) -> Result<reqwest::Response, Error> {
        let url = self.url(path);
        let build = |auth: Option<&Authz>| {
            let mut req = self.inner.http.request(method.clone(), &url);
            for a in accept {
                req = req.header(reqwest::header::ACCEPT, *a);
            }
            match auth {
                Some(Authz::Basic(u, p)) => req.basic_auth(u, Some(p)),
                Some(Authz::Bearer(t)) => req.bearer_auth(t),
                None => req,
            }
        };
        let cached = match scope {
            Some(s) => self
                .inner
                .tokens
                .lock()
                .await
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, t)| t.clone()),
            None => None,
        };
        let first = match (&cached, &self.inner.credentials) {
            (Some(t), _) => Some(Authz::Bearer(t.clone())),
            (None, Credentials::Bearer(t)) => Some(Authz::Bearer(t.clone())),
            _ => None,
        };
        let action = format!("{method} {path}");
        let res = build(first.as_ref())
            .send()
            .await
            .map_err(|e| self.request_error(&url, &action, e))?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let authz = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let token = self.fetch_token(&challenge, scope).await?;
            if let Some(s) = scope {
                self.inner
                    .tokens
                    .lock()
                    .await
                    .push((s.to_string(), token.clone()));
            }
            Authz::Bearer(token)
        } else {
            match &self.inner.credentials {
                Credentials::Basic { user, password } => {
                    Authz::Basic(user.clone(), password.clone())
                }
                _ => return Err(self.unauthorized(401)),
            }
        };
        let res = build(Some(&authz))
            .send()
            .await
            .map_err(|e| self.request_error(&url, &action, e))?;
        if res.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(401));
        }
        Ok(res)
    }

    /// The token flow: `GET realm?service=..&scope=..` with basic credentials when we have some.
    async fn fetch_token(&self, challenge: &str, scope: Option<&str>) -> Result<String, Error> {
        let params = parse_challenge(challenge);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let Some(realm) = get("realm") else {
            return Err(self.unauthorized(401));
        };
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = get("service") {
            query.push(("service", s));
        }
        if let Some(s) = scope {
            query.push(("scope", s.to_string()));
        }
        let mut req = self.inner.http.get(&realm).query(&query);
        if let Credentials::Basic { user, password } = &self.inner.credentials {
            req = req.basic_auth(user, Some(password));
        }
        let res = req
            .send()
            .await
            .map_err(|e| self.request_error(&realm, "token request", e))?;
        if matches!(
            res.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.unauthorized(res.status().as_u16()));
        }
        if !res.status().is_success() {
            return Err(Error::Status {
                registry: self.inner.host.clone(),
                action: "token request".into(),
                status: res.status().as_u16(),
                body: String::new(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = res
            .json()
            .await
            .map_err(|e| self.request_error(&realm, "token request", e))?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| self.unauthorized(401))
    }

    /// Checks that the registry answers and accepts our credentials for `repository` (`push` asks for
    /// write access too). Called before any work, so a bad address or password touches nothing.
    pub async fn check(&self, repository: &str, push: bool) -> Result<(), Error> {
        let scope = format!(
            "repository:{repository}:{}",
            if push { "pull,push" } else { "pull" }
        );
        let res = self
            .send(reqwest::Method::GET, "/v2/", Some(&scope), &[])
            .await?;
        match res.status() {
            s if s.is_success() => Ok(()),
            StatusCode::FORBIDDEN => Err(self.unauthorized(403)),
            s => Err(Error::Status {
                registry: self.inner.host.clone(),
                action: "GET /v2/".into(),
                status: s.as_u16(),
                body: short_body(res).await,
            }),
        }
    }

    /// The digest `reference` (`registry/repo:tag`, or already `@sha256:...`) points at, so deploys can
    /// pin it. A client is made for the reference's registry with `settings`.
    pub async fn resolve(reference: &str, settings: &Settings) -> Result<String, Error> {
        let r = ImageRef::parse(reference)?;
        let reg = Registry::new(&r.registry, settings)?;
        reg.resolve_digest(&r.repository, r.reference()).await
    }

    /// The digest of the manifest `repository:reference` (a tag, or a digest that is checked to exist).
    pub async fn resolve_digest(&self, repository: &str, reference: &str) -> Result<String, Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let scope = format!("repository:{repository}:pull");
        let res = self
            .send(reqwest::Method::HEAD, &path, Some(&scope), &MANIFEST_TYPES)
            .await?;
        match res.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::NotFound {
                    registry: self.inner.host.clone(),
                    what: format!("manifest {repository}:{reference}"),
                });
            }
            StatusCode::FORBIDDEN => return Err(self.unauthorized(403)),
            s => {
                return Err(Error::Status {
                    registry: self.inner.host.clone(),
                    action: format!("HEAD {path}"),
                    status: s.as_u16(),
                    body: String::new(),
                });
            }
        }
        if let Some(d) = res
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
        {
            return Ok(d.to_string());
        }
        // No digest header: hash the manifest itself.
        let (bytes, _) = self.manifest(repository, reference).await?;
        Ok(sha256_hex(&bytes))
    }

    /// The raw manifest `repository:reference` (tag or digest) and its media type. A digest reference
    /// is verified against the bytes.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Bytes, String), Error> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let scope = format!("repository:{repository}:pull");
        let res = self
            .send(reqwest::Method::GET, &path, Some(&scope), &MANIFEST_TYPES)
            .await?;
        let status = res.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                registry: self.inner.host.clone(),
                what: format!("manifest {repository}:{reference}"),
            });
        }
        if !status.is_success() {
            return Err(Error::Status {
                registry: self.inner.host.clone(),
                action: format!("GET {path}"),
                status: status.as_u16(),
                body: short_body(res).await,
            });
        }
        let media = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.request_error(&path, "reading a manifest", e))?;
        if reference.starts_with("sha256:") && sha256_hex(&bytes) != reference {
            return Err(Error::Status {
                registry: self.inner.host.clone(),
                action: format!("GET {path}"),
                status: status.as_u16(),
                body: "the manifest does not match its digest".into(),
            });
        }
        Ok((bytes, media))
    }

    /// A blob's bytes (small ones: image configs).
    pub async fn blob(&self, repository: &str, digest: &str) -> Result<Bytes, Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scope = format!("repository:{repository}:pull");
        let res = self
            .send(reqwest::Method::GET, &path, Some(&scope), &[])
            .await?;
        if !res.status().is_success() {
            return Err(Error::Status {
                registry: self.inner.host.clone(),
                action: format!("GET {path}"),
                status: res.status().as_u16(),
                body: short_body(res).await,
            });
        }
        res.bytes()
            .await
            .map_err(|e| self.request_error(&path, "reading a blob", e))
    }

    /// The size of blob `digest` in `repository`, or `None` when the repository lacks it.
    pub async fn blob_size(&self, repository: &str, digest: &str) -> Result<Option<u64>, Error> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scope = format!("repository:{repository}:pull");
        let res = self
            .send(reqwest::Method::HEAD, &path, Some(&scope), &[])
            .await?;
        match res.status() {
            s if s.is_success() => Ok(res
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|h| h.to_str().ok())
                .and_then(|s| s.parse().ok())),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Error::Status {
                registry: self.inner.host.clone(),
                action: format!("HEAD {path}"),
                status: s.as_u16(),
                body: String::new(),
            }),
        }
    }

    /// Every tag of `repository`, page by page (`n`/`last`), in the registry's order.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        const PAGE: usize = 200;
        let r = self.reference(repository, "latest");
        let auth = self.oci_auth();
        let mut all: Vec<String> = Vec::new();
        loop {
            let last = all.last().cloned();
            let page = match self
                .inner
                .oci
                .list_tags(&r, &auth, Some(PAGE), last.as_deref())
                .await
            {
                Ok(p) => p,
                Err(OciDistributionError::RegistryError { envelope, .. })
                    if envelope
                        .errors
                        .iter()
                        .any(|e| format!("{:?}", e.code).contains("NameUnknown")) =>
                {
                    return Err(Error::NotFound {
                        registry: self.inner.host.clone(),
                        what: format!("repository {repository}"),
                    });
                }
                Err(e) => return Err(self.map_oci(&format!("listing the tags of {repository}"), e)),
            };
            let n = page.tags.len();
            // Some registries ignore `last` and answer the first page again: stop on a repeat.
            let fresh: Vec<String> = page.tags.into_iter().filter(|t| !all.contains(t)).collect();
            let stop = n < PAGE || fresh.is_empty();
            all.extend(fresh);
            if stop {
                return Ok(all);
            }
        }
    }

    /// Deletes the manifest `digest` from `repository` (every tag pointing at it goes with it).
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<(), Error> {
        if !digest.starts_with("sha256:") {
            return Err(Error::invalid(
                "digest",
                digest,
                "manifests are deleted by digest (sha256:...)",
            ));
        }
        let path = format!("/v2/{repository}/manifests/{digest}");
        let scope = format!("repository:{repository}:delete");
        let res = self
            .send(reqwest::Method::DELETE, &path, Some(&scope), &[])
            .await?;
        match res.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                registry: self.inner.host.clone(),
                what: format!("manifest {repository}@{digest}"),
            }),
            StatusCode::FORBIDDEN => Err(self.unauthorized(403)),
            s => Err(Error::Status {
                registry: self.inner.host.clone(),
                action: format!("DELETE {path}"),
                status: s.as_u16(),
                body: short_body(res).await,
            }),
        }
    }
}

/// The digest `reference` points at, with settings from the environment ([`Settings::from_env`]).
/// This is what the engine calls to pin images before a deploy.
pub async fn resolve_digest(reference: &str) -> Result<String, Error> {
    Registry::resolve(reference, &Settings::from_env()).await
}

enum Authz {
    Basic(String, String),
    Bearer(String),
}

async fn short_body(res: reqwest::Response) -> String {
    let text = res.text().await.unwrap_or_default();
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// `Bearer realm="x",service="y",scope="z"` -> [(realm, x), (service, y), (scope, z)].
pub(crate) fn parse_challenge(h: &str) -> Vec<(String, String)> {
    let rest = h.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (v[..end].to_string(), &v[end..]),
                None => (v.to_string(), ""),
            }
        };
        out.push((k, val));
        s = next.trim_start_matches(',').trim();
    }
    out
}
