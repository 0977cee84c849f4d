//! A typed client for the admin API, generic over how the stream is opened, so the engine can reach the
//! proxy through an SSH `direct-tcpip` channel without this crate knowing about SSH.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;
use crate::api::{ApiError, MaintenanceRequest, RouteSpec, RouteStatus};

/// Opens one fresh byte stream to the admin API per call.
///
/// Implemented for [`TcpConnect`] and for any `Fn() -> impl Future<Output = io::Result<S>>` closure, e.g.
/// one that opens a `direct-tcpip` channel to `127.0.0.1:19900` on a server.
pub trait Connect: Send + Sync {
    /// The stream; each admin call uses one and drops it.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Opens a stream.
    fn connect(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl<F, Fut, S> Connect for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = std::io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Stream = S;
    fn connect(&self) -> impl Future<Output = std::io::Result<S>> + Send {
        self()
    }
}

/// Plain TCP to an admin address (tests, or the engine on the same machine).
#[derive(Debug, Clone, Copy)]
pub struct TcpConnect(pub SocketAddr);

impl Connect for TcpConnect {
    type Stream = tokio::net::TcpStream;
    fn connect(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send {
        tokio::net::TcpStream::connect(self.0)
    }
}

/// The admin API client.
#[derive(Debug, Clone)]
pub struct AdminClient<C> {
    connect: C,
}

impl AdminClient<TcpConnect> {
    /// A client of the admin API at `addr` over plain TCP.
    #[must_use]
    pub fn tcp(addr: SocketAddr) -> Self {
        Self::new(TcpConnect(addr))
    }
}

impl<C: Connect> AdminClient<C> {
    /// A client that opens its streams with `connect`.
    pub fn new(connect: C) -> Self {
        Self { connect }
    }

    /// `GET /healthz`: Ok when the proxy answers.
    pub async fn healthz(&self) -> Result<(), Error> {
        self.call(Method::GET, "/healthz", None).await.map(drop)
    }

    /// `GET /routes`: every route with its targets' states.
    pub async fn routes(&self) -> Result<Vec<RouteStatus>, Error> {
        self.json(Method::GET, "/routes", None).await
    }

    /// `GET /routes/{name}`; `None` when there is no such route.
    pub async fn route(&self, name: &str) -> Result<Option<RouteStatus>, Error> {
        match self
            .json(Method::GET, &format!("/routes/{name}"), None)
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(Error::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /routes/{name}`: makes `spec` the route's whole desired state. New targets get traffic once
    /// healthy; the others drain. Returns the route's status right after the change.
    pub async fn put_route(&self, name: &str, spec: &RouteSpec) -> Result<RouteStatus, Error> {
        let body = serde_json::to_vec(spec).map_err(|source| Error::Json {
            what: "route spec".into(),
            source,
        })?;
        self.json(Method::PUT, &format!("/routes/{name}"), Some(body))
            .await
    }

    /// `DELETE /routes/{name}`: closes its listener; true when it existed.
    pub async fn delete_route(&self, name: &str) -> Result<bool, Error> {
        match self
            .call(Method::DELETE, &format!("/routes/{name}"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /routes/{name}/maintenance`: turns maintenance mode on (503 with `page`, or a built-in
    /// page) or off.
    pub async fn set_maintenance(
        &self,
        name: &str,
        enabled: bool,
        page: Option<String>,
    ) -> Result<RouteStatus, Error> {
        let req = MaintenanceRequest { enabled, page };
        let body = serde_json::to_vec(&req).map_err(|source| Error::Json {
            what: "maintenance".into(),
            source,
        })?;
        self.json(
            Method::POST,
            &format!("/routes/{name}/maintenance"),
            Some(body),
        )
        .await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let body = self.call(Method::GET, "/metrics", None).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let what = format!("{method} {path}");
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { what, source })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, Error> {
        let what = format!("{method} {path}");
        let stream = self.connect.connect().await.map_err(Error::Connect)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| Error::Http {
                what: what.clone(),
                source,
            })?;
        let conn = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "davit-proxy");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Api {
                what: what.clone(),
                status: 0,
                message: e.to_string(),
            })?;
        let resp = send.send_request(req).await.map_err(|source| Error::Http {
            what: what.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| Error::Http {
                what: what.clone(),
                source,
            })?
            .to_bytes();
        drop(send);
        conn.abort();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(Error::Api {
            what,
            status: status.as_u16(),
            message,
        })
    }
}
