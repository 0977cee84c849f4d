//! Webhook notifications for deploy events.
//!
//! The engine calls [`Notifier::send`] when a deploy starts, succeeds, fails and rolls back. Each target
//! gets one HTTP(S) POST in the shape it expects ([`Format`]): Slack (`{"text": …}`), Discord
//! (`{"content": …}`) or generic JSON (the whole [`Event`] plus a `text` summary).
//!
//! **Architecture Invariant:** a notification never fails the caller. [`Notifier::send`] cannot return an
//! error: each delivery is bounded by a timeout (connect, TLS, request and response head together), runs
//! concurrently with the others, and a failure is a logged warning and a [`Delivery`] in the result.
//!
//! **Architecture Invariant:** a webhook URL is a credential (Slack and Discord put the token in the path),
//! so logs and results show only `scheme://host:port/…`, and payloads pass through the notifier's
//! [`Redactor`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use url::{Position, Url};

use crate::{Error, Redactor};

/// How long one delivery may take, from connect to the response head, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Discord refuses `content` longer than this.
const DISCORD_MAX: usize = 2000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A deploy started.
    Started,
    /// A deploy finished and every host is healthy on the new release.
    Succeeded,
    /// A deploy failed.
    Failed,
    /// Hosts were returned to the previous release (automatically or by `davit rollback`).
    RolledBack,
}

impl Outcome {
    fn phrase(self) -> &'static str {
        match self {
            Outcome::Started => "deploy started",
            Outcome::Succeeded => "deploy succeeded",
            Outcome::Failed => "deploy FAILED",
            Outcome::RolledBack => "rolled back",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Outcome::Started => "🚀",
            Outcome::Succeeded => "✅",
            Outcome::Failed => "❌",
            Outcome::RolledBack => "↩️",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "started" => Ok(Outcome::Started),
            "succeeded" => Ok(Outcome::Succeeded),
            "failed" => Ok(Outcome::Failed),
            "rolled_back" | "rolled-back" => Ok(Outcome::RolledBack),
            other => Err(format!(
                "unknown outcome `{other}`: use started, succeeded, failed or rolled_back"
            )),
        }
    }
}

/// A deploy event, as the generic JSON payload carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub outcome: Outcome,
    /// The compose project name.
    pub project: String,
    /// The environment (`--env`), if any.
    pub environment: Option<String>,
    /// The release id, if one was assigned.
    pub release: Option<String>,
    /// The hosts involved, by URL.
    pub hosts: Vec<String>,
    /// A human sentence: why it failed, what was rolled back.
    pub message: String,
}

impl Event {
    /// One line for chat: `✅ davit: shop (production) release r7 deploy succeeded on 2 hosts (a, b): …`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} davit: {}", self.outcome.icon(), self.project);
        if let Some(env) = &self.environment {
            s.push_str(&format!(" ({env})"));
        }
        if let Some(r) = &self.release {
            s.push_str(&format!(" release {r}"));
        }
        s.push(' ');
        s.push_str(self.outcome.phrase());
        if !self.hosts.is_empty() {
            let n = self.hosts.len();
            let shown: Vec<&str> = self.hosts.iter().take(5).map(String::as_str).collect();
            let more = if n > 5 {
                format!(" and {} more", n - 5)
            } else {
                String::new()
            };
            let noun = if n == 1 { "host" } else { "hosts" };
            s.push_str(&format!(" on {n} {noun} ({}{more})", shown.join(", ")));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

/// The payload shape a webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Slack incoming webhooks (and Mattermost, Rocket.Chat, Google Chat): `{"text": …}`.
    Slack,
    /// Discord webhooks: `{"content": …}`.
    Discord,
    /// The [`Event`] as JSON with a `text` summary, for your own receivers.
    Generic,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slack" => Ok(Format::Slack),
            "discord" => Ok(Format::Discord),
            "generic" | "json" => Ok(Format::Generic),
            other => Err(format!(
                "unknown format `{other}`: use slack, discord or generic"
            )),
        }
    }
}

impl Format {
    /// The format a URL most likely wants: Slack for `hooks.slack.com`, Discord for
    /// `discord.com/api/webhooks/…`, generic otherwise.
    pub fn infer(url: &Url) -> Format {
        let host = url.host_str().unwrap_or("");
        if host == "hooks.slack.com" {
            Format::Slack
        } else if (host.ends_with("discord.com") || host.ends_with("discordapp.com"))
            && url.path().starts_with("/api/webhooks")
        {
            Format::Discord
        } else {
            Format::Generic
        }
    }

    /// The JSON body for `event` in this format.
    pub fn payload(self, event: &Event) -> serde_json::Value {
        match self {
            Format::Slack => serde_json::json!({ "text": event.summary() }),
            Format::Discord => {
                let mut content = event.summary();
                if content.chars().count() > DISCORD_MAX {
                    content = content.chars().take(DISCORD_MAX - 1).collect::<String>() + "…";
                }
                serde_json::json!({ "content": content })
            }
            Format::Generic => {
                let mut v = serde_json::json!({ "event": "deploy" });
                if let (serde_json::Value::Object(m), Ok(serde_json::Value::Object(e))) =
                    (&mut v, serde_json::to_value(event))
                {
                    m.extend(e);
                    m.insert("text".into(), event.summary().into());
                }
                v
            }
        }
    }
}

/// One webhook: where, and in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
    format: Format,
}

impl Target {
    /// A target for `url` (http or https); the format is inferred from the URL when not given.
    pub fn new(url: &str, format: Option<Format>) -> Result<Target, Error> {
        let bad = |reason: String| Error::NotifyConfig {
            what: "webhook URL".into(),
            reason,
        };
        let url = Url::parse(url.trim()).map_err(|e| bad(format!("not a URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad(format!(
                "scheme `{}` is not supported: use http:// or https://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host".into()));
        }
        let format = format.unwrap_or_else(|| Format::infer(&url));
        Ok(Target { url, format })
    }

    /// Parses `[FORMAT=]URL` as given to `--notify` or `DAVIT_NOTIFY_URL`, e.g.
    /// `discord=https://example.com/hook` or `https://hooks.slack.com/services/…`.
    pub fn parse(spec: &str) -> Result<Target, Error> {
        for (prefix, format) in [
            ("slack=", Format::Slack),
            ("discord=", Format::Discord),
            ("generic=", Format::Generic),
            ("json=", Format::Generic),
        ] {
            if let Some(url) = spec.strip_prefix(prefix) {
                return Target::new(url, Some(format));
            }
        }
        Target::new(spec, None)
    }

    /// The payload shape.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The full URL (a credential: do not print it).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host:port/…`: the URL without its path and query, safe to print.
    pub fn display(&self) -> String {
        // From the host on: user and password (if any) stay out, like the path.
        let base = format!(
            "{}://{}",
            self.url.scheme(),
            &self.url[Position::BeforeHost..Position::AfterPort]
        );
        if self.url[Position::BeforePath..].len() > 1 {
            format!("{base}/…")
        } else {
            base
        }
    }
}

/// Reads `notify` from a top-level `x-davit` map: a list whose items are a URL string or
/// `{url: …, format: slack|discord|generic}`. No `notify` key gives no targets.
pub fn targets_from_x_davit(x_davit: &serde_json::Value) -> Result<Vec<Target>, Error> {
    let Some(list) = x_davit.get("notify") else {
        return Ok(Vec::new());
    };
    let bad = |what: String, reason: &str| Error::NotifyConfig {
        what,
        reason: reason.to_owned(),
    };
    let items: Vec<&serde_json::Value> = match list {
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Null => Vec::new(),
        one @ (serde_json::Value::Object(_) | serde_json::Value::String(_)) => vec![one],
        _ => {
            return Err(bad(
                "x-davit.notify".into(),
                "must be a list of {url, format} entries",
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let what = format!("x-davit.notify[{i}]");
        match item {
            serde_json::Value::String(s) => {
                out.push(Target::parse(s).map_err(|e| relabel(e, &what))?)
            }
            serde_json::Value::Object(m) => {
                let url = m
                    .get("url")
                    .and_then(|u| u.as_str())
                    .ok_or_else(|| bad(what.clone(), "needs a `url` string"))?;
                let format = match m.get("format") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(f)) => {
                        Some(f.parse::<Format>().map_err(|reason| Error::NotifyConfig {
                            what: what.clone(),
                            reason,
                        })?)
                    }
                    Some(_) => return Err(bad(what, "`format` must be slack, discord or generic")),
                };
                if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "url" | "format")) {
                    return Err(Error::NotifyConfig {
                        what,
                        reason: format!("unknown key `{k}` (known: url, format)"),
                    });
                }
                out.push(Target::new(url, format).map_err(|e| relabel(e, &what))?);
            }
            _ => return Err(bad(what, "must be a URL or {url, format}")),
        }
    }
    Ok(out)
}

fn relabel(e: Error, what: &str) -> Error {
    match e {
        Error::NotifyConfig { reason, .. } => Error::NotifyConfig {
            what: what.to_owned(),
            reason,
        },
        other => other,
    }
}

/// The result of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The target, as [`Target::display`] shows it.
    pub target: String,
    /// The HTTP status the webhook answered, or why it could not be delivered.
    pub result: Result<u16, String>,
}

impl Delivery {
    /// True for a 2xx answer.
    pub fn ok(&self) -> bool {
        matches!(self.result, Ok(s) if (200..300).contains(&s))
    }
}

/// Posts events to webhooks. Cheap to clone the configuration into; build once per command.
#[derive(Debug, Default)]
pub struct Notifier {
    targets: Vec<Target>,
    timeout: Option<Duration>,
    redactor: Redactor,
    extra_roots: Vec<CertificateDer<'static>>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Notifier {
    /// A notifier for these targets, with the [`DEFAULT_TIMEOUT`].
    pub fn new(targets: Vec<Target>) -> Self {
        Notifier {
            targets,
            ..Default::default()
        }
    }

    /// The targets of a project: `x-davit.notify` from the compose file (if given) plus every
    /// `[FORMAT=]URL` from `--notify` / `DAVIT_NOTIFY_URL`, without duplicates.
    pub fn from_config(
        x_davit: Option<&serde_json::Value>,
        urls: &[String],
    ) -> Result<Self, Error> {
        let mut targets = match x_davit {
            Some(x) => targets_from_x_davit(x)?,
            None => Vec::new(),
        };
        for u in urls.iter().filter(|u| !u.trim().is_empty()) {
            let t = Target::parse(u)?;
            if !targets.iter().any(|e| e.url == t.url) {
                targets.push(t);
            }
        }
        Ok(Notifier::new(targets))
    }

    /// Bounds each delivery (connect to response head) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Masks these secrets in every payload.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Also trusts these CA certificates for HTTPS (beyond the system's store, which is read from
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` or the OS default).
    pub fn with_root_certificates(mut self, certs: Vec<CertificateDer<'static>>) -> Self {
        self.extra_roots = certs;
        self.tls = OnceLock::new();
        self
    }

    /// The configured targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// True when there is nowhere to send.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Sends `event` to every target concurrently and waits for all of them (each bounded by the
    /// timeout). Never fails: failures are logged as warnings and reported in the result.
    pub async fn send(&self, event: &Event) -> Vec<Delivery> {
        let deliveries = self.targets.iter().map(|t| self.send_one(t, event));
        futures_util::future::join_all(deliveries).await
    }

    /// [`Notifier::send`] for callers without a runtime (it builds a small one). Must not be called
    /// from inside a tokio runtime.
    pub fn send_blocking(&self, event: &Event) -> Vec<Delivery> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(self.send(event)),
            Err(e) => self
                .targets
                .iter()
                .map(|t| Delivery {
                    target: t.display(),
                    result: Err(format!("cannot start a runtime: {e}")),
                })
                .collect(),
        }
    }

    async fn send_one(&self, target: &Target, event: &Event) -> Delivery {
        let body = serde_json::to_string(&target.format.payload(event)).unwrap_or_default();
        let body = self.redactor.redact(&body).into_owned();
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let result = match tokio::time::timeout(timeout, self.deliver(target, Bytes::from(body)))
            .await
        {
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(status),
            Ok(Ok(status)) => {
                tracing::warn!(target = %target.display(), status, "webhook answered with an error status; the deploy goes on");
                Ok(status)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        match &result {
            Err(e) => {
                tracing::warn!(target = %target.display(), error = %e, "webhook notification failed; the deploy goes on")
            }
            Ok(status) => tracing::debug!(target = %target.display(), status, "webhook notified"),
        }
        Delivery {
            target: target.display(),
            result,
        }
    }

    async fn deliver(&self, target: &Target, body: Bytes) -> Result<u16, String> {
        let url = &target.url;
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        tcp.set_nodelay(true).ok();
        let path = &url[Position::BeforePath..Position::AfterQuery];
        let request = http::Request::post(if path.is_empty() { "/" } else { path })
            .header(
                http::header::HOST,
                &url[Position::BeforeHost..Position::AfterPort],
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("davit/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::CONTENT_LENGTH, body.len());
        let request = match basic_auth(url) {
            Some(auth) => request.header(http::header::AUTHORIZATION, auth),
            None => request,
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        if url.scheme() == "https" {
            let config = self.tls_config()?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                roots.add_parsable_certificates(self.extra_roots.iter().cloned());
                if roots.is_empty() {
                    return Err("no trusted root certificates (install ca-certificates or set SSL_CERT_FILE)".into());
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup failed: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(config))
            })
            .clone()
    }
}

/// `Basic …` for a URL with a user (`https://user:password@host/hook`), as browsers and curl send it.
fn basic_auth(url: &Url) -> Option<String> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let user = decode(url.username()).unwrap_or_default();
    let password = url.password().and_then(decode).unwrap_or_default();
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    ))
}

/// One HTTP/1.1 request on `io`; the status of the answer. The connection is driven only until the
/// response head arrives, then dropped.
async fn exchange<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let send = sender.send_request(request);
    tokio::pin!(conn);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response,
        closed = &mut conn => {
            closed.map_err(|e| format!("connection failed: {e}"))?;
            // The connection ended cleanly: the answer (if any) is already in the sender.
            send.await
        }
    };
    response
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("request failed: {e}"))
}

#[cfg(test)]
mod tests;
