//! Keeping secrets out of output, logs and release records.
//!
//! [`Redactor`] replaces every known secret value in a text with [`MASK`]; the engine builds one from
//! the project's env files and passes every line it prints, logs or records through it. [`env_hash`] is
//! a stable digest of an environment, for release records: equal environments give equal hashes, and
//! the hash reveals no value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::{Error, dotenv};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Values shorter than this are never treated as secrets: masking every `1` or `on` in a text would
/// make output unreadable and protects nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// Masks known secret values in text.
///
/// **Architecture Invariant:** redaction is by value, not by key: once a value is known to be secret,
/// it is masked wherever it appears (in an error from the engine, a container's environment dump, a URL),
/// including its JSON-escaped form.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor that masks nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks `secret` from now on (ignored when shorter than [`MIN_SECRET_LEN`]).
    pub fn add(&mut self, secret: &str) {
        let mut forms = vec![secret.to_owned()];
        if let Ok(json) = serde_json::to_string(secret) {
            let escaped = &json[1..json.len() - 1];
            if escaped != secret {
                forms.push(escaped.to_owned());
            }
        }
        for form in forms {
            if form.chars().count() < MIN_SECRET_LEN
                || is_flag_word(&form)
                || self.secrets.contains(&form)
            {
                continue;
            }
            let pos = self.secrets.partition_point(|s| s.len() >= form.len());
            self.secrets.insert(pos, form);
        }
    }

    /// Adds the secrets among the values of an env file's text: values of keys that name a secret
    /// ([`is_secret_key`]), values that look generated ([`looks_generated`]), and passwords inside URLs
    /// (`scheme://user:PASSWORD@host`).
    pub fn add_env_text(&mut self, text: &str) {
        for (key, value) in dotenv::pairs(text) {
            if is_secret_key(&key) || looks_generated(&value) {
                self.add(&value);
            }
            if let Some(password) = url_password(&value) {
                self.add(password);
            }
        }
    }

    /// Adds every value of an env file's text, whatever its key: for files that hold only secrets
    /// (such as the output of `davit secrets init`).
    pub fn add_all_values(&mut self, text: &str) {
        for (_, value) in dotenv::pairs(text) {
            self.add(&value);
        }
    }

    /// A redactor for the secrets in these env files (see [`Redactor::add_env_text`]).
    pub fn from_env_files<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Self, Error> {
        let mut r = Self::new();
        for p in paths {
            let p = p.as_ref();
            let text = std::fs::read_to_string(p).map_err(|source| Error::EnvFileRead {
                path: p.to_owned(),
                source,
            })?;
            r.add_env_text(&text);
        }
        Ok(r)
    }

    /// A redactor for the values of an environment map (the resolved environment of a service),
    /// with the same rules as [`Redactor::add_env_text`].
    pub fn from_env_map<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = Self::new();
        for (key, value) in env {
            if is_secret_key(key) || looks_generated(value) {
                r.add(value);
            }
            if let Some(password) = url_password(value) {
                r.add(password);
            }
        }
        r
    }

    /// A redactor for what a compose project hands its containers: every value that comes from an
    /// `env_file` of the `selected` services (all when empty), as the container receives it and as
    /// the file writes it (see [`is_env_file_secret`]), plus the values of secret-looking variables
    /// and generated-looking values anywhere in their `environment` (see [`Redactor::from_env_map`]).
    /// Env files that cannot be read contribute nothing here (preflight reports them).
    pub fn from_project(project: &davit_compose::Project, selected: &[String]) -> Self {
        let mut r = Self::new();
        let chosen = project
            .services
            .iter()
            .filter(|s| selected.is_empty() || selected.contains(&s.name));
        for service in chosen {
            let env: Vec<(&str, &str)> = service
                .environment
                .iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v)))
                .collect();
            r.extend(&Self::from_env_map(env.iter().copied()));
            for file in &service.env_files {
                let Ok(text) = std::fs::read_to_string(&file.path) else {
                    continue;
                };
                for (key, raw) in dotenv::pairs(&text) {
                    let resolved = service.environment.get(&key).and_then(Option::as_deref);
                    for value in std::iter::once(raw.as_str()).chain(resolved) {
                        if is_env_file_secret(&key, value) {
                            r.add(value);
                        }
                    }
                }
            }
        }
        r
    }

    /// Also masks the values of `env` that [`Redactor::from_env_map`] would, and every value of a
    /// key in `secret_keys` that [`is_env_file_secret`] accepts (a release's environment, whose keys
    /// came from env files).
    pub fn add_env_map<'a>(
        &mut self,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        secret_keys: &std::collections::BTreeSet<String>,
    ) {
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        self.extend(&Self::from_env_map(env.iter().copied()));
        for (k, v) in env {
            if secret_keys.contains(k) && is_env_file_secret(k, v) {
                self.add(v);
            }
        }
    }

    /// Also masks everything `other` masks.
    pub fn extend(&mut self, other: &Redactor) {
        for s in &other.secrets {
            self.add(s);
        }
    }

    /// How many distinct secret forms are masked.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// True when nothing is masked.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`]. Borrowed when there was nothing to mask.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Whole UTF-8 secrets replaced by ASCII in UTF-8 text leave valid UTF-8.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).expect("UTF-8 in, UTF-8 out")),
        }
    }

    /// [`Redactor::redact`] over bytes (log output that may not be UTF-8).
    pub fn redact_bytes<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let contains = |s: &String| text.windows(s.len()).any(|w| w == s.as_bytes());
        if self.secrets.is_empty() || !self.secrets.iter().any(contains) {
            return Cow::Borrowed(text);
        }
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        'outer: while i < text.len() {
            for s in &self.secrets {
                if text[i..].starts_with(s.as_bytes()) {
                    out.extend_from_slice(MASK.as_bytes());
                    i += s.len();
                    continue 'outer;
                }
            }
            out.push(text[i]);
            i += 1;
        }
        Cow::Owned(out)
    }

    /// Masks secrets in every string (keys included) of a JSON value, in place.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

/// Words that switch settings rather than guard anything; never masked.
fn is_flag_word(value: &str) -> bool {
    ["true", "false", "null", "none", "enabled", "disabled"]
        .iter()
        .any(|w| value.eq_ignore_ascii_case(w))
}

/// An [`std::io::Write`] that masks secrets before they reach `inner`. It redacts whole lines (a secret
/// split across two `write` calls is still masked); a partial last line is redacted and written on
/// `flush` and on drop. Use it under a log subscriber:
/// `fmt().with_writer(move || RedactingWriter::new(redactor.clone(), std::io::stderr()))`.
pub struct RedactingWriter<W: std::io::Write> {
    redactor: std::sync::Arc<Redactor>,
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> RedactingWriter<W> {
    /// Wraps `inner`.
    pub fn new(redactor: std::sync::Arc<Redactor>, inner: W) -> Self {
        RedactingWriter {
            redactor,
            inner,
            pending: Vec::new(),
        }
    }

    fn write_pending(&mut self, all: bool) -> std::io::Result<()> {
        let end = if all {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if end > 0 {
            let chunk: Vec<u8> = self.pending.drain(..end).collect();
            self.inner.write_all(&self.redactor.redact_bytes(&chunk))?;
        }
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.write_pending(false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_pending(true)?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// Whether a value read from an `env_file` is masked. Env files are where secrets live, so their
/// values are secrets by default; what stays readable is what cannot be one and would make every line
/// unreadable if masked: numbers (`8080`), switch words (`true`), and values under 8 characters unless
/// the key names a secret ([`is_secret_key`]).
pub fn is_env_file_secret(key: &str, value: &str) -> bool {
    if value.chars().count() < MIN_SECRET_LEN || is_flag_word(value) {
        return false;
    }
    if is_secret_key(key) || looks_generated(value) {
        return true;
    }
    value.chars().count() >= 8 && !value.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// True for variable names that conventionally hold secrets: `*PASSWORD*`, `*PASSWD*`, `*SECRET*`,
/// `*TOKEN*`, `*PRIVATE*`, `*CREDENTIAL*`, `*SALT*`, `*DSN*`, `*SIGNING*`, `*APIKEY*`, `*ACCESS_KEY*`,
/// `KEY`, `*_KEY`, `KEY_*`, `*_KEY_*`, `PASS`, `*_PASS`, `AUTH`, `*_AUTH` (case-insensitive).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    const PARTS: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "PRIVATE",
        "CREDENTIAL",
        "SALT",
        "DSN",
        "SIGNING",
        "APIKEY",
        "ACCESS_KEY",
    ];
    PARTS.iter().any(|p| k.contains(p))
        || k == "KEY"
        || k == "PASS"
        || k.ends_with("_KEY")
        || k.starts_with("KEY_")
        || k.ends_with("_PASS")
        || k.contains("_KEY_")
        || k == "AUTH"
        || k.ends_with("_AUTH")
}

/// True for values that look machine-generated: at least 20 characters without whitespace, mixing
/// letters and digits (a hex or base64 token, an API key). Versions, hostnames and words do not match.
pub fn looks_generated(value: &str) -> bool {
    value.len() >= 20
        && !value.chars().any(char::is_whitespace)
        && value.chars().any(|c| c.is_ascii_digit())
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && !value.contains("://")
        && !value.contains('/')
}

/// The password of `scheme://user:password@host…`, if the value is such a URL.
fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// A stable digest of an environment (`sha256:` and 64 hex characters) for release records: the same
/// variables and values in any order give the same hash; any change of a name or value changes it; it
/// reveals no value. Keys and values are length-prefixed, so `A=BC` and `AB=C` differ.
pub fn env_hash<K: AsRef<str>, V: AsRef<str>>(env: impl IntoIterator<Item = (K, V)>) -> String {
    let sorted: BTreeMap<String, String> = env
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect();
    let mut h = Sha256::new();
    h.update(b"davit-env-v1\0");
    for (k, v) in &sorted {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    format!("sha256:{}", crate::secrets::to_hex(&h.finalize()))
}

#[cfg(test)]
mod tests;
