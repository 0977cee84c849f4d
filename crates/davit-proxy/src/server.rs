//! The proxy: routes with their listeners, the admin API, and the state file that brings routes back
//! after a restart.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::api::{ApiError, Maintenance, MaintenanceRequest, RouteSpec, RouteStatus, TlsSpec};
use crate::drain::{Drain, IDLE, STOP, Signal, Ticket};
use crate::forward::{self, ClientConn};
use crate::handover;
use crate::route::{self, Route};
use crate::tls::{self, FileCertResolver};

/// How long a stopping proxy answers HTTP/1 requests with `Connection: close` before it closes the
/// connections left (idle ones, mostly).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a client connection that has not sent its first request yet may take to start it once the
/// proxy stops. Closing it at once would fail a request the client may already have sent (the
/// connection was accepted just as the listeners closed): it is served, with `Connection: close`.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// How the proxy starts.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Routes are saved here after every change and restored from here at start.
    pub state_file: Option<PathBuf>,
    /// Runtimes that serve clients, one per thread, which get each route's new connections in turn (a
    /// connection and the upstream connections it uses stay on one thread). Empty: clients are
    /// served on the runtime that calls [`Proxy::start`].
    pub workers: Vec<Handle>,
    /// The handover socket: at start, the listening sockets of the proxy serving it (the one this
    /// proxy replaces) are taken over instead of binding new ones; [`Proxy::serve_handover`] then
    /// serves it for the next proxy. See the `handover` module.
    pub handover: Option<PathBuf>,
}

/// The proxy: a set of named routes, each with its own listener.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    routes: tokio::sync::Mutex<BTreeMap<String, Entry>>,
    state_file: Option<PathBuf>,
    workers: Vec<Handle>,
    drain: Arc<Drain>,
    /// Listening sockets taken over from the previous proxy and not claimed by a listener yet.
    inherited: Inherited,
    /// The admin API's listening socket (a second descriptor of it), for the next proxy.
    admin_socket: Mutex<Option<OwnedFd>>,
}

/// Listening sockets taken over from the previous proxy, by local address.
type Inherited = Mutex<HashMap<SocketAddr, std::net::TcpListener>>;

/// A listener for `addr`: the previous proxy's socket for it when one was taken over, else a new one.
fn open_listener(inherited: &Inherited, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let taken = inherited.lock().expect("inherited lock").remove(&addr);
    match taken {
        Some(l) => {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        }
        None => bind_listener(addr),
    }
}

struct Entry {
    route: Arc<Route>,
    listen: SocketAddr,
    tls_spec: Option<TlsSpec>,
    tls: Arc<RwLock<Option<TlsAcceptor>>>,
    /// The accepting tasks, which own the route's listener (aborted, they close it).
    accept: Vec<JoinHandle<()>>,
    /// A second descriptor of the listening socket, for the next proxy's handover.
    socket: Option<OwnedFd>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.accept.drain(..).for_each(|a| a.abort());
        self.route.shutdown();
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    routes: BTreeMap<String, RouteSpec>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn invalid(route: &str, reason: impl Into<String>) -> Error {
    Error::InvalidRoute {
        route: route.to_owned(),
        reason: reason.into(),
    }
}

fn validate(name: &str, spec: &RouteSpec) -> Result<(), Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            name,
            "a route name is made of letters, digits, '-', '_' and '.'",
        ));
    }
    let mut ids: Vec<String> = spec
        .targets
        .iter()
        .map(crate::api::TargetSpec::effective_id)
        .collect();
    ids.sort();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(name, format!("target id {:?} appears twice", w[0])));
    }
    if let Some(bad) = ids.iter().find(|id| {
        id.chars()
            .any(|c| c.is_ascii_whitespace() || matches!(c, ';' | ',' | '"' | '\\'))
    }) {
        return Err(invalid(
            name,
            format!("target id {bad:?} cannot go in a cookie"),
        ));
    }
    if let Some(p) = &spec.health.path
        && !p.starts_with('/')
    {
        return Err(invalid(
            name,
            format!("health path {p:?} must start with '/'"),
        ));
    }
    Ok(())
}

fn load_tls(name: &str, spec: Option<&TlsSpec>) -> Result<Option<TlsAcceptor>, Error> {
    let Some(t) = spec else { return Ok(None) };
    let tls_err = |reason: String| Error::Tls {
        route: name.to_owned(),
        reason,
    };
    let resolver = FileCertResolver::load(&t.cert_file, &t.key_file).map_err(tls_err)?;
    tls::acceptor(Arc::new(resolver)).map(Some).map_err(tls_err)
}

/// Opens a listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`): another davit-proxy process
/// can bind the same address while this one still listens, so a new proxy takes over the ports before
/// the old one stops (on SIGTERM it closes its listeners and drains). The kernel spreads new
/// connections over both meanwhile. Connections still queued on a listener when it closes are reset
/// unless `net.ipv4.tcp_migrate_req` is 1, which moves them to the other listener.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Opens a route's listener and starts accepting: connections go to the worker runtimes in turn (each
/// client connection, and the upstream connections it uses, then stay on one thread), or are served on
/// the current runtime when there are no workers.
async fn listen(
    addr: SocketAddr,
    route: &Arc<Route>,
    tls: &Arc<RwLock<Option<TlsAcceptor>>>,
    inner: &Inner,
) -> Result<(Vec<JoinHandle<()>>, OwnedFd), Error> {
    // A listener of this address that was just closed may take a moment to go.
    let mut tries = 0;
    loop {
        match listen_once(addr, route, tls, inner) {
            Ok(h) => return Ok(h),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => return Err(Error::Bind { addr, source }),
        }
    }
}

fn listen_once(
    addr: SocketAddr,
    route: &Arc<Route>,
    tls: &Arc<RwLock<Option<TlsAcceptor>>>,
    inner: &Inner,
) -> std::io::Result<(Vec<JoinHandle<()>>, OwnedFd)> {
    let (workers, drain) = (&inner.workers, &inner.drain);
    let listener = open_listener(&inner.inherited, addr)?;
    let socket = listener.as_fd().try_clone_to_owned()?;
    if workers.is_empty() {
        let task = tokio::spawn(accept_loop(
            listener,
            route.clone(),
            tls.clone(),
            drain.clone(),
        ));
        return Ok((vec![task], socket));
    }
    // One accepting task hands connections to the workers in turn, so each worker gets an equal share
    // (a shared socket lets the first thread awake take a whole burst of new connections).
    let (route, tls, workers, drain) =
        (route.clone(), tls.clone(), workers.to_vec(), drain.clone());
    let task = workers[0].clone().spawn(async move {
        let mut next = 0usize;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(route = %route.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Counted from here, so that a stopping proxy waits for it even before a worker runs it.
            let registered = drain.register();
            let acceptor = tls.read().expect("tls lock").clone();
            let worker = &workers[next % workers.len()];
            next = next.wrapping_add(1);
            match stream.into_std() {
                Ok(std) => {
                    let (route, drain) = (route.clone(), drain.clone());
                    worker.spawn(async move {
                        match TcpStream::from_std(std) {
                            Ok(stream) => {
                                serve_client(route, acceptor, stream, peer, drain, registered).await
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot hand a connection to a worker")
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot hand a connection to a worker"),
            }
        }
    });
    Ok((vec![task], socket))
}

async fn accept_loop(
    listener: TcpListener,
    route: Arc<Route>,
    tls: Arc<RwLock<Option<TlsAcceptor>>>,
    drain: Arc<Drain>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(route = %route.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let registered = drain.register();
        let acceptor = tls.read().expect("tls lock").clone();
        tokio::spawn(serve_client(
            route.clone(),
            acceptor,
            stream,
            peer,
            drain.clone(),
            registered,
        ));
    }
}

/// Drives one client connection until it ends. When the drain raises [`STOP`], shuts it down
/// gracefully and lets it finish; a connection that has not started a request yet (`$fresh()`) is
/// first given [`FIRST_REQUEST_GRACE`] to start one, which is then answered with `Connection:
/// close`. When the idle watchdog raises [`IDLE`] (no request in progress and none started for a
/// whole idle period: a keep-alive connection nobody uses, or a request head that never completes),
/// shuts it down gracefully, and drops it if it is still there one period later.
/// Both arrive through the connection's [`Signal`]: one atomic load per poll, where a timer or a
/// channel polled alongside would cost a registration per wake-up, and hyper's header-read timeout
/// a timer per request.
macro_rules! drive {
    ($conn:expr, $signal:expr, $fresh:expr) => {{
        let mut conn = std::pin::pin!($conn);
        let signal: &Signal = $signal;
        let fresh = $fresh;
        let (mut registered, mut stopping, mut idle_shut) = (false, false, false);
        // Set while a stop waits for a fresh connection's first request.
        let mut first_request: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            if !registered {
                signal.register(cx.waker());
                registered = true;
            }
            let raised = signal.take();
            if raised & STOP != 0 && !stopping {
                stopping = true;
                if fresh() {
                    first_request = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
                } else {
                    conn.as_mut().graceful_shutdown();
                }
            }
            if let Some(grace) = first_request.as_mut() {
                if !fresh() || grace.as_mut().poll(cx).is_ready() {
                    first_request = None;
                    conn.as_mut().graceful_shutdown();
                }
            }
            if raised & IDLE != 0 {
                if idle_shut {
                    return std::task::Poll::Ready(Ok(()));
                }
                idle_shut = true;
                conn.as_mut().graceful_shutdown();
            }
            conn.as_mut().poll(cx)
        })
        .await
    }};
}

/// Raises [`IDLE`] on `signal` after every idle period in which `client` had no request in progress
/// and started none; ends with the connection.
fn spawn_idle_watchdog(
    client: &Arc<ClientConn>,
    signal: &Arc<Signal>,
    idle: Duration,
) -> tokio::task::JoinHandle<()> {
    let (client, signal) = (Arc::downgrade(client), signal.clone());
    tokio::spawn(async move {
        let mut seen = None;
        loop {
            tokio::time::sleep(idle).await;
            let Some(c) = client.upgrade() else { return };
            let started = c.started();
            if seen == Some(started) && c.idle() {
                signal.raise(IDLE);
            }
            seen = Some(started);
        }
    })
}

async fn serve_client(
    route: Arc<Route>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    drain: Arc<Drain>,
    (_ticket, signal): (Ticket, Arc<Signal>),
) {
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_millis(route.snapshot().spec.timeouts.idle_ms.max(1));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header-read timeout: `drive!` closes idle connections.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(idle))
        .keep_alive_timeout(idle);
    let tls_on = tls.is_some();
    let conn = Arc::new(ClientConn::new(route, peer, tls_on, drain));
    let watchdog = spawn_idle_watchdog(&conn, &signal, idle);
    let _watchdog = AbortOnDrop(watchdog.abort_handle());
    let fresh = {
        let conn = conn.clone();
        move || conn.started() == 0
    };
    let svc = service_fn(move |req| forward::handle(conn.clone(), req));
    let result = match tls {
        None => drive!(
            builder.serve_connection_with_upgrades(TokioIo::new(stream), svc),
            &signal,
            &fresh
        ),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(s) => drive!(
                builder.serve_connection_with_upgrades(TokioIo::new(s), svc),
                &signal,
                &fresh
            ),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended");
    }
}

/// The listening sockets of the proxy serving the handover socket at `path`, if one does. Any failure
/// leaves the new proxy to bind its own (with `SO_REUSEPORT`), as it would without a handover.
async fn take_over(path: PathBuf) -> HashMap<SocketAddr, std::net::TcpListener> {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || handover::receive(&path)).await {
        Ok(Ok(Some(sockets))) => {
            let mut addrs: Vec<String> = sockets.keys().map(ToString::to_string).collect();
            addrs.sort();
            tracing::info!(
                count = sockets.len(),
                listeners = %addrs.join(" "),
                "{}",
                handover::TAKEN_OVER
            );
            sockets
        }
        Ok(Ok(None)) => {
            tracing::debug!(socket = %shown, "no previous proxy to take listening sockets over from");
            HashMap::new()
        }
        Ok(Err(e)) => {
            tracing::warn!(socket = %shown, error = %e, "cannot take the previous proxy's listening sockets over: binding new ones");
            HashMap::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the handover task failed: binding new listening sockets");
            HashMap::new()
        }
    }
}

impl Proxy {
    /// A proxy with the routes of the state file, if any (a route whose listener cannot be opened is kept
    /// and logged, so it is not lost from the file).
    pub async fn start(config: ProxyConfig) -> Result<Self, Error> {
        let inherited = match config.handover {
            Some(path) => take_over(path).await,
            None => HashMap::new(),
        };
        let proxy = Self {
            inner: Arc::new(Inner {
                routes: tokio::sync::Mutex::new(BTreeMap::new()),
                state_file: config.state_file,
                workers: config.workers,
                drain: Arc::new(Drain::default()),
                inherited: Mutex::new(inherited),
                admin_socket: Mutex::new(None),
            }),
        };
        if let Some(path) = &proxy.inner.state_file {
            let saved = read_state(path)?;
            let mut routes = proxy.inner.routes.lock().await;
            for (name, spec) in saved.routes {
                match Self::apply(&mut routes, &name, spec.clone(), &proxy.inner).await {
                    Ok(()) => tracing::info!(route = %name, "route restored"),
                    Err(e) => {
                        tracing::error!(route = %name, error = %e, "route restored without its listener");
                        let route = Route::new(&name, spec.clone());
                        route.apply(spec.clone());
                        let entry = Entry {
                            route,
                            listen: spec.listen,
                            tls_spec: None,
                            tls: Arc::new(RwLock::new(None)),
                            accept: Vec::new(),
                            socket: None,
                        };
                        routes.insert(name, entry);
                    }
                }
            }
        }
        Ok(proxy)
    }

    async fn apply(
        routes: &mut BTreeMap<String, Entry>,
        name: &str,
        spec: RouteSpec,
        inner: &Inner,
    ) -> Result<(), Error> {
        validate(name, &spec)?;
        if let Some((other, _)) = routes
            .iter()
            .find(|(n, e)| n.as_str() != name && e.listen == spec.listen)
        {
            return Err(invalid(
                name,
                format!(
                    "{} is already the listen address of route {other:?}",
                    spec.listen
                ),
            ));
        }
        let tls = load_tls(name, spec.tls.as_ref())?;
        if let Some(entry) = routes.get_mut(name) {
            if entry.listen != spec.listen || entry.accept.is_empty() {
                let (accept, socket) = listen(spec.listen, &entry.route, &entry.tls, inner).await?;
                entry.accept.drain(..).for_each(|a| a.abort());
                entry.accept = accept;
                entry.socket = Some(socket);
                entry.listen = spec.listen;
            }
            if entry.tls_spec != spec.tls {
                *entry.tls.write().expect("tls lock") = tls;
                entry.tls_spec = spec.tls.clone();
            }
            entry.route.apply(spec);
            return Ok(());
        }
        let route = Route::new(name, spec.clone());
        // Targets first, listener second: a request accepted at once (a proxy that takes over the
        // ports of another gets one right away) then waits for the first check instead of finding
        // a route without targets, which answers 503.
        route.apply(spec.clone());
        let tls = Arc::new(RwLock::new(tls));
        let (accept, socket) = match listen(spec.listen, &route, &tls, inner).await {
            Ok(listening) => listening,
            Err(e) => {
                route.shutdown();
                return Err(e);
            }
        };
        let entry = Entry {
            route,
            listen: spec.listen,
            tls_spec: spec.tls,
            tls,
            accept,
            socket: Some(socket),
        };
        routes.insert(name.to_owned(), entry);
        Ok(())
    }

    fn save(&self, routes: &BTreeMap<String, Entry>) -> Result<(), Error> {
        let Some(path) = &self.inner.state_file else {
            return Ok(());
        };
        let state = StateFile {
            routes: routes
                .iter()
                .map(|(n, e)| (n.clone(), (*e.route.spec()).clone()))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|source| Error::Json {
            what: "state".into(),
            source,
        })?;
        let state_err = |source| Error::State {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(state_err)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(state_err)?;
        std::fs::rename(&tmp, path).map_err(state_err)
    }

    /// Makes `spec` the whole desired state of route `name` (created if new) and saves the state.
    pub async fn put_route(&self, name: &str, spec: RouteSpec) -> Result<RouteStatus, Error> {
        let mut routes = self.inner.routes.lock().await;
        Self::apply(&mut routes, name, spec, &self.inner).await?;
        self.save(&routes)?;
        Ok(routes[name].route.status())
    }

    /// Removes a route and closes its listener; false when there was none.
    pub async fn delete_route(&self, name: &str) -> Result<bool, Error> {
        let mut routes = self.inner.routes.lock().await;
        let existed = routes.remove(name).is_some();
        if existed {
            self.save(&routes)?;
        }
        Ok(existed)
    }

    /// Turns maintenance mode of a route on (503 with `page`, or a built-in page) or off.
    pub async fn set_maintenance(
        &self,
        name: &str,
        enabled: bool,
        page: Option<String>,
    ) -> Result<RouteStatus, Error> {
        let mut routes = self.inner.routes.lock().await;
        let entry = routes
            .get(name)
            .ok_or_else(|| Error::NoSuchRoute(name.to_owned()))?;
        let mut spec = (*entry.route.spec()).clone();
        spec.maintenance = enabled.then_some(Maintenance { page });
        Self::apply(&mut routes, name, spec, &self.inner).await?;
        self.save(&routes)?;
        Ok(routes[name].route.status())
    }

    /// Every route's status.
    pub async fn routes(&self) -> Vec<RouteStatus> {
        self.inner
            .routes
            .lock()
            .await
            .values()
            .map(|e| e.route.status())
            .collect()
    }

    /// One route's status.
    pub async fn route(&self, name: &str) -> Option<RouteStatus> {
        self.inner
            .routes
            .lock()
            .await
            .get(name)
            .map(|e| e.route.status())
    }

    /// The local address of a route's listener (useful with port 0).
    pub async fn listen_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inner.routes.lock().await.get(name).map(|e| e.listen)
    }

    /// Client connections open: accepted and not closed yet.
    pub fn client_connections(&self) -> usize {
        self.inner.drain.connections()
    }

    /// Per-target metrics in the Prometheus text format.
    pub async fn metrics(&self) -> String {
        let mut all = Vec::new();
        for e in self.inner.routes.lock().await.values() {
            e.route.series(&mut all);
        }
        crate::metrics::render(&route::series_of(&all))
    }

    /// Stops the client side gracefully, as the binary does on SIGTERM: closes every route's listener
    /// (a proxy that bound the same addresses with `SO_REUSEPORT` gets every new connection from
    /// then on), answers HTTP/1 requests with `Connection: close` for a short grace so busy
    /// keep-alive clients leave after their response, then shuts every remaining connection down
    /// gracefully (idle HTTP/1 closed, HTTP/2 sent GOAWAY) and waits (up to `timeout` in all) for
    /// the requests in flight. Returns the requests still in flight at the end.
    pub async fn shutdown(&self, timeout: Duration) -> u64 {
        let now = tokio::time::Instant::now();
        let deadline = now + timeout;
        let (routes, accepting): (Vec<Arc<Route>>, Vec<JoinHandle<()>>) = {
            let mut routes = self.inner.routes.lock().await;
            // No descriptor of a listening socket stays here: a proxy that took them over keeps them
            // open (and accepts every connection from now on); otherwise they close.
            routes.values_mut().for_each(|e| e.socket = None);
            self.inner
                .admin_socket
                .lock()
                .expect("admin socket lock")
                .take();
            let accepting = routes
                .values_mut()
                .flat_map(|e| e.accept.drain(..))
                .collect();
            (
                routes.values().map(|e| e.route.clone()).collect(),
                accepting,
            )
        };
        accepting.iter().for_each(JoinHandle::abort);
        // An accepting task ends (and closes its listener) at its next turn on its thread: until then
        // it may still take connections, which must be counted before the drain goes on.
        for task in accepting {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        let drain = &self.inner.drain;
        drain.start_closing();
        let grace = deadline.min(now + CLOSE_GRACE);
        while drain.connections() > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drain.close_all();
        loop {
            let in_flight: u64 = routes.iter().map(|r| r.in_flight()).sum();
            if (in_flight == 0 && drain.connections() == 0)
                || tokio::time::Instant::now() >= deadline
            {
                return in_flight;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends the start-up and serves the handover socket at `path` for the proxy that will replace
    /// this one: listening sockets taken over from the previous proxy that no route (or admin API)
    /// claimed are closed, then every new proxy that connects is given this one's listening sockets.
    /// The returned task runs until aborted.
    pub fn serve_handover(&self, path: &Path) -> Result<JoinHandle<()>, Error> {
        let left: Vec<SocketAddr> = {
            let mut inherited = self.inner.inherited.lock().expect("inherited lock");
            inherited.drain().map(|(addr, _)| addr).collect()
        };
        if !left.is_empty() {
            tracing::info!(
                ?left,
                "closed listening sockets of the previous proxy that no route uses"
            );
        }
        let handover_err = |source| Error::Handover {
            path: path.to_owned(),
            source,
        };
        let listener = handover::bind(path).map_err(handover_err)?;
        let proxy = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let conn = match listener.accept().await {
                    Ok((conn, _)) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "handover: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let sockets = proxy.listening_sockets().await;
                let count = sockets.len();
                match tokio::task::spawn_blocking(move || handover::answer(conn, &sockets)).await {
                    Ok(Ok(())) => {
                        tracing::info!(count, "listening sockets handed over to a new proxy")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "handover to a new proxy failed"),
                    Err(e) => tracing::warn!(error = %e, "handover task failed"),
                }
            }
        }))
    }

    /// Second descriptors of every listening socket: the routes' and the admin API's.
    async fn listening_sockets(&self) -> Vec<OwnedFd> {
        let routes = self.inner.routes.lock().await;
        let admin = self.inner.admin_socket.lock().expect("admin socket lock");
        routes
            .values()
            .filter_map(|e| e.socket.as_ref())
            .chain(admin.as_ref())
            .filter_map(|fd| fd.try_clone().ok())
            .collect()
    }

    /// The admin API's listener for `addr`: the previous proxy's socket when it was taken over (see
    /// [`ProxyConfig::handover`]), else a new one (`SO_REUSEPORT`, like the routes' listeners).
    pub fn admin_listener(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        open_listener(&self.inner.inherited, addr)
    }

    /// Serves the admin API on `listener` until the task is dropped.
    pub async fn serve_admin(&self, listener: TcpListener) -> std::io::Result<()> {
        *self.inner.admin_socket.lock().expect("admin socket lock") =
            Some(listener.as_fd().try_clone_to_owned()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let proxy = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.admin(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn admin(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                );
            }
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => text(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, ["metrics"]) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                &self.metrics().await,
            ),
            (&Method::GET, ["routes"]) => json(StatusCode::OK, &self.routes().await),
            (&Method::GET, ["routes", name]) => match self.route(name).await {
                Some(r) => json(StatusCode::OK, &r),
                None => api_error(StatusCode::NOT_FOUND, &format!("no route named {name:?}")),
            },
            (&Method::PUT, ["routes", name]) => match serde_json::from_slice::<RouteSpec>(&body) {
                Err(e) => api_error(StatusCode::BAD_REQUEST, &format!("invalid route spec: {e}")),
                Ok(spec) => respond(self.put_route(name, spec).await),
            },
            (&Method::DELETE, ["routes", name]) => match self.delete_route(name).await {
                Ok(true) => text(StatusCode::NO_CONTENT, "text/plain", ""),
                Ok(false) => api_error(StatusCode::NOT_FOUND, &format!("no route named {name:?}")),
                Err(e) => error_response(&e),
            },
            (&Method::POST, ["routes", name, "maintenance"]) => {
                match serde_json::from_slice::<MaintenanceRequest>(&body) {
                    Err(e) => api_error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid maintenance request: {e}"),
                    ),
                    Ok(m) => respond(self.set_maintenance(name, m.enabled, m.page).await),
                }
            }
            (
                _,
                ["healthz" | "metrics" | "routes"] | ["routes", _] | ["routes", _, "maintenance"],
            ) => api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on {path}"),
            ),
            _ => api_error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
        }
    }
}

fn read_state(path: &Path) -> Result<StateFile, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("state file {}", path.display()),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(source) => Err(Error::State {
            path: path.to_owned(),
            source,
        }),
    }
}

fn text(status: StatusCode, content_type: &str, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_string(value) {
        Ok(s) => text(status, "application/json", &s),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_plain(
        status,
        &ApiError {
            error: message.to_owned(),
        },
    )
}

fn json_plain(status: StatusCode, e: &ApiError) -> Response<Full<Bytes>> {
    text(
        status,
        "application/json",
        &serde_json::to_string(e).unwrap_or_default(),
    )
}

/// The whole cause chain, for the admin API's error messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn error_response(e: &Error) -> Response<Full<Bytes>> {
    let status = match e {
        Error::InvalidRoute { .. } | Error::Tls { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::NoSuchRoute(_) => StatusCode::NOT_FOUND,
        Error::Bind { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(status, &chain(e))
}

fn respond(r: Result<RouteStatus, Error>) -> Response<Full<Bytes>> {
    match r {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => error_response(&e),
    }
}
