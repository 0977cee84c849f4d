//! `davit secrets init`: a `.env` template copied with every empty `KEY=` filled by a new secret.
//!
//! **Invariants:** a secret comes from the OS CSPRNG ([`getrandom`]), 256 bits written as 64 lowercase
//! hex characters (safe unquoted in URLs, shells, YAML and dotenv); set values, comments, blank lines,
//! quoting, line ends and order are kept byte for byte; the file is written with mode 0600 through a
//! temporary file in the same directory, fsynced, then renamed over the target (and the directory
//! fsynced), so a crash leaves the old file or the new one, never half of one; a second run changes
//! nothing; no secret value ever reaches an error, a log line or the report.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::dotenv::{self, Item};

/// Bytes of randomness in a generated secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// A new secret: [`SECRET_BYTES`] bytes from the OS CSPRNG as lowercase hex (64 characters).
pub fn generate_secret() -> Result<String, Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(to_hex(&bytes))
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// What [`render`] produced: the new text and, by key name only, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The new file content.
    pub text: String,
    /// Keys that received a new secret.
    pub generated: Vec<String>,
    /// Keys empty in the template whose value was kept from the existing output file.
    pub kept: Vec<String>,
    /// Keys added to an existing output file because the template has them and the file did not.
    pub appended: Vec<String>,
}

/// The pure part of `secrets init`: the output for `template`, given the current content of the output
/// file (if any) and a source of new secrets.
///
/// Without an existing file, the output is the template with each empty value filled (a key that
/// appears twice gets the same secret). With one, the existing file is the base, so values the user set
/// or edited there are kept: its empty keys that the template also leaves empty are filled, and keys of
/// the template that it lacks are appended (with the comment lines right above them in the template).
pub fn render(
    template: &str,
    existing: Option<&str>,
    mut new_secret: impl FnMut() -> Result<String, Error>,
) -> Result<Rendered, Error> {
    let tmpl = dotenv::parse(template);
    // The keys the template wants generated: those whose last assignment is empty.
    let mut last_empty: HashMap<&str, bool> = HashMap::new();
    for a in tmpl.iter().filter_map(Item::assign) {
        last_empty.insert(&a.key, a.is_empty());
    }
    let mut secrets: HashMap<String, String> = HashMap::new();
    let mut generated = Vec::new();
    let mut kept = Vec::new();
    let mut fill = |key: &str, generated: &mut Vec<String>| -> Result<String, Error> {
        if let Some(s) = secrets.get(key) {
            return Ok(s.clone());
        }
        let s = new_secret()?;
        secrets.insert(key.to_owned(), s.clone());
        generated.push(key.to_owned());
        Ok(s)
    };

    let Some(existing) = existing else {
        let mut text = String::with_capacity(template.len() + 64 * last_empty.len());
        for item in &tmpl {
            match item.assign() {
                Some(a) if a.is_empty() => {
                    let secret = fill(&a.key, &mut generated)?;
                    text.push_str(&item.filled(&secret).expect("empty assignment"));
                }
                _ => text.push_str(&item.text),
            }
        }
        return Ok(Rendered {
            text,
            generated,
            kept,
            appended: Vec::new(),
        });
    };

    let current = dotenv::parse(existing);
    let present: HashSet<&str> = current
        .iter()
        .filter_map(Item::assign)
        .map(|a| a.key.as_str())
        .collect();
    let mut text = String::with_capacity(existing.len());
    let mut kept_set = BTreeSet::new();
    for item in &current {
        match item.assign() {
            Some(a) if a.is_empty() && last_empty.get(a.key.as_str()) == Some(&true) => {
                let secret = fill(&a.key, &mut generated)?;
                text.push_str(&item.filled(&secret).expect("empty assignment"));
            }
            Some(a) => {
                if last_empty.get(a.key.as_str()) == Some(&true)
                    && !a.is_empty()
                    && kept_set.insert(a.key.clone())
                {
                    kept.push(a.key.clone());
                }
                text.push_str(&item.text);
            }
            None => text.push_str(&item.text),
        }
    }

    let eol = dotenv::line_end(existing);
    let mut appended = Vec::new();
    let mut seen = HashSet::new();
    for (idx, item) in tmpl.iter().enumerate() {
        let Some(a) = item.assign() else { continue };
        if present.contains(a.key.as_str()) || !seen.insert(a.key.as_str()) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(eol);
        }
        // The comment lines right above the key in the template travel with it.
        let mut first = idx;
        while first > 0
            && tmpl[first - 1].assign().is_none()
            && tmpl[first - 1].text.trim_start().starts_with('#')
        {
            first -= 1;
        }
        for c in &tmpl[first..idx] {
            text.push_str(&with_eol(&c.text, eol));
        }
        let line = if a.is_empty() {
            let secret = fill(&a.key, &mut generated)?;
            item.filled(&secret).expect("empty assignment")
        } else {
            item.text.clone()
        };
        text.push_str(&with_eol(&line, eol));
        appended.push(a.key.clone());
    }
    Ok(Rendered {
        text,
        generated,
        kept,
        appended,
    })
}

/// `line` ending with `eol` (replacing its own line end, adding one if it has none).
fn with_eol(line: &str, eol: &str) -> String {
    let body = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    format!("{body}{eol}")
}

/// What [`init`] did, by key name only (never a value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InitReport {
    /// The output file.
    pub out: PathBuf,
    /// Keys that received a new secret.
    pub generated: Vec<String>,
    /// Keys whose existing value was kept.
    pub kept: Vec<String>,
    /// Keys appended to an existing output file.
    pub appended: Vec<String>,
    /// Whether the file was (re)written. False when it was already up to date.
    pub written: bool,
    /// Whether an up-to-date file had looser permissions that were tightened to 0600.
    pub mode_fixed: bool,
}

/// `davit secrets init --template TEMPLATE --out OUT`.
///
/// Refuses (as usage errors) a missing or unreadable template, an `OUT` that is a symbolic link or not
/// a regular file, a missing directory for `OUT`, and `OUT` being the template itself.
pub fn init(template: &Path, out: &Path) -> Result<InitReport, Error> {
    let template_bytes = fs::read(template).map_err(|source| Error::TemplateRead {
        path: template.to_owned(),
        source,
    })?;
    let template_text = utf8(template, template_bytes)?;

    let existing = match fs::symlink_metadata(out) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::OutNotRegular {
                path: out.to_owned(),
                what: "a symbolic link",
            });
        }
        Ok(meta) if !meta.is_file() => {
            return Err(Error::OutNotRegular {
                path: out.to_owned(),
                what: "not a regular file",
            });
        }
        Ok(_) => {
            if same_file(template, out) {
                return Err(Error::SameFile {
                    path: out.to_owned(),
                });
            }
            let bytes = fs::read(out).map_err(|source| Error::OutRead {
                path: out.to_owned(),
                source,
            })?;
            Some(utf8(out, bytes)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::OutRead {
                path: out.to_owned(),
                source,
            });
        }
    };
    let dir = parent_dir(out);
    if !dir.is_dir() {
        return Err(Error::OutDirMissing {
            path: out.to_owned(),
            dir,
        });
    }

    let rendered = render(&template_text, existing.as_deref(), generate_secret)?;
    let mut report = InitReport {
        out: out.to_owned(),
        generated: rendered.generated,
        kept: rendered.kept,
        appended: rendered.appended,
        written: false,
        mode_fixed: false,
    };
    if existing.as_deref() == Some(rendered.text.as_str()) {
        let meta = fs::metadata(out).map_err(|source| Error::OutRead {
            path: out.to_owned(),
            source,
        })?;
        if meta.permissions().mode() & 0o7777 != 0o600 {
            fs::set_permissions(out, fs::Permissions::from_mode(0o600)).map_err(|source| {
                Error::Write {
                    path: out.to_owned(),
                    source,
                }
            })?;
            report.mode_fixed = true;
        }
        return Ok(report);
    }
    write_atomic(out, rendered.text.as_bytes()).map_err(|source| Error::Write {
        path: out.to_owned(),
        source,
    })?;
    report.written = true;
    Ok(report)
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Error::NotUtf8 {
            path: path.to_owned(),
            line,
        }
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` with mode 0600: a temporary file in the same directory (created 0600),
/// fsynced, renamed over `path`, then the directory fsynced so the rename itself is durable. The rename
/// replaces a link at `path` rather than following it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;
