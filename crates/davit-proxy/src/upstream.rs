//! The upstream side of plain requests (no request body, no upgrade): one HTTP/1.1 exchange on a
//! pooled connection, driven by the request's own task. hyper's client connection runs in a task of
//! its own fed through a channel, which costs several task wake-ups and allocations per request; here
//! the request head is written, the response head read and its body streamed by whoever polls the
//! request (the client connection's task), so a proxied request is one task's work.
//!
//! Requests with a body or an upgrade still go through hyper's client (`pool::Sender`).

use std::io;
use std::mem::MaybeUninit;
use std::pin::pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The boxed error of a response body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most headers in a response head (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Longest response head, and longest chunk-size or trailer line (hyper's client buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Read buffer growth; reads go into the spare capacity, refilled when less than `MIN_SPARE` is left.
const READ_CHUNK: usize = 8 * 1024;
const MIN_SPARE: usize = 1024;

/// A pooled upstream connection with its buffers.
#[derive(Debug)]
pub(crate) struct UpConn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Not one byte of the request was written: it never reached the upstream (may be retried).
    NotSent(io::Error),
    /// The request (or part of it) went out: never retried.
    Failed(String),
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes.
    Eof,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    Crlf,
    Trailer,
}

/// A response head.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    state: State,
    keep_alive: bool,
}

/// The response body as it is when the head has been read.
pub(crate) enum Start {
    /// Already complete (the common case: a small body that came with the head); the connection
    /// is given back when it can be reused.
    Whole(Option<Bytes>, Option<UpConn>),
    /// Still to be read from the connection.
    Stream(UpBody),
}

impl UpConn {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
        })
    }

    /// Whether an idle connection can take a request: nothing was received since its last
    /// response (the upstream did not close it, nor send anything unasked). Costs no system call
    /// unless the connection was signalled readable.
    pub(crate) fn alive(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// The write buffer, emptied: the caller writes the request head into it (origin-form target,
    /// HTTP/1.1, no hop-by-hop headers, no body), then calls [`exchange`](Self::exchange).
    pub(crate) fn head_buf(&mut self) -> &mut Vec<u8> {
        self.wbuf.clear();
        &mut self.wbuf
    }

    /// Sends the encoded request and reads the response head (1xx informational answers skipped).
    pub(crate) async fn exchange(&mut self, head_request: bool) -> Result<Head, ExchangeError> {
        match self.stream.write(&self.wbuf).await {
            Err(e) => return Err(ExchangeError::NotSent(e)),
            Ok(0) => return Err(ExchangeError::NotSent(io::ErrorKind::WriteZero.into())),
            Ok(n) if n < self.wbuf.len() => self
                .stream
                .write_all(&self.wbuf[n..])
                .await
                .map_err(|e| ExchangeError::Failed(format!("writing the request: {e}")))?,
            Ok(_) => {}
        }
        self.read_head(head_request)
            .await
            .map_err(ExchangeError::Failed)
    }

    async fn read_head(&mut self, head_request: bool) -> Result<Head, String> {
        loop {
            if !self.rbuf.is_empty()
                && let Some(head) = self.parse_head(head_request)?
            {
                return Ok(head);
            }
            if self.rbuf.len() > MAX_HEAD {
                return Err("response head too large".into());
            }
            self.reserve();
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err("the upstream closed the connection before answering".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading the response: {e}")),
            }
        }
    }

    /// A complete head taken off the read buffer, `None` when more bytes are needed.
    fn parse_head(&mut self, head_request: bool) -> Result<Option<Head>, String> {
        // Offsets of the headers kept (hop-by-hop ones go), so the head can be frozen and shared by
        // the header values without copying them.
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, code, kept, framing) = {
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                &self.rbuf,
                &mut headers,
            );
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("invalid response head: {e}")),
            };
            let raw = &*resp.headers;
            let base = self.rbuf.as_ptr() as usize;
            let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
            let mut kept = 0;
            // The Connection headers' values, looked at once (a few at most in practice).
            let mut connection: [&[u8]; 4] = [&[]; 4];
            let (mut n_connection, mut many) = (0, false);
            for h in raw
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            {
                match connection.get_mut(n_connection) {
                    Some(slot) => *slot = h.value,
                    None => many = true,
                }
                n_connection += 1;
            }
            let has_connection = n_connection > 0;
            let named = |name: &str| {
                if many {
                    connection_names(raw, name)
                } else {
                    connection[..n_connection.min(4)]
                        .iter()
                        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
                }
            };
            for h in raw {
                if is_hop_by_hop(h.name) || (has_connection && named(h.name)) {
                    continue;
                }
                spans[kept] = (
                    at(h.name.as_bytes()),
                    h.name.len() as u32,
                    at(h.value),
                    h.value.len() as u32,
                );
                kept += 1;
            }
            let framing = Framing::of(raw, resp.version.unwrap_or(1), has_connection);
            (len, resp.code.unwrap_or(0), kept, framing)
        };
        let head = self.rbuf.split_to(len).freeze();
        let status = StatusCode::from_u16(code).map_err(|e| format!("invalid status: {e}"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints: the final answer follows.
            return if self.rbuf.is_empty() {
                Ok(None)
            } else {
                self.parse_head(head_request)
            };
        }
        let mut headers = HeaderMap::with_capacity(kept);
        for &(n, nl, v, vl) in &spans[..kept] {
            let name = HeaderName::from_bytes(&head[n as usize..(n + nl) as usize])
                .map_err(|e| format!("invalid header name: {e}"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v as usize..(v + vl) as usize))
                .map_err(|e| format!("invalid header value: {e}"))?;
            headers.append(name, value);
        }
        let Framing {
            mut keep_alive,
            chunked,
            length,
        } = framing;
        let state = if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            State::Length(0)
        } else if let Some(chunked) = chunked {
            if length.is_some() {
                // RFC 9112 6.3: Transfer-Encoding wins, and the connection is not reused.
                keep_alive = false;
                headers.remove(header::CONTENT_LENGTH);
            }
            if chunked {
                State::Chunked(Chunk::Size)
            } else {
                State::Eof
            }
        } else if let Some(length) = length {
            State::Length(length?)
        } else {
            State::Eof
        };
        if state == State::Eof {
            keep_alive = false;
        }
        Ok(Some(Head {
            status,
            headers,
            state,
            keep_alive,
        }))
    }

    /// The response body after `head`: whole when it is already here, else a stream.
    pub(crate) fn body(mut self, head: &Head) -> Start {
        match head.state {
            State::Length(n) if (self.rbuf.len() as u64) >= n => {
                let body = (n > 0).then(|| self.rbuf.split_to(n as usize).freeze());
                let reusable = head.keep_alive && self.rbuf.is_empty();
                Start::Whole(body, reusable.then_some(self))
            }
            state => Start::Stream(UpBody {
                conn: Some(self),
                state,
                keep_alive: head.keep_alive,
            }),
        }
    }

    fn reserve(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < MIN_SPARE {
            self.rbuf.reserve(READ_CHUNK);
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.reserve();
        let read = pin!(self.stream.read_buf(&mut self.rbuf));
        read.poll(cx)
    }
}

/// The hop-by-hop headers that never cross the proxy (besides those the `Connection` header names).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Whether a `Connection` header of `raw` names `name`.
fn connection_names(raw: &[httparse::Header<'_>], name: &str) -> bool {
    raw.iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// What the raw response headers say about the body and the connection.
struct Framing {
    keep_alive: bool,
    /// `Transfer-Encoding` present: whether its last coding is chunked.
    chunked: Option<bool>,
    length: Option<Result<u64, String>>,
}

impl Framing {
    fn of(raw: &[httparse::Header<'_>], minor: u8, has_connection: bool) -> Self {
        let keep_alive = if minor == 0 {
            has_connection && connection_names(raw, "keep-alive")
        } else {
            !(has_connection && connection_names(raw, "close"))
        };
        let mut chunked = None;
        let mut length: Option<Result<u64, String>> = None;
        for h in raw {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                for part in tokens(h.value) {
                    let n = if !part.is_empty() && part.iter().all(u8::is_ascii_digit) {
                        std::str::from_utf8(part)
                            .ok()
                            .and_then(|p| p.parse::<u64>().ok())
                    } else {
                        None
                    };
                    length = match (n, length) {
                        (_, Some(Err(e))) => Some(Err(e)),
                        (None, _) => Some(Err("invalid content-length".into())),
                        (Some(n), Some(Ok(l))) if n != l => {
                            Some(Err("conflicting content-length".into()))
                        }
                        (Some(n), _) => Some(Ok(n)),
                    };
                }
            }
        }
        Self {
            keep_alive,
            chunked,
            length,
        }
    }
}

pub(crate) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for b in digits {
        n = n * 16 + u64::from(char::from(*b).to_digit(16)?);
    }
    Some(n)
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A response body still being read from its upstream connection.
#[derive(Debug)]
pub(crate) struct UpBody {
    conn: Option<UpConn>,
    state: State,
    keep_alive: bool,
}

impl UpBody {
    /// The connection, once the body has been read whole and the connection can take another
    /// request.
    pub(crate) fn take_reusable(&mut self) -> Option<UpConn> {
        if self.state == State::Done && self.keep_alive {
            self.conn.take().filter(|c| c.rbuf.is_empty())
        } else {
            None
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.state = State::Done;
        self.keep_alive = false;
        Poll::Ready(Some(Err(why.into())))
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buffered = conn.rbuf.len() as u64;
            let line = matches!(self.state, State::Chunked(Chunk::Size | Chunk::Trailer))
                .then(|| find_crlf(&conn.rbuf))
                .flatten();
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(0) => self.state = State::Done,
                State::Length(rem) | State::Chunked(Chunk::Data(rem)) if buffered > 0 => {
                    let n = rem.min(buffered);
                    let data = conn.rbuf.split_to(n as usize).freeze();
                    self.state = match self.state {
                        State::Length(_) if n == rem => State::Done,
                        State::Length(_) => State::Length(rem - n),
                        _ if n == rem => State::Chunked(Chunk::Crlf),
                        _ => State::Chunked(Chunk::Data(rem - n)),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Eof if buffered > 0 => {
                    let data = conn.rbuf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(Chunk::Crlf) if buffered >= 2 => {
                    if &conn.rbuf[..2] != b"\r\n" {
                        return self.fail("invalid chunked body".into());
                    }
                    let _ = conn.rbuf.split_to(2);
                    self.state = State::Chunked(Chunk::Size);
                }
                State::Chunked(Chunk::Size) if let Some(i) = line => {
                    let Some(size) = parse_chunk_size(&conn.rbuf[..i]) else {
                        return self.fail("invalid chunk size".into());
                    };
                    let _ = conn.rbuf.split_to(i + 2);
                    self.state = State::Chunked(if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    });
                }
                State::Chunked(Chunk::Trailer) if let Some(i) = line => {
                    // Trailer fields are dropped; the empty line ends the body.
                    let _ = conn.rbuf.split_to(i + 2);
                    if i == 0 {
                        self.state = State::Done;
                    }
                }
                state => {
                    if conn.rbuf.len() > MAX_HEAD {
                        return self.fail("chunk line too long".into());
                    }
                    match ready!(conn.poll_fill(cx)) {
                        Ok(0) if state == State::Eof => {
                            self.state = State::Done;
                            self.keep_alive = false;
                        }
                        Ok(0) => {
                            return self.fail("the upstream closed the connection mid-body".into());
                        }
                        Ok(_) => {}
                        Err(e) => return self.fail(format!("reading the response body: {e}")),
                    }
                }
            }
        }
    }
}
