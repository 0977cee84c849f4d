//! The basics of `~/.ssh/config`: for a host alias, `HostName`, `User`, `Port` and `IdentityFile`.
//!
//! Like OpenSSH, the first value obtained for a keyword wins (`IdentityFile` accumulates), `Host` lines
//! take patterns with `*`, `?` and `!negation`. `Match` blocks are skipped (never applied).

use std::path::{Path, PathBuf};

/// What the config says about one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// `HostName`: the real address to connect to.
    pub host_name: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile`, in order, with `~` expanded.
    pub identity_files: Vec<PathBuf>,
}

/// Reads the config at `path` for `alias`; a missing or unreadable file gives the empty config.
pub fn lookup(path: &Path, alias: &str) -> HostConfig {
    std::fs::read_to_string(path)
        .map(|t| lookup_text(&t, alias))
        .unwrap_or_default()
}

/// [`lookup`] on the file's text.
pub fn lookup_text(text: &str, alias: &str) -> HostConfig {
    let mut out = HostConfig::default();
    let mut active = true; // lines before the first Host apply to every host
    for raw in text.lines() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (key, value) = match l.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k,
                v.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
                    .trim(),
            ),
            None => continue,
        };
        let value = value.trim_matches('"');
        match key.to_ascii_lowercase().as_str() {
            "host" => active = host_matches(value, alias),
            "match" => active = false,
            _ if !active => {}
            "hostname" if out.host_name.is_none() => {
                out.host_name = Some(value.replace("%h", alias))
            }
            "user" if out.user.is_none() => out.user = Some(value.to_string()),
            "port" if out.port.is_none() => out.port = value.parse().ok(),
            "identityfile" => out
                .identity_files
                .push(expand_tilde(&value.replace("%h", alias))),
            _ => {}
        }
    }
    out
}

fn host_matches(patterns: &str, alias: &str) -> bool {
    let mut matched = false;
    for p in patterns.split_whitespace() {
        if let Some(neg) = p.strip_prefix('!') {
            if crate::known_hosts::glob(neg, alias) {
                return false;
            }
        } else if crate::known_hosts::glob(p, alias) {
            matched = true;
        }
    }
    matched
}

/// `~/x` to `$HOME/x`.
pub fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

/// `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
