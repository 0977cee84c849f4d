//! OpenSSH `known_hosts` files: lookup (plain, hashed `|1|salt|hash`, `[host]:port`, wildcards, negation,
//! `@revoked`), and recording new keys.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

use crate::Error;

/// What known_hosts says about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A matching entry exists.
    Known,
    /// No entry names this host.
    Unknown,
    /// Entries name this host but none holds this key; `line` is the first such entry (1-based), to fix.
    Changed { line: usize },
    /// The key is marked `@revoked` at `line`.
    Revoked { line: usize },
}

/// The name under which OpenSSH files a host: `host` on port 22, else `[host]:port`.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` for `host`:`port` against the file at `path` (a missing file knows no host).
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<Verdict, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(e) => {
            return Err(Error::KnownHosts {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    Ok(check_text(&text, host, port, key))
}

/// [`check`] on the file's text.
pub fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_pattern(host, port);
    let mut first_other = None;
    let mut known = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut fields = l.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                // Certificate authorities vouch for certificates; davit does not do host certificates.
                _ => continue,
            }
            first = fields.next().unwrap_or("");
        }
        let (Some(_kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !revoked && !hosts_match(first, &name) {
            continue;
        }
        let Ok(recorded) = russh::keys::parse_public_key_base64(b64) else {
            continue;
        };
        let same = recorded.key_data() == key.key_data();
        if revoked {
            if same {
                return Verdict::Revoked { line };
            }
            continue;
        }
        if same {
            known = true;
        } else if first_other.is_none() {
            first_other = Some(line);
        }
    }
    match (known, first_other) {
        (true, _) => Verdict::Known,
        (false, Some(line)) => Verdict::Changed { line },
        (false, None) => Verdict::Unknown,
    }
}

/// Appends `key` for `host`:`port` to the file at `path` (created, with its directory, if missing).
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<(), Error> {
    let io = |e| Error::KnownHosts {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|c| *c != b'\n'))
        .unwrap_or(false);
    let entry = format!(
        "{}{} {}\n",
        if needs_newline { "\n" } else { "" },
        host_pattern(host, port),
        openssh.trim()
    );
    // One write with O_APPEND: concurrent learners never interleave within a line.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(entry.as_bytes()).map_err(io)
}

/// `SHA256:...`, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// Does the comma-separated pattern list `patterns` match `name`? A negated match (`!pat`) wins.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if p.starts_with("|1|") {
            matched |= hashed_match(p, name);
        } else {
            matched |= glob(p, name);
        }
    }
    matched
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|').skip(2);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Some(Ok(salt)), Some(Ok(hash))) = (
        parts.next().map(|p| b64.decode(p)),
        parts.next().map(|p| b64.decode(p)),
    ) else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// OpenSSH patterns: `*` any run, `?` one character; case-insensitive.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}
