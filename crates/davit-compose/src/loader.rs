//! Entry point: options, the file loader trait, and the load pipeline.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics};
use crate::merge::merge_into;
use crate::yaml::{self, Node, Pos, Value};

/// Reads files for the loader. Implement it to feed files from memory (tests) or another source.
pub trait Loader {
    /// The contents of the file at `path` (absolute).
    ///
    /// # Errors
    /// The file cannot be read (missing, not UTF-8, ...).
    fn read(&self, path: &Path) -> std::io::Result<String>;

    /// Whether `path` is an existing file.
    fn is_file(&self, path: &Path) -> bool {
        self.read(path).is_ok()
    }
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// What to load, as the `docker compose` global options say it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The current directory (absolute): `-f` paths, `--env-file` and `--project-directory` are
    /// relative to it, and the default files are looked up in it.
    pub working_dir: PathBuf,
    /// `-f FILE`... (empty: `COMPOSE_FILE`, else `compose.yaml` & co. plus its override file).
    pub files: Vec<PathBuf>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `-p NAME`.
    pub project_name: Option<String>,
    /// `--env-file FILE`... (empty: `.env` in the project directory, if any).
    pub env_files: Vec<PathBuf>,
    /// `--profile NAME`... (empty: `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// The process environment.
    pub environment: BTreeMap<String, String>,
    /// `false` for `--no-interpolate`.
    pub interpolate: bool,
}

impl LoadOptions {
    /// Options for `working_dir` with interpolation on and nothing else set.
    #[must_use]
    pub fn new(working_dir: impl Into<PathBuf>) -> Self {
        Self {
            working_dir: working_dir.into(),
            interpolate: true,
            ..Self::default()
        }
    }

    /// Sets the process environment.
    #[must_use]
    pub fn with_environment(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.environment = vars.into_iter().collect();
        self
    }

    /// Adds a `-f` file.
    #[must_use]
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.files.push(file.into());
        self
    }
}

/// Lexically normalises a path (`.` and `..` removed), joining it to `base` when relative.
pub(crate) fn absolutize(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// State shared by one load.
pub(crate) struct Ctx<'a> {
    pub fs: &'a dyn Loader,
    pub files: Vec<PathBuf>,
    pub diags: Diagnostics,
    pub interpolate: bool,
    pub home: Option<String>,
}

impl Ctx<'_> {
    pub fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<&str>) {
        let file = self
            .files
            .get(pos.file as usize)
            .cloned()
            .unwrap_or_default();
        let mut d = Diagnostic::error(file, pos.line as usize, pos.col as usize, message);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.diags.push(d);
    }

    pub fn warn(&mut self, pos: Pos, message: impl Into<String>, hint: &str) {
        let file = self
            .files
            .get(pos.file as usize)
            .cloned()
            .unwrap_or_default();
        let mut d =
            Diagnostic::error(file, pos.line as usize, pos.col as usize, message).with_hint(hint);
        d.severity = crate::Severity::Warning;
        self.diags.push(d);
    }

    /// Parses the env file `path` (its text `src`); a syntax error is reported at its line and
    /// gives no variables.
    pub fn parse_env_file(
        &mut self,
        path: &Path,
        src: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> indexmap::IndexMap<String, String> {
        crate::dotenv::parse_dotenv(src, lookup).unwrap_or_else(|e| {
            let id = self.file_id(path);
            let pos = Pos {
                file: id,
                line: e.line as u32,
                col: 1,
            };
            self.error(pos, e.message, Some("fix the env file syntax"));
            indexmap::IndexMap::new()
        })
    }

    pub fn file_id(&mut self, p: &Path) -> u32 {
        if let Some(i) = self.files.iter().position(|f| f == p) {
            return i as u32;
        }
        self.files.push(p.to_path_buf());
        (self.files.len() - 1) as u32
    }

    pub fn failed(&self) -> bool {
        self.diags.has_errors()
    }
}

/// The environment of one (sub-)project: variables for interpolation.
pub(crate) type Env = BTreeMap<String, String>;

const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The compose files a load with `opts` reads, as Compose finds them: `-f`, else `COMPOSE_FILE`, else
/// the first default file (and its override) in the project directory or the nearest parent that
/// has one. Empty when there is none. (Files pulled in by `include:` and `extends:` are not listed.)
pub fn compose_files(opts: &LoadOptions, fs: &dyn Loader) -> Vec<PathBuf> {
    let wd = absolutize(Path::new("/"), &opts.working_dir);
    let os_env = &opts.environment;
    let mut files: Vec<PathBuf> = opts.files.iter().map(|f| absolutize(&wd, f)).collect();
    if !files.is_empty() {
        return files;
    }
    if let Some(cf) = os_env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = os_env
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        return cf
            .split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| absolutize(&wd, Path::new(f)))
            .collect();
    }
    let mut dir = opts
        .project_directory
        .as_ref()
        .map_or_else(|| wd.clone(), |d| absolutize(&wd, d));
    loop {
        let first = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| fs.is_file(p));
        if let Some(f) = first(&DEFAULT_FILES) {
            files.push(f);
            files.extend(first(&OVERRIDE_FILES));
            return files;
        }
        if !dir.pop() {
            return files;
        }
    }
}

/// Loads a compose project.
///
/// # Errors
/// Every problem found in the input, each at `file:line:column` where it applies.
pub fn load(opts: &LoadOptions, fs: &dyn Loader) -> Result<crate::Project, Diagnostics> {
    load_inner(opts, fs).map_err(|mut d| {
        d.0.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        d
    })
}

fn load_inner(opts: &LoadOptions, fs: &dyn Loader) -> Result<crate::Project, Diagnostics> {
    let mut ctx = Ctx {
        fs,
        files: Vec::new(),
        diags: Diagnostics::default(),
        interpolate: opts.interpolate,
        home: opts.environment.get("HOME").cloned(),
    };
    let wd = absolutize(Path::new("/"), &opts.working_dir);
    let os_env = &opts.environment;

    // Files.
    let files = compose_files(opts, fs);
    let project_dir_opt = opts.project_directory.as_ref().map(|d| absolutize(&wd, d));
    if files.is_empty() {
        ctx.diags.push(
            Diagnostic::error("", 0, 0, "no configuration file provided: not found")
                .with_hint("create compose.yaml or name a file with -f"),
        );
        return Err(ctx.diags);
    }
    let project_dir = project_dir_opt.unwrap_or_else(|| {
        files[0]
            .parent()
            .map_or_else(|| wd.clone(), Path::to_path_buf)
    });

    // Environment: the process environment wins over .env / --env-file.
    let mut env: Env = os_env.clone();
    let env_files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(project_dir.join(".env"), false)]
    } else {
        opts.env_files
            .iter()
            .map(|f| (absolutize(&wd, f), true))
            .collect()
    };
    let mut dot: Env = Env::new();
    for (f, required) in env_files {
        match fs.read(&f) {
            Ok(src) => {
                let lookup = |k: &str| os_env.get(k).cloned().or_else(|| dot.get(k).cloned());
                let vars = ctx.parse_env_file(&f, &src, &lookup);
                dot.extend(vars);
            }
            Err(_) if !required => {}
            Err(e) => {
                ctx.diags.push(
                    Diagnostic::error(&f, 0, 0, format!("couldn't read env file: {e}"))
                        .with_hint("check the --env-file path"),
                );
            }
        }
    }
    for (k, v) in dot {
        env.entry(k).or_insert(v);
    }
    if ctx.failed() {
        return Err(ctx.diags);
    }

    // The project name is known before interpolation: `${COMPOSE_PROJECT_NAME}` expands to it.
    if !env.contains_key("COMPOSE_PROJECT_NAME") || opts.project_name.is_some() {
        let mut name_node: Option<Node> = None;
        for f in &files {
            if let Ok(src) = fs.read(f)
                && let Ok(Some(doc)) = yaml::parse(&src, u32::MAX)
                && let Some(n) = doc.get("name")
            {
                let mut n = n.clone();
                if let Some(x) = n.as_str() {
                    let lookup = |k: &str| env.get(k).cloned();
                    if let Ok(v) = crate::interp::interpolate(x, &lookup) {
                        n.value = Value::Str(v);
                    }
                }
                name_node = Some(n);
            }
        }
        let mut probe = Node::new(Value::Map(yaml::Map::new()));
        if let (Some(n), Some(m)) = (name_node, probe.as_map_mut()) {
            m.insert("name".into(), (Pos::default(), n));
        }
        let mut scratch = Ctx {
            fs,
            files: Vec::new(),
            diags: Diagnostics::default(),
            interpolate: false,
            home: None,
        };
        let name = crate::normalize::project_name(
            opts.project_name.as_deref(),
            &env,
            &probe,
            &project_dir,
            &mut scratch,
        );
        env.insert("COMPOSE_PROJECT_NAME".into(), name);
    }

    // Load and merge every file.
    let mut model: Option<Node> = None;
    for f in &files {
        let mut stack = Vec::new();
        if let Some(node) = load_file(&mut ctx, f, &project_dir, &env, &mut stack) {
            match &mut model {
                None => model = Some(node),
                Some(m) => merge_into(m, node, &mut ctx),
            }
        }
    }
    let Some(model) = model else {
        return Err(ctx.diags);
    };

    let profiles: Vec<String> = if opts.profiles.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        opts.profiles.clone()
    };
    let name = crate::normalize::project_name(
        opts.project_name.as_deref(),
        &env,
        &model,
        &project_dir,
        &mut ctx,
    );
    // The `x-davit` parts keep their positions for the model's own checks (finalize drops them).
    let davit_parts = davit_subtrees(&model);
    let json = if opts.interpolate {
        crate::normalize::finalize(model, &name, &profiles, &project_dir, &env, &mut ctx)
    } else {
        Some(crate::normalize::finalize_raw(model, &name, &profiles))
    };
    if ctx.failed() {
        return Err(ctx.diags);
    }
    let Some(json) = json else {
        return Err(ctx.diags);
    };
    let warnings: Vec<Diagnostic> = ctx
        .diags
        .0
        .into_iter()
        .filter(|d| d.severity == crate::Severity::Warning)
        .collect();
    let mut p = crate::model::build(json, project_dir, opts.interpolate).map_err(|mut diags| {
        place_davit_diagnostics(&mut diags, &davit_parts, &ctx.files);
        diags
    })?;
    p.warnings = warnings;
    Ok(p)
}

/// The top-level `x-davit` and every service's `x-davit`, in a tree of the same shape.
fn davit_subtrees(model: &Node) -> Node {
    let mut top = yaml::Map::new();
    if let Some(m) = model.as_map() {
        if let Some(x) = m.get("x-davit") {
            top.insert("x-davit".into(), x.clone());
        }
        if let Some((spos, services)) = m.get("services")
            && let Some(sm) = services.as_map()
        {
            let mut out = yaml::Map::new();
            for (name, (kpos, svc)) in sm {
                if let Some(x) = svc.as_map().and_then(|m| m.get("x-davit")) {
                    let mut one = yaml::Map::new();
                    one.insert("x-davit".into(), x.clone());
                    out.insert(name.clone(), (*kpos, Node::at(Value::Map(one), svc.pos)));
                }
            }
            top.insert(
                "services".into(),
                (*spos, Node::at(Value::Map(out), services.pos)),
            );
        }
    }
    Node::new(Value::Map(top))
}

/// Gives the model's `x-davit` diagnostics (which name their place as a dotted path, e.g.
/// `services.web.x-davit.proxy.port must be …` or `x-davit.hooks: unknown hook "x"`) the file, line
/// and column of that place.
fn place_davit_diagnostics(diags: &mut Diagnostics, parts: &Node, files: &[PathBuf]) {
    for d in diags.0.iter_mut().filter(|d| d.line == 0) {
        let head = d
            .message
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        let mut path: Vec<String> = head.split('.').map(String::from).collect();
        // `unknown key "k"`: point at the key itself; otherwise at the value that is wrong.
        let key = d
            .message
            .split("unknown ")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1));
        if let Some(k) = key {
            path.push(k.to_string());
        }
        let mut node = parts;
        let mut pos = None;
        for (i, step) in path.iter().enumerate() {
            let Some((kpos, next)) = node.as_map().and_then(|m| m.get(step.as_str())) else {
                break;
            };
            pos = Some(if key.is_some() && i + 1 == path.len() {
                *kpos
            } else {
                next.pos
            });
            node = next;
        }
        if let Some(p) = pos.filter(|p| p.line > 0) {
            d.file = files.get(p.file as usize).cloned().unwrap_or_default();
            d.line = p.line as usize;
            d.column = p.col as usize;
        }
    }
}

/// Reads, parses, interpolates and canonicalises one file, with its includes and extends applied.
pub(crate) fn load_file(
    ctx: &mut Ctx<'_>,
    path: &Path,
    project_dir: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
) -> Option<Node> {
    let id = ctx.file_id(path);
    if stack.iter().any(|p| p == path) {
        ctx.error(
            Pos {
                file: id,
                line: 0,
                col: 0,
            },
            "include cycle detected",
            Some("remove the include that leads back to this file"),
        );
        return None;
    }
    let src = match ctx.fs.read(path) {
        Ok(s) => s,
        Err(e) => {
            ctx.diags.push(
                Diagnostic::error(path, 0, 0, format!("cannot read compose file: {e}"))
                    .with_hint("check the path given with -f"),
            );
            return None;
        }
    };
    let docs = match yaml::parse_all(&src, id) {
        Ok(d) => d,
        Err(e) => {
            ctx.error(
                e.pos,
                format!("YAML syntax error: {}", e.message),
                Some("fix the YAML syntax"),
            );
            return None;
        }
    };
    let mut merged: Option<Node> = None;
    for doc in docs {
        let n = process_document(ctx, doc, path, project_dir, env, stack)?;
        match &mut merged {
            None => merged = Some(n),
            Some(m) => merge_into(m, n, ctx),
        }
    }
    if merged.is_none() {
        ctx.error(
            Pos {
                file: id,
                line: 1,
                col: 1,
            },
            "empty compose file",
            Some("add a `services:` section"),
        );
    }
    merged
}

fn process_document(
    ctx: &mut Ctx<'_>,
    node: Node,
    path: &Path,
    project_dir: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
) -> Option<Node> {
    if !matches!(node.value, Value::Map(_)) {
        if matches!(node.value, Value::Null) {
            ctx.error(
                node.pos,
                "empty compose file",
                Some("add a `services:` section"),
            );
        } else {
            ctx.error(
                node.pos,
                "top-level object must be a mapping",
                Some("a compose file is a mapping with `services:` and friends"),
            );
        }
        return None;
    }
    let mut node = node;
    if ctx.interpolate {
        crate::normalize::interpolate_tree(&mut node, env, ctx);
    }
    if ctx.interpolate {
        // Schema problems are recorded and loading goes on, so later stages report theirs too.
        crate::schema::validate(&node, ctx);
        crate::normalize::canonical_file(&mut node, project_dir, ctx);
    } else {
        crate::normalize::canonical_raw(&mut node);
    }

    // include
    stack.push(path.to_path_buf());
    let includes = node.as_map_mut().and_then(|m| m.shift_remove("include"));
    let mut included: Vec<Node> = Vec::new();
    if let Some((_, inc)) = includes
        && let Value::Seq(items) = inc.value
    {
        for it in items {
            if let Some(n) = load_include(ctx, &it, project_dir, env, stack) {
                included.push(n);
            }
        }
    }
    // extends
    crate::merge::apply_extends(ctx, &mut node, path, project_dir, env, stack);
    stack.pop();
    for inc in included {
        crate::merge::merge_include(&mut node, inc, ctx);
    }
    Some(node)
}

fn load_include(
    ctx: &mut Ctx<'_>,
    it: &Node,
    project_dir: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
) -> Option<Node> {
    // Canonical form: {path: [..], project_directory?, env_file?: [..]}
    let paths: Vec<PathBuf> = match it.get("path").map(|n| &n.value) {
        Some(Value::Seq(v)) => v
            .iter()
            .filter_map(|n| n.as_str().map(PathBuf::from))
            .collect(),
        Some(Value::Str(s)) => vec![PathBuf::from(s)],
        _ => return None,
    };
    let paths: Vec<PathBuf> = paths.iter().map(|p| absolutize(project_dir, p)).collect();
    let first = paths.first()?.clone();
    let sub_dir = match it.get("project_directory").and_then(Node::as_str) {
        Some(d) => absolutize(project_dir, Path::new(d)),
        None => first
            .parent()
            .map_or_else(|| project_dir.to_path_buf(), Path::to_path_buf),
    };
    let env_files: Vec<(PathBuf, bool)> = match it.get("env_file").map(|n| &n.value) {
        Some(Value::Seq(v)) => v
            .iter()
            .filter_map(|n| {
                n.as_str()
                    .map(|s| (absolutize(project_dir, Path::new(s)), true))
            })
            .collect(),
        Some(Value::Str(s)) => vec![(absolutize(project_dir, Path::new(s)), true)],
        _ => vec![(sub_dir.join(".env"), false)],
    };
    let mut sub_env = env.clone();
    let mut dot = Env::new();
    for (f, required) in env_files {
        match ctx.fs.read(&f) {
            Ok(src) => {
                let lookup = |k: &str| env.get(k).cloned().or_else(|| dot.get(k).cloned());
                let vars = ctx.parse_env_file(&f, &src, &lookup);
                dot.extend(vars);
            }
            Err(_) if !required => {}
            Err(_) => {
                ctx.error(
                    it.pos,
                    format!("env file {} not found", f.display()),
                    Some("create it or fix the path"),
                );
                return None;
            }
        }
    }
    for (k, v) in dot {
        sub_env.entry(k).or_insert(v);
    }
    let mut out: Option<Node> = None;
    for p in &paths {
        if !ctx.fs.is_file(p) {
            ctx.error(
                it.pos,
                format!("included file {} not found", p.display()),
                Some("fix the include path"),
            );
            return None;
        }
        if stack.iter().any(|s| s == p) {
            ctx.error(
                it.pos,
                format!("include cycle detected: {} includes itself", p.display()),
                Some("remove the include that leads back"),
            );
            return None;
        }
        let n = load_file(ctx, p, &sub_dir, &sub_env, stack)?;
        match &mut out {
            None => out = Some(n),
            Some(o) => merge_into(o, n, ctx),
        }
    }
    out
}

/// Map helper: the string values of a sequence node.
pub(crate) fn strings(n: &Node) -> Vec<String> {
    match &n.value {
        Value::Seq(v) => v.iter().filter_map(scalar_string).collect(),
        _ => scalar_string(n).into_iter().collect(),
    }
}

/// The scalar as a string (Go's formatting of numbers and booleans).
pub(crate) fn scalar_string(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(go_float(*f)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Formats a float as Go's `%v` does for float64 (shortest form, exponent below 1e-4 and from 1e21).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}
