//! `davit push IMAGE REPOSITORY --tag TAG...`: an image from the local engine (or `--host unix://...`)
//! to a registry, sending only the blobs it lacks. Also the registry options shared by `tags`, `prune`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use davit_registry::tags::{GitInfo, Strategy, tags_for};
use davit_registry::{Credentials, ImageRef, Progress, PushOptions, Registry, Settings};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::Usage;

/// How to reach a registry (shared by push, tags, prune).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A registry spoken to in plain HTTP (HOST, HOST:PORT or a CIDR like 10.77.0.0/16); loopback
    /// always is. Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "DAVIT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Registry user (CI); the password comes from DAVIT_REGISTRY_PASSWORD or --password-stdin.
    /// Without it, ~/.docker/config.json and its credential helpers are used.
    #[arg(
        long = "registry-user",
        value_name = "USER",
        env = "DAVIT_REGISTRY_USER"
    )]
    pub user: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Blobs sent at a time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
}

impl RegistryArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings {
            insecure: self.insecure.clone(),
            concurrency: self.concurrency.max(1),
            ..Settings::default()
        };
        if let Some(user) = &self.user {
            let password = if self.password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_line(&mut p)
                    .context("reading the password from standard input")?;
                p.trim_end_matches(['\n', '\r']).to_string()
            } else {
                std::env::var("DAVIT_REGISTRY_PASSWORD").map_err(|_| {
                    Usage(format!(
                        "--registry-user {user} needs a password: set DAVIT_REGISTRY_PASSWORD or pass --password-stdin"
                    ))
                })?
            };
            s.credentials = Some(Credentials::Basic {
                user: user.clone(),
                password,
            });
        } else if self.password_stdin {
            return Err(Usage(
                "--password-stdin needs --registry-user (or DAVIT_REGISTRY_USER)".into(),
            )
            .into());
        }
        Ok(s)
    }
}

/// `REGISTRY/REPO` (no tag, no digest) -> client and repository.
pub fn repository_arg(repo: &str, args: &RegistryArgs) -> anyhow::Result<(Registry, String)> {
    let r = ImageRef::parse(repo).map_err(|e| Usage(format!("REPOSITORY {e}")))?;
    let last = repo.rsplit('/').next().unwrap_or(repo);
    if repo.contains('@') || (repo.contains('/') && last.contains(':')) {
        return Err(Usage(format!(
            "REPOSITORY {repo:?} names a tag or digest: give REGISTRY/NAME, and tags with --tag"
        ))
        .into());
    }
    davit_registry::validate_repository(&r.repository).map_err(|e| Usage(e.to_string()))?;
    let settings = args.settings()?;
    let reg = Registry::new(&r.registry, &settings).map_err(usage_or)?;
    Ok((reg, r.repository))
}

/// A registry error that is the user's input becomes `Usage` (exit 2).
pub fn usage_or(e: davit_registry::Error) -> anyhow::Error {
    if e.is_usage() {
        Usage(e.to_string()).into()
    } else {
        e.into()
    }
}

/// The engine to talk to: `local` or `unix:///path`.
pub async fn engine(host: &str) -> anyhow::Result<bollard::Docker> {
    let docker = if host == "local" {
        bollard::Docker::connect_with_local_defaults()
    } else if let Some(path) = host.strip_prefix("unix://") {
        bollard::Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(Usage(format!(
            "--host {host}: this command reaches `local` or `unix:///path` engines"
        ))
        .into());
    };
    let docker = docker.with_context(|| format!("connecting to the Docker engine {host}"))?;
    docker
        .negotiate_version()
        .await
        .with_context(|| format!("the Docker engine {host} does not answer"))
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The image in the engine (name or ID).
    image: String,
    /// Where to push: REGISTRY/NAME (e.g. 10.77.0.1:5000/app).
    repository: String,
    /// Tags to push under (repeatable, or several after one --tag).
    #[arg(long = "tag", short = 't', value_name = "TAG", num_args = 1..)]
    tags: Vec<String>,
    /// Also tag from git: latest, sha, branch-sha, semver, or a moving tag (staging); comma-separated.
    #[arg(long = "git-tags", value_name = "STRATEGY", value_delimiter = ',')]
    git_tags: Vec<String>,
    /// Repositories of the same registry to mount missing blobs from.
    #[arg(long = "mount-from", value_name = "NAME")]
    mount_from: Vec<String>,
    /// The engine holding the image: local (default) or unix:///path/docker.sock.
    #[arg(long, default_value = "local", env = "DAVIT_PUSH_HOST")]
    host: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let mut tags = args.tags.clone();
    if !args.git_tags.is_empty() {
        let strategies = args
            .git_tags
            .iter()
            .map(|s| s.parse::<Strategy>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Usage(format!("--git-tags: {e}")))?;
        let git = GitInfo::discover(&std::env::current_dir()?).map_err(usage_or)?;
        for t in tags_for(&strategies, &git) {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    if tags.is_empty() {
        return Err(Usage("push needs at least one --tag TAG (or --git-tags)".into()).into());
    }
    for t in &tags {
        davit_registry::validate_tag(t).map_err(|e| Usage(e.to_string()))?;
    }
    let (reg, repo) = repository_arg(&args.repository, &args.registry)?;
    let rt = runtime()?;
    rt.block_on(async {
        let docker = engine(&args.host).await?;
        let bars = Bars::new();
        let opts = PushOptions {
            tags: tags.clone(),
            mount_from: args.mount_from.clone(),
            progress: Some(bars.sink()),
        };
        let report = davit_registry::push_image(&docker, &args.image, &reg, &repo, &opts)
            .await
            .map_err(usage_or)
            .with_context(|| format!("pushing {} to {}", args.image, args.repository))?;
        bars.finish();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            eprintln!(
                "{} blobs: {} uploaded ({}), {} mounted, {} already there; tagged {}",
                report.blobs.len(),
                report.uploaded(),
                human(report.bytes_uploaded),
                report.mounted(),
                report.blobs.len() - report.uploaded() - report.mounted(),
                report.tags.join(", ")
            );
            println!("{}", report.pinned());
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// One progress bar per uploading blob, on stderr (drawn only on a terminal).
struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            bars: Arc::default(),
        }
    }

    fn sink(&self) -> davit_registry::ProgressFn {
        let multi = self.multi.clone();
        let bars = self.bars.clone();
        let style =
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {msg}")
                .expect("template")
                .progress_chars("=> ");
        Arc::new(move |p: &Progress| {
            let short = |d: &str| {
                d.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            };
            let mut bars = bars.lock().expect("bars");
            match p {
                Progress::UploadStarted { digest, size } => {
                    let bar = multi.add(ProgressBar::new(*size));
                    bar.set_style(style.clone());
                    bar.set_prefix(short(digest));
                    bars.insert(digest.clone(), bar);
                }
                Progress::UploadProgress { digest, sent, .. } => {
                    if let Some(b) = bars.get(digest) {
                        b.set_position(*sent);
                    }
                }
                Progress::Uploaded { digest, .. } => {
                    if let Some(b) = bars.get(digest) {
                        b.finish_with_message("pushed");
                    }
                }
                Progress::Present { digest, .. } => {
                    let _ = multi.println(format!("{} already there", short(digest)));
                }
                Progress::Mounted { digest, from } => {
                    let _ = multi.println(format!("{} mounted from {from}", short(digest)));
                }
                _ => {}
            }
        })
    }

    fn finish(&self) {
        let _ = self.multi.clear();
    }
}
