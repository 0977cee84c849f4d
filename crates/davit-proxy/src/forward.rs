//! The request path: choose a target, forward with `X-Forwarded-*`, retry what never reached an
//! upstream, count it in flight until its response body ends, pass upgrades through.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Limited;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::api::STICKY_COOKIE;
use crate::drain::Drain;
use crate::pool::Sender;
use crate::route::{Route, Snapshot, Target};
use crate::upstream::{BoxError, ExchangeError, Start, UpBody};

/// Attempts per request when connecting fails (the request never reached an upstream).
const MAX_ATTEMPTS: usize = 3;
/// Longest wait for a first healthy target (e.g. right after the proxy restarted).
const MAX_AWAIT: Duration = Duration::from_secs(10);

/// One client connection: what every request on it shares. Requests hold it by `Arc`, whose count
/// only this connection's thread touches.
pub(crate) struct ClientConn {
    pub(crate) route: Arc<Route>,
    /// The client's address as an `X-Forwarded-For` entry, rendered once per connection.
    ip: HeaderValue,
    tls: bool,
    drain: Arc<Drain>,
    /// Requests started on this connection, and those whose response is not done (see [`Busy`]):
    /// what tells an idle connection.
    started: AtomicU64,
    busy: AtomicU64,
}

impl ClientConn {
    pub(crate) fn new(route: Arc<Route>, peer: SocketAddr, tls: bool, drain: Arc<Drain>) -> Self {
        let ip = HeaderValue::from_str(&peer.ip().to_canonical().to_string())
            .expect("an IP is a valid header value");
        Self {
            route,
            ip,
            tls,
            drain,
            started: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }
    }

    /// Requests started so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Relaxed)
    }

    /// No request in progress (its response not yet sent whole).
    pub(crate) fn idle(&self) -> bool {
        self.busy.load(Relaxed) == 0
    }
}

/// A request in progress on its client connection, from its arrival until its response body is
/// done (or the request is dropped).
pub(crate) struct Busy(Arc<ClientConn>);

impl Busy {
    fn new(conn: Arc<ClientConn>) -> Self {
        conn.started.fetch_add(1, Relaxed);
        conn.busy.fetch_add(1, Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// A request's accounting: in flight from dispatch until its response body ends (or the upgraded
/// connection closes). It holds the snapshot the target was picked from (the calling thread's copy)
/// rather than another count on the shared target.
struct Guard {
    snap: Arc<Snapshot>,
    index: usize,
    shard: usize,
    start: Instant,
    sender: Option<Sender>,
}

impl Guard {
    fn new(snap: &Arc<Snapshot>, index: usize, start: Instant) -> Self {
        let shard = snap.picks[index].0.stats.enter();
        Self {
            snap: snap.clone(),
            index,
            shard,
            start,
            sender: None,
        }
    }

    fn target(&self) -> &Target {
        &self.snap.picks[self.index].0
    }

    fn finish(mut self, reusable: bool) {
        if let Some(sender) = self.sender.take()
            && reusable
        {
            self.target().pool.checkin(sender);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.target().stats.leave(self.shard, self.start.elapsed());
    }
}

/// The response body: the upstream's, or one made here.
pub(crate) struct ProxyBody {
    inner: Inner,
    guard: Option<Guard>,
    busy: Option<Busy>,
}

enum Inner {
    /// From hyper's client (requests with a body, upgrades).
    Upstream(Incoming),
    /// Read from a plain upstream connection by this body's poller.
    Plain(UpBody),
    Local(Option<Bytes>),
}

impl ProxyBody {
    fn local(bytes: impl Into<Bytes>) -> Self {
        Self {
            inner: Inner::Local(Some(bytes.into())),
            guard: None,
            busy: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match &mut this.inner {
            Inner::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Plain(body) => {
                let polled = body.poll_frame(cx);
                // Read whole (or failed): the connection goes back to the pool at once.
                if body.is_end_stream()
                    && let Some(g) = this.guard.take()
                {
                    if let Some(conn) = body.take_reusable() {
                        g.target().pool.checkin_plain(conn);
                    }
                    g.finish(false);
                }
                polled
            }
            Inner::Upstream(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(g) = this.guard.take() {
                            g.finish(true);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(g) = this.guard.take() {
                            g.finish(false);
                        }
                    }
                    _ => {}
                }
                polled.map(|f| f.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local(b) => b.is_none(),
            Inner::Plain(b) => b.is_end_stream(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            Inner::Plain(b) => b.size_hint(),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            let done = matches!(&self.inner, Inner::Upstream(b) if b.is_end_stream());
            g.finish(done);
        }
    }
}

fn local(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::local(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("static content type"),
    );
    r
}

fn error(status: StatusCode, text: &str) -> Response<ProxyBody> {
    local(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v.trim_matches('"'))
        })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Serves one client request of `conn`; once the proxy is stopping, HTTP/1 answers close their
/// connection (the client reconnects, to the proxy that takes over).
pub(crate) async fn handle(
    conn: Arc<ClientConn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let http1 = req.version() < Version::HTTP_2;
    let busy = Busy::new(conn);
    let conn = &busy.0;
    let mut resp = forward(conn, req).await;
    if http1 && conn.drain.closing() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.body_mut().busy = Some(busy);
    Ok(resp)
}

async fn forward(conn: &ClientConn, req: Request<Incoming>) -> Response<ProxyBody> {
    let route = &conn.route;
    let start = Instant::now();
    let mut snap = route.snapshot();
    if let Some(page) = &snap.maintenance {
        let mut r = local(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/html; charset=utf-8",
            page.clone(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return r;
    }
    let max_body_bytes = snap.spec.max_body_bytes;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > max_body_bytes
    {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let request_timeout = Duration::from_millis(snap.spec.timeouts.request_ms.max(1));
    let connect_timeout = Duration::from_millis(snap.spec.timeouts.connect_ms.max(1));
    if snap.picks.is_empty() && snap.awaiting {
        let deadline = tokio::time::Instant::now() + request_timeout.min(MAX_AWAIT);
        while snap.picks.is_empty() && snap.awaiting {
            let notified = route.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            snap = route.snapshot();
            if !snap.picks.is_empty() || !snap.awaiting {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
            snap = route.snapshot();
        }
    }

    let (parts, body) = req.into_parts();
    let cookie = if snap.picks.len() > 1 {
        cookie_value(&parts.headers, STICKY_COOKIE).map(str::to_owned)
    } else {
        None
    };
    let wants_upgrade =
        parts.version == Version::HTTP_11 && parts.headers.contains_key(header::UPGRADE);
    if !wants_upgrade && parts.method != Method::CONNECT && body.is_end_stream() {
        drop(body);
        let timeouts = (request_timeout, connect_timeout);
        return forward_plain(conn, &snap, &parts, cookie.as_deref(), start, timeouts).await;
    }
    // Bodies and upgrades: hyper's client, in a future of its own (boxed, so that the common path's
    // future stays small: hyper moves it around whole).
    let timeouts = (request_timeout, connect_timeout);
    let general = (parts, body, cookie, wants_upgrade, max_body_bytes);
    Box::pin(forward_general(conn, snap, general, start, timeouts)).await
}

/// A request with a body or an upgrade, through hyper's client.
async fn forward_general(
    conn: &ClientConn,
    snap: Arc<Snapshot>,
    (mut parts, body, cookie, wants_upgrade, max_body_bytes): (
        http::request::Parts,
        Incoming,
        Option<String>,
        bool,
        u64,
    ),
    start: Instant,
    (request_timeout, connect_timeout): (Duration, Duration),
) -> Response<ProxyBody> {
    let (route, client) = (&conn.route, conn);
    let upgrade_value = wants_upgrade
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    let client_upgrade = wants_upgrade
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();

    // The upstream request: origin-form, HTTP/1.1, hop-by-hop headers gone, X-Forwarded-* added.
    // HTTP/2 carries the host in the URI's authority.
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers);
    if let Some(h) = host {
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, h.clone());
        }
        if !parts.headers.contains_key(X_FORWARDED_HOST) {
            parts.headers.insert(X_FORWARDED_HOST, h);
        }
    }
    let xff = match parts
        .headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => HeaderValue::from_str(&format!(
            "{prev}, {}",
            client.ip.to_str().unwrap_or_default()
        ))
        .ok(),
        None => Some(client.ip.clone()),
    };
    if let Some(v) = xff {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    parts.headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    if let Some(u) = upgrade_value {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, u);
    }
    parts.version = Version::HTTP_11;
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // Absolute form (HTTP/2, or a proxy-style request): upstream wants the origin form.
        let mut origin = http::uri::Parts::default();
        origin.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        parts.uri = http::Uri::from_parts(origin).unwrap_or_else(|_| http::Uri::from_static("/"));
    }
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let mut req = Request::from_parts(parts, Limited::new(body, limit));

    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = String::from("no target");
    for _ in 0..MAX_ATTEMPTS {
        let Some((index, set_cookie)) = Route::pick(&snap, cookie.as_deref(), &tried) else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        };
        let mut guard = Guard::new(&snap, index, start);
        let target = &snap.picks[index].0;
        let mut sender = match target.pool.checkout(target.addr, connect_timeout).await {
            Ok((s, _reused)) => s,
            Err(e) => {
                target.stats.add_connect_error();
                tracing::debug!(route = %route.name, target = %target.id, error = %e.0, "connect failed, retrying");
                last_error = e.0;
                drop(guard);
                tried.push(index);
                continue;
            }
        };
        target.stats.add_request();
        let sent = tokio::time::timeout(request_timeout, sender.try_send_request(req)).await;
        let resp = match sent {
            Err(_) => {
                target.stats.add_5xx();
                return error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out");
            }
            Ok(Ok(resp)) => resp,
            Ok(Err(mut e)) => match e.take_message() {
                // The connection closed before the request went out: nothing reached the upstream.
                Some(back) => {
                    target.stats.undo_request();
                    req = back;
                    last_error = e.into_error().to_string();
                    drop(guard);
                    continue;
                }
                None => {
                    target.stats.add_5xx();
                    let e = e.into_error();
                    let too_large = std::error::Error::source(&e)
                        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                    if too_large {
                        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                    }
                    tracing::debug!(route = %route.name, target = %target.id, error = %e, "upstream failed");
                    return error(StatusCode::BAD_GATEWAY, "upstream failed");
                }
            },
        };
        if resp.status().is_server_error() {
            target.stats.add_5xx();
        }
        let mut resp = resp;
        let upstream_upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS)
            .then(|| hyper::upgrade::on(&mut resp));
        let (mut rparts, rbody) = resp.into_parts();
        let mut out_headers = std::mem::take(&mut rparts.headers);
        if let Some(upstream_upgrade) = upstream_upgrade {
            let Some(client_upgrade) = client_upgrade else {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "upstream switched protocols unasked",
                );
            };
            drop(sender);
            tokio::spawn(async move {
                let guard = guard;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(c),
                            &mut TokioIo::new(u),
                        )
                        .await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
                drop(guard);
            });
            let mut r = Response::new(ProxyBody::local(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *r.headers_mut() = out_headers;
            return r;
        }
        strip_hop_by_hop(&mut out_headers);
        if set_cookie && let Some(v) = sticky_cookie(target) {
            out_headers.append(header::SET_COOKIE, v);
        }
        guard.sender = Some(sender);
        let mut r = Response::new(ProxyBody {
            inner: Inner::Upstream(rbody),
            guard: Some(guard),
            busy: None,
        });
        *r.status_mut() = rparts.status;
        *r.headers_mut() = out_headers;
        return r;
    }
    tracing::warn!(route = %route.name, error = %last_error, "no upstream reachable");
    error(StatusCode::BAD_GATEWAY, "no upstream reachable")
}

/// The `Set-Cookie` that pins a client to `target` (sticky sessions).
fn sticky_cookie(target: &Target) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{STICKY_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        target.id
    ))
    .ok()
}

/// A request without a body or upgrade, over a plain pooled connection driven by this task (see
/// [`crate::upstream`]). Retried elsewhere only when connecting failed or not one byte of it was
/// written.
async fn forward_plain(
    conn: &ClientConn,
    snap: &Arc<Snapshot>,
    parts: &http::request::Parts,
    cookie: Option<&str>,
    start: Instant,
    (request_timeout, connect_timeout): (Duration, Duration),
) -> Response<ProxyBody> {
    let route = &conn.route;
    let head_request = parts.method == Method::HEAD;
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = String::from("no target");
    for _ in 0..MAX_ATTEMPTS {
        let Some((index, set_cookie)) = Route::pick(snap, cookie, &tried) else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        };
        let guard = Guard::new(snap, index, start);
        let target = &snap.picks[index].0;
        let mut up = match target
            .pool
            .checkout_plain(target.addr, connect_timeout)
            .await
        {
            Ok(up) => up,
            Err(e) => {
                target.stats.add_connect_error();
                tracing::debug!(route = %route.name, target = %target.id, error = %e.0, "connect failed, retrying");
                last_error = e.0;
                drop(guard);
                tried.push(index);
                continue;
            }
        };
        target.stats.add_request();
        encode_head(up.head_buf(), conn, parts);
        let head = match tokio::time::timeout(request_timeout, up.exchange(head_request)).await {
            Err(_) => {
                target.stats.add_5xx();
                return error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out");
            }
            Ok(Err(ExchangeError::NotSent(e))) => {
                // The connection was closed before any of the request went out.
                target.stats.undo_request();
                last_error = e.to_string();
                drop(guard);
                continue;
            }
            Ok(Err(ExchangeError::Failed(e))) => {
                target.stats.add_5xx();
                tracing::debug!(route = %route.name, target = %target.id, error = %e, "upstream failed");
                return error(StatusCode::BAD_GATEWAY, "upstream failed");
            }
            Ok(Ok(head)) => head,
        };
        if head.status.is_server_error() {
            target.stats.add_5xx();
        }
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            return error(
                StatusCode::BAD_GATEWAY,
                "upstream switched protocols unasked",
            );
        }
        let body = up.body(&head);
        let status = head.status;
        // Hop-by-hop headers were left out when the head was read.
        let mut out_headers = head.headers;
        if set_cookie && let Some(v) = sticky_cookie(target) {
            out_headers.append(header::SET_COOKIE, v);
        }
        let inner = match body {
            Start::Whole(bytes, reusable) => {
                if let Some(c) = reusable {
                    target.pool.checkin_plain(c);
                }
                Inner::Local(bytes)
            }
            Start::Stream(b) => Inner::Plain(b),
        };
        let mut r = Response::new(ProxyBody {
            inner,
            guard: Some(guard),
            busy: None,
        });
        *r.status_mut() = status;
        *r.headers_mut() = out_headers;
        return r;
    }
    tracing::warn!(route = %route.name, error = %last_error, "no upstream reachable");
    error(StatusCode::BAD_GATEWAY, "no upstream reachable")
}

/// Writes the upstream request head for `parts` into `w`: what the general path makes of the request
/// (origin-form target, HTTP/1.1, hop-by-hop headers out, `Host` kept or taken from an HTTP/2
/// authority, `X-Forwarded-Host` kept or set, `X-Forwarded-For` extended, `X-Forwarded-Proto`
/// set), written straight from the client's headers without changing them.
fn encode_head(w: &mut Vec<u8>, client: &ClientConn, parts: &http::request::Parts) {
    let headers = &parts.headers;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    w.extend_from_slice(parts.method.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(path.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(http::uri::Authority::as_str);
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or(authority.map(str::as_bytes));
    let connection = headers.get_all(header::CONNECTION);
    let has_connection = headers.contains_key(header::CONNECTION);
    let named = |name: &HeaderName| {
        connection
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|t| {
                t.trim_ascii()
                    .eq_ignore_ascii_case(name.as_str().as_bytes())
            })
    };
    let (mut has_host, mut has_forwarded_host) = (false, false);
    let mut forwarded_for: Option<Option<&str>> = None;
    for (name, value) in headers {
        if HOP_BY_HOP.contains(name) || (has_connection && named(name)) {
            continue;
        }
        if name == X_FORWARDED_FOR {
            // The first value is extended; the others go.
            forwarded_for.get_or_insert(value.to_str().ok());
            continue;
        }
        if name == X_FORWARDED_PROTO {
            continue;
        }
        has_host |= name == header::HOST;
        has_forwarded_host |= name == X_FORWARDED_HOST;
        put_header(w, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(h) = host {
        if !has_host {
            put_header(w, b"host", h);
        }
        if !has_forwarded_host {
            put_header(w, X_FORWARDED_HOST.as_str().as_bytes(), h);
        }
    }
    w.extend_from_slice(X_FORWARDED_FOR.as_str().as_bytes());
    w.extend_from_slice(b": ");
    if let Some(Some(prev)) = forwarded_for {
        w.extend_from_slice(prev.as_bytes());
        w.extend_from_slice(b", ");
    }
    w.extend_from_slice(client.ip.as_bytes());
    w.extend_from_slice(b"\r\n");
    let proto: &[u8] = if client.tls { b"https" } else { b"http" };
    put_header(w, X_FORWARDED_PROTO.as_str().as_bytes(), proto);
    w.extend_from_slice(b"\r\n");
}

fn put_header(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}
