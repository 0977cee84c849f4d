//! Preflight: refuse bad input before any host is touched.
//!
//! Every check is a pure function over plain inputs (service names, image strings, the raw text of a
//! compose file and a variable lookup, env file paths), so the engine can run them on whatever model it
//! holds, and they return every [`Problem`] at once rather than the first. [`Problems`] is the error the
//! CLI turns into exit 2.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One reason to refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// `--service NAME` names no service of the project.
    UnknownService { name: String, valid: Vec<String> },
    /// A variable is used with no value and no default.
    UnsetVariable {
        name: String,
        file: Option<PathBuf>,
        line: usize,
        column: usize,
    },
    /// An `env_file` that must exist does not.
    MissingEnvFile {
        service: Option<String>,
        path: PathBuf,
    },
    /// An image reference that cannot be what the author meant.
    BadImage {
        service: String,
        image: String,
        reason: String,
        hint: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownService { name, valid } => {
                write!(f, "unknown service `{name}`: ")?;
                if valid.is_empty() {
                    return write!(f, "the project has no services");
                }
                if let Some(close) = closest(name, valid) {
                    write!(f, "did you mean `{close}`? ")?;
                }
                write!(f, "valid services: {}", valid.join(", "))
            }
            Problem::UnsetVariable {
                name,
                file,
                line,
                column,
            } => {
                let at = match file {
                    Some(p) => format!("{}:{line}:{column}", p.display()),
                    None => format!("{line}:{column}"),
                };
                write!(
                    f,
                    "{at}: variable `{name}` is not set and has no default: set it (in the environment, an --env-file, \
                     or the environment's `variables`), or give a default with ${{{name}:-value}}"
                )
            }
            Problem::MissingEnvFile { service, path } => {
                write!(f, "env_file {} ", path.display())?;
                if let Some(s) = service {
                    write!(f, "of service `{s}` ")?;
                }
                write!(
                    f,
                    "does not exist: create it (e.g. `davit secrets init --template {}.example --out {}`) \
                     or mark it `required: false`",
                    path.display(),
                    path.display()
                )
            }
            Problem::BadImage {
                service,
                image,
                reason,
                hint,
            } => {
                write!(f, "service `{service}`: image `{image}` {reason}")?;
                if !hint.is_empty() {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
        }
    }
}

/// Every problem preflight found; the error that refuses a command (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "refused before touching any host: {one}"),
            many => {
                write!(
                    f,
                    "refused before touching any host ({} problems):",
                    many.len()
                )?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Problems {
    /// `Ok(())` when there is nothing to refuse.
    pub fn into_result(problems: Vec<Problem>) -> Result<(), Problems> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }
}

/// `--service` names that are not services of the project (`valid`, listed in the problem sorted).
pub fn check_services<S: AsRef<str>, V: AsRef<str>>(selected: &[S], valid: &[V]) -> Vec<Problem> {
    let mut names: Vec<String> = valid.iter().map(|v| v.as_ref().to_owned()).collect();
    names.sort();
    names.dedup();
    selected
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !names.iter().any(|n| n == s))
        .map(|s| Problem::UnknownService {
            name: s.to_owned(),
            valid: names.clone(),
        })
        .collect()
}

/// The valid name closest to `name` (edit distance at most a third of its length, at least 1).
fn closest<'a>(name: &str, valid: &'a [String]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|v| (distance(name, v), v.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, v)| v)
}

/// Edit distance counting an adjacent transposition as one edit (`wbe` is one edit from `web`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The problem with an (interpolated) image reference of `service`, if any.
pub fn check_image(service: &str, image: &str) -> Option<Problem> {
    image_problem(image).map(|(reason, hint)| Problem::BadImage {
        service: service.to_owned(),
        image: image.to_owned(),
        reason,
        hint,
    })
}

/// Why an image reference is odd, and a hint, following the distribution reference grammar
/// (`[domain/]path[:tag][@digest]`) plus the mistakes interpolation makes: an empty variable leaves a
/// leading `/`, a trailing `:` or an empty name; a registry variable that already holds the namespace
/// repeats the registry inside the path.
pub fn image_problem(image: &str) -> Option<(String, String)> {
    let p = |reason: &str, hint: &str| Some((reason.to_owned(), hint.to_owned()));
    let unset = "a variable in `image:` is probably unset or empty";
    if image.is_empty() {
        return p("is empty", unset);
    }
    if image.chars().any(char::is_whitespace) {
        return p(
            "contains whitespace",
            "a variable's value probably has a space or a line end",
        );
    }
    if image.contains(['$', '{', '}']) {
        return p(
            "still contains a variable reference",
            "the variable was not interpolated",
        );
    }
    if image.starts_with('/') {
        return p(
            "starts with `/`",
            "the registry variable before it is empty, e.g. ${REGISTRY}/app with REGISTRY unset",
        );
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = match d.split_once(':') {
            Some(("sha256", hex)) => {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }
            Some((algo, hex)) => {
                !algo.is_empty() && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }
            None => false,
        };
        if d.is_empty() {
            return p("has an empty digest after `@`", unset);
        }
        if !ok {
            return p(
                "has a malformed digest",
                "a digest is sha256: followed by 64 lowercase hex characters",
            );
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        if tag.is_empty() {
            return p(
                "has an empty tag (it ends with `:`)",
                "the tag variable is empty, e.g. app:${VERSION} with VERSION unset",
            );
        }
        let first_ok = tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return p(
                &format!("has an invalid tag `{tag}`"),
                "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            );
        }
    }
    if name.is_empty() {
        return p("has no name", unset);
    }
    if name.ends_with('/') {
        return p("ends with `/`", "the repository variable after it is empty");
    }
    if name.contains("//") {
        return p("has an empty path component (`//`)", unset);
    }
    let components: Vec<&str> = name.split('/').collect();
    let has_domain = components.len() > 1 && is_domain(components[0]);
    let path = if has_domain {
        &components[1..]
    } else {
        &components[..]
    };
    if let Some(c) = path
        .iter()
        .find(|c| is_domain_like(c) || (has_domain && **c == components[0]))
    {
        return Some((
            format!("has the registry `{c}` inside its path"),
            "the registry prefix is repeated: a variable such as REGISTRY probably already holds it; remove it from one of the two"
                .to_owned(),
        ));
    }
    if let Some(c) = path
        .iter()
        .find(|c| c.chars().any(|ch| ch.is_ascii_uppercase()))
    {
        return Some((
            format!("has uppercase letters in the repository (`{c}`)"),
            format!(
                "repository names must be lowercase: `{}`",
                c.to_ascii_lowercase()
            ),
        ));
    }
    if let Some(c) = path.iter().find(|c| !is_path_component(c)) {
        return Some((
            format!("has an invalid path component `{c}`"),
            "components are lowercase letters and digits separated by `.`, `_`, `__` or `-`"
                .to_owned(),
        ));
    }
    if name.len() > 255 {
        return p("has a name longer than 255 characters", "");
    }
    None
}

/// How Docker decides the first component is a registry: it has a `.` or a `:`, or is `localhost`.
fn is_domain(c: &str) -> bool {
    c.contains(['.', ':']) || c == "localhost" || c.chars().any(|ch| ch.is_ascii_uppercase())
}

/// A path component that is certainly a registry: `localhost`, an IPv4 address, a `host:port`, or a
/// host name under a well-known registry domain or top-level domain.
fn is_domain_like(c: &str) -> bool {
    if c == "localhost" || c.contains(':') {
        return true;
    }
    let labels: Vec<&str> = c.split('.').collect();
    if labels.len() == 4
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return true;
    }
    const TLDS: &[&str] = &["io", "com", "net", "org", "dev", "cloud"];
    labels.len() >= 2 && labels.last().is_some_and(|t| TLDS.contains(t))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A variable reference found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    /// The variable's name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters) of the `$`.
    pub column: usize,
    /// Whether the reference gives a default or alternative (`${X:-d}`, `${X-d}`, `${X:+a}`, `${X+a}`),
    /// so an unset `X` is fine.
    pub has_default: bool,
    /// Whether the reference demands a non-empty value (`${X:?msg}`).
    pub requires_non_empty: bool,
}

/// Every variable reference in a compose file's raw text, as Compose interpolates them: `$NAME`,
/// `${NAME}` and the `${NAME:-default}` family (defaults are scanned too, as Compose interpolates
/// them), skipping `$$` (a literal `$`) and YAML comment lines.
pub fn variable_refs(text: &str) -> Vec<VarRef> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        scan(line, idx + 1, 0, &mut out);
    }
    out
}

fn scan(s: &str, line: usize, col_base: usize, out: &mut Vec<VarRef>) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if c != '$' {
            i += 1;
            continue;
        }
        let column = col_base + i + 1;
        match chars.get(i + 1).map(|x| x.1) {
            Some('$') => i += 2,
            Some('{') => {
                // Find the matching brace.
                let mut depth = 0;
                let mut end = None;
                for (j, (_, ch)) in chars.iter().enumerate().skip(i + 1) {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    i += 2;
                    continue;
                };
                let inner: String = chars[i + 2..end].iter().map(|x| x.1).collect();
                let name_len = inner
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(inner.len());
                let name = &inner[..name_len];
                let op = &inner[name_len..];
                if !name.is_empty() {
                    let has_default = [":-", "-", ":+", "+"].iter().any(|o| op.starts_with(o));
                    let requires_non_empty = op.starts_with(":?");
                    out.push(VarRef {
                        name: name.to_owned(),
                        line,
                        column,
                        has_default,
                        requires_non_empty,
                    });
                    if has_default {
                        let skip = if op.starts_with(':') { 2 } else { 1 };
                        let nested_col = col_base + i + 2 + name_len + skip;
                        scan(&op[skip..], line, nested_col, out);
                    }
                }
                i = end + 1;
            }
            Some(ch) if ch.is_ascii_alphabetic() || ch == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == '_') {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().map(|x| x.1).collect();
                out.push(VarRef {
                    name,
                    line,
                    column,
                    has_default: false,
                    requires_non_empty: false,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
}

/// Variables used in a compose file's raw `text` with no value (`lookup` gives `None`) and no default;
/// `${X:?…}` also counts when `X` is set but empty.
pub fn check_variables<'v>(
    file: Option<&Path>,
    text: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Vec<Problem> {
    let mut seen = std::collections::HashSet::new();
    variable_refs(text)
        .into_iter()
        .filter(|r| !r.has_default)
        .filter(|r| match lookup(&r.name) {
            None => true,
            Some(v) => r.requires_non_empty && v.is_empty(),
        })
        .filter(|r| seen.insert(r.name.clone()))
        .map(|r| Problem::UnsetVariable {
            name: r.name,
            file: file.map(Path::to_owned),
            line: r.line,
            column: r.column,
        })
        .collect()
}

/// An `env_file` entry of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileRef {
    /// The service that uses it, if known.
    pub service: Option<String>,
    /// The path as written (relative to `base`) or absolute.
    pub path: PathBuf,
    /// False for `required: false` entries, which may be missing.
    pub required: bool,
}

/// Required env files that do not exist (relative paths are taken from `base`, the project directory).
pub fn check_env_files(files: &[EnvFileRef], base: &Path) -> Vec<Problem> {
    files
        .iter()
        .filter(|f| f.required)
        .filter(|f| !base.join(&f.path).is_file())
        .map(|f| Problem::MissingEnvFile {
            service: f.service.clone(),
            path: f.path.clone(),
        })
        .collect()
}

/// Every variable used in these compose files with no value and no default (`lookup` is what
/// interpolation sees: the process environment over `.env` / `--env-file`, plus the chosen
/// environment's `variables`). Files that cannot be read are skipped: loading reports them.
pub fn check_compose_files<'v>(
    files: &[PathBuf],
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(f) {
            for p in check_variables(Some(f), &text, &lookup) {
                let dup = matches!(&p, Problem::UnsetVariable { name, .. }
                    if problems.iter().any(|q| matches!(q, Problem::UnsetVariable { name: n, .. } if n == name)));
                if !dup {
                    problems.push(p);
                }
            }
        }
    }
    problems
}

/// The preflight of a loaded compose project for the services `selected` (all when empty): unknown
/// service names, odd image references and missing required env files. Pure: it reads nothing but
/// the file system's answer to "does this env file exist".
///
/// **API Boundary:** the engine calls this (and [`check_compose_files`]) before it connects to any
/// host; a non-empty result is a usage error (exit 2).
pub fn preflight(project: &davit_compose::Project, selected: &[String]) -> Result<(), Problems> {
    let names: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
    let mut problems = check_services(selected, &names);
    let chosen = project
        .services
        .iter()
        .filter(|s| selected.is_empty() || selected.contains(&s.name));
    for service in chosen {
        problems.extend(
            service
                .image
                .as_deref()
                .and_then(|image| check_image(&service.name, image)),
        );
        let files: Vec<EnvFileRef> = service
            .env_files
            .iter()
            .map(|f| EnvFileRef {
                service: Some(service.name.clone()),
                path: f.path.clone(),
                required: f.required,
            })
            .collect();
        problems.extend(check_env_files(&files, &project.working_dir));
    }
    Problems::into_result(problems)
}

#[cfg(test)]
mod tests;
