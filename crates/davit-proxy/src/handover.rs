//! Listening sockets passed from a running proxy to the one that replaces it.
//!
//! A proxy started with a handover path first asks the proxy serving that path (if any) for its
//! listening sockets, over a Unix socket with `SCM_RIGHTS`, and accepts from those same sockets
//! instead of binding new ones; then it serves the path itself, for the proxy after it. No listening
//! socket closes during an upgrade, so no connection can be reset by one closing: the old proxy
//! merely stops accepting when it stops, and the new one, which accepts from the same queues, takes
//! every connection from then on. (`SO_REUSEPORT` with `net.ipv4.tcp_migrate_req` comes close, but
//! a handshake that completes on the old listener as it closes is still reset.)
//!
//! The exchange: the new proxy sends [`HELLO`]; the old one answers with messages of up to
//! [`PER_MESSAGE`] descriptors each, every message a line of JSON ([`Batch`]) saying how many it
//! carries and whether more follow. The receiver checks the count, keys each socket by its own local
//! address (the kernel's word, not the sender's) and keeps only listening sockets.

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustix::net::sockopt::socket_acceptconn;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// What a proxy logs once it has taken the listening sockets of the previous one over (the engine
/// waits for it before it stops the old proxy).
pub const TAKEN_OVER: &str = "listening sockets taken over from the previous proxy";
use serde::{Deserialize, Serialize};

/// What a new proxy sends to ask for the sockets (and the version of this exchange).
const HELLO: &[u8] = b"davit-proxy handover 1";

/// Descriptors per message: the kernel takes at most 253 in one.
const PER_MESSAGE: usize = 200;

/// How long either side waits for the other before giving up (the new proxy then binds its own).
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    /// Descriptors attached to this message.
    count: usize,
    /// Whether another message follows.
    more: bool,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Asks the proxy serving `path` for its listening sockets, keyed by their local addresses. No proxy
/// there (no socket file, or nobody accepting on it: the previous proxy is gone): `Ok(None)`.
pub(crate) fn receive(
    path: &Path,
) -> io::Result<Option<HashMap<SocketAddr, std::net::TcpListener>>> {
    let sock = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    (&sock).write_all(HELLO)?;
    let (mut fds, mut announced): (Vec<OwnedFd>, usize) = (Vec::new(), 0);
    let mut text: Vec<u8> = Vec::new();
    let mut buf = [0u8; 512];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(PER_MESSAGE))];
    'read: loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            &sock,
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        // Descriptors first, so that they are owned (and closed if unused) whatever follows.
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(bad("a handover message lost some of its sockets"));
        }
        if msg.bytes == 0 {
            return Err(bad("the previous proxy closed the handover early"));
        }
        text.extend_from_slice(&buf[..msg.bytes]);
        while let Some(end) = text.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = text.drain(..=end).collect();
            let batch: Batch = serde_json::from_slice(&line)
                .map_err(|e| bad(format!("invalid handover message: {e}")))?;
            announced += batch.count;
            if !batch.more {
                break 'read;
            }
        }
    }
    if announced != fds.len() {
        return Err(bad(format!(
            "the previous proxy announced {announced} sockets and passed {}",
            fds.len()
        )));
    }
    let mut out = HashMap::new();
    for fd in fds {
        if socket_acceptconn(&fd).unwrap_or(false) {
            let listener = std::net::TcpListener::from(fd);
            if let Ok(addr) = listener.local_addr() {
                out.insert(addr, listener);
            }
        }
    }
    Ok(Some(out))
}

/// The handover socket at `path`, listening. A socket file already there is the previous proxy's,
/// which has served its last handover (to this proxy): it is replaced.
pub(crate) fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    tokio::net::UnixListener::bind(path)
}

/// Answers one new proxy on `conn` (accepted on the socket from [`bind`]): waits for its [`HELLO`],
/// then sends `sockets`. Blocking, within [`TIMEOUT`] per step.
pub(crate) fn answer(conn: tokio::net::UnixStream, sockets: &[OwnedFd]) -> io::Result<()> {
    let mut conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    let mut hello = [0u8; HELLO.len()];
    conn.read_exact(&mut hello)?;
    if hello != HELLO {
        return Err(bad("not a davit-proxy handover request"));
    }
    let mut chunks: Vec<&[OwnedFd]> = sockets.chunks(PER_MESSAGE).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut payload = serde_json::to_vec(&Batch {
            count: chunk.len(),
            more: i < last,
        })
        .map_err(|e| bad(e.to_string()))?;
        payload.push(b'\n');
        let borrowed: Vec<BorrowedFd<'_>> = chunk.iter().map(AsFd::as_fd).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(chunk.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(bad("the handover message has no room for its sockets"));
        }
        rustix::net::sendmsg(
            &conn,
            &[io::IoSlice::new(&payload)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
    }
    Ok(())
}
