//! Building images through the engine's build API: the context is tarred in memory (honouring
//! `.dockerignore`), sent with the Dockerfile, build args and target, and the result tagged.
//! Takes plain values, so the compose model (or anything else) can drive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::StreamExt;

use crate::Error;

/// One image to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSpec {
    /// What is built, for messages (the service name).
    pub name: String,
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile: relative to the context, or a path anywhere (default `Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// The stage to build.
    pub target: Option<String>,
    /// Image names to tag the result with (`registry/repo:tag`); at least one.
    pub tags: Vec<String>,
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Built {
    pub name: String,
    /// The image ID (`sha256:...`).
    pub image_id: String,
    pub tags: Vec<String>,
}

/// Name of the Dockerfile in the context tar when it lives outside the context.
const OUTSIDE_DOCKERFILE: &str = ".davit.Dockerfile";

/// Splits `repo[:tag]` into repo and tag (`latest` when none).
pub fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// `.dockerignore` patterns, in order (`!` re-includes).
#[derive(Debug, Clone, Default)]
pub struct Ignore(Vec<(bool, Vec<String>)>);

impl Ignore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (neg, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pat = pat
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if pat.is_empty() {
                continue;
            }
            rules.push((neg, pat.split('/').map(String::from).collect()));
        }
        Ignore(rules)
    }

    /// Whether `rel` (a `/`-separated path in the context) is excluded. A pattern matching a directory
    /// excludes what is under it.
    pub fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut out = false;
        for (neg, pat) in &self.0 {
            let hit = (1..=parts.len()).any(|n| match_path(pat, &parts[..n]));
            if hit {
                out = !neg;
            }
        }
        out
    }
}

fn match_path(pat: &[String], parts: &[&str]) -> bool {
    match (pat.first(), parts.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => (0..=parts.len()).any(|i| match_path(&pat[1..], &parts[i..])),
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && match_path(&pat[1..], &parts[1..])
        }
        _ => false,
    }
}

/// `*` and `?` within one path segment.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// The context of `spec` as a tar in memory, and the Dockerfile's name inside it.
pub fn context_tar(spec: &BuildSpec) -> Result<(Vec<u8>, String), Error> {
    let ctx = &spec.context;
    let io = |path: &Path, action: &'static str| {
        let path = path.display().to_string();
        move |source| Error::Io {
            path,
            action,
            source,
        }
    };
    let meta = std::fs::metadata(ctx).map_err(io(ctx, "build context is not readable"))?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            "build context",
            ctx.display().to_string(),
            "is not a directory",
        ));
    }
    let ignore = match std::fs::read_to_string(ctx.join(".dockerignore")) {
        Ok(t) => Ignore::parse(&t),
        Err(_) => Ignore::default(),
    };
    let dockerfile = spec
        .dockerfile
        .clone()
        .unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let full = if dockerfile.is_absolute() {
        dockerfile.clone()
    } else {
        ctx.join(&dockerfile)
    };
    let inside = full
        .strip_prefix(ctx)
        .ok()
        .map(|p| p.to_string_lossy().replace('\\', "/"));
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = ctx.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir, "cannot read directory"))?
            .collect::<Result<_, _>>()
            .map_err(io(&dir, "cannot read directory"))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let name = r.to_string_lossy().replace('\\', "/");
            let keep = inside.as_deref() == Some(name.as_str()) || name == ".dockerignore";
            if !keep && ignore.excludes(&name) {
                continue;
            }
            let ft = e.file_type().map_err(io(&e.path(), "cannot stat"))?;
            if ft.is_dir() {
                b.append_dir(&name, e.path())
                    .map_err(io(&e.path(), "cannot add to the build context"))?;
                stack.push(r);
            } else {
                b.append_path_with_name(e.path(), &name)
                    .map_err(io(&e.path(), "cannot add to the build context"))?;
            }
        }
    }
    let name = match inside {
        Some(n) => {
            if !full.is_file() {
                return Err(Error::invalid(
                    "dockerfile",
                    full.display().to_string(),
                    "does not exist",
                ));
            }
            n
        }
        None => {
            let data = std::fs::read(&full).map_err(io(&full, "cannot read the Dockerfile"))?;
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, OUTSIDE_DOCKERFILE, data.as_slice())
                .map_err(io(&full, "cannot add to the build context"))?;
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    let tar = b
        .into_inner()
        .map_err(io(ctx, "cannot finish the build context"))?;
    Ok((tar, name))
}

/// Builds `spec` on `docker` and tags the result with every tag of the spec.
pub async fn build_image(docker: &Docker, spec: &BuildSpec) -> Result<Built, Error> {
    let Some(first) = spec.tags.first() else {
        return Err(Error::invalid(
            "build",
            spec.name.clone(),
            "needs at least one tag for the image",
        ));
    };
    let s = spec.clone();
    let (tar, dockerfile) = tokio::task::spawn_blocking(move || context_tar(&s))
        .await
        .map_err(|e| Error::engine("tarring the context", e))??;
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile,
        t: Some(first.clone()),
        buildargs: (!spec.args.is_empty()).then(|| spec.args.clone().into_iter().collect()),
        target: spec.target.clone().unwrap_or_default(),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut last_lines: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            bollard::errors::Error::DockerStreamError { error } => Error::Build {
                what: spec.name.clone(),
                message: error,
            },
            other => Error::engine(format!("building {}", spec.name), other),
        })?;
        if let Some(detail) = info.error_detail {
            return Err(Error::Build {
                what: spec.name.clone(),
                message: detail.message.unwrap_or_else(|| last_lines.join("\n")),
            });
        }
        if let Some(line) = info.stream {
            tracing::debug!(service = %spec.name, "{}", line.trim_end());
            last_lines.push(line.trim_end().to_string());
            if last_lines.len() > 5 {
                last_lines.remove(0);
            }
        }
    }
    let inspect = docker
        .inspect_image(first)
        .await
        .map_err(|e| Error::engine(format!("inspecting {first}"), e))?;
    let image_id = inspect.id.unwrap_or_default();
    for t in &spec.tags[1..] {
        let (repo, tag) = split_tag(t);
        docker
            .tag_image(
                &image_id,
                Some(bollard::query_parameters::TagImageOptions {
                    repo: Some(repo.into()),
                    tag: Some(tag.into()),
                }),
            )
            .await
            .map_err(|e| Error::engine(format!("tagging {t}"), e))?;
    }
    Ok(Built {
        name: spec.name.clone(),
        image_id,
        tags: spec.tags.clone(),
    })
}

/// Builds every spec, `concurrency` at a time. Results in the order of `specs`; the first failure wins.
pub async fn build_all(
    docker: &Docker,
    specs: &[BuildSpec],
    concurrency: usize,
) -> Result<Vec<Built>, Error> {
    futures_util::stream::iter(specs.iter().map(|s| build_image(docker, s)))
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
