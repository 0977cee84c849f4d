//! `davit build`: builds every service of the compose project that has a `build:` section, through the
//! engine's build API, several at a time, tagged per the CI tag strategies; `--push` sends them on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use davit_compose::{FsLoader, load};
use davit_registry::build::{BuildSpec, build_all, split_tag};
use davit_registry::tags::{GitInfo, Strategy, tags_for};
use davit_registry::{PushOptions, Registry};

use super::compose_args::ComposeArgs;
use super::push::{RegistryArgs, engine, runtime, usage_or};
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub compose: ComposeArgs,
    /// Only these services (default: every service with a build section).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Tag each image with these tags (default: the tag in its `image:`, else latest).
    #[arg(long = "tag", short = 't', value_name = "TAG", num_args = 1..)]
    tags: Vec<String>,
    /// Also tag from git: latest, sha, branch-sha, semver, or a moving tag (staging); comma-separated.
    #[arg(long = "git-tags", value_name = "STRATEGY", value_delimiter = ',')]
    git_tags: Vec<String>,
    /// Builds at a time.
    #[arg(long, default_value_t = 2, value_name = "N")]
    parallel: usize,
    /// Push every built image under each of its tags to the registry its `image:` names.
    #[arg(long)]
    push: bool,
    /// The engine that builds: local (default) or unix:///path/docker.sock.
    #[arg(long, default_value = "local")]
    host: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let opts = args.compose.load_options(cwd.clone(), std::env::vars());
    let project = load(&opts, &FsLoader).map_err(|diags| {
        let msg: String = diags.iter().map(|d| format!("\n{d}")).collect();
        Usage(format!("invalid compose project:{msg}"))
    })?;
    let json = project.to_json();
    let name = json
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("project")
        .to_string();
    let services = json
        .get("services")
        .and_then(|s| s.as_object())
        .cloned()
        .unwrap_or_default();
    for s in &args.services {
        if !services.contains_key(s) {
            return Err(Usage(format!("--service {s}: no such service in the project")).into());
        }
    }
    let mut extra: Vec<String> = args.tags.clone();
    if !args.git_tags.is_empty() {
        let strategies = args
            .git_tags
            .iter()
            .map(|s| s.parse::<Strategy>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Usage(format!("--git-tags: {e}")))?;
        let git = GitInfo::discover(&cwd).map_err(usage_or)?;
        extra.extend(tags_for(&strategies, &git));
    }
    for t in &extra {
        davit_registry::validate_tag(t).map_err(|e| Usage(e.to_string()))?;
    }
    let mut specs = Vec::new();
    // Services whose `image:` names where they go; the others have only a local name and are not pushed.
    let mut pushable: Vec<String> = Vec::new();
    for (svc, def) in &services {
        if !args.services.is_empty() && !args.services.contains(svc) {
            continue;
        }
        let Some(build) = def.get("build") else {
            continue;
        };
        let context = build.get("context").and_then(|c| c.as_str()).unwrap_or(".");
        let image = match def.get("image").and_then(|i| i.as_str()) {
            Some(i) => {
                pushable.push(svc.clone());
                i.to_string()
            }
            None => format!("{name}-{svc}"),
        };
        let (repo, own_tag) = split_tag(&image);
        let tags: Vec<String> = if extra.is_empty() {
            vec![format!("{repo}:{own_tag}")]
        } else {
            extra.iter().map(|t| format!("{repo}:{t}")).collect()
        };
        let args_map: BTreeMap<String, String> = build
            .get("args")
            .and_then(|a| a.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        specs.push(BuildSpec {
            name: svc.clone(),
            context: PathBuf::from(context),
            dockerfile: build
                .get("dockerfile")
                .and_then(|d| d.as_str())
                .map(PathBuf::from),
            args: args_map,
            target: build
                .get("target")
                .and_then(|t| t.as_str())
                .map(String::from),
            tags,
        });
    }
    if specs.is_empty() {
        return Err(Usage("no service of the project has a build section".into()).into());
    }
    let settings = if args.push {
        Some(args.registry.settings()?)
    } else {
        None
    };
    runtime()?.block_on(async {
        let docker = engine(&args.host).await?;
        let built = build_all(&docker, &specs, args.parallel).await.map_err(usage_or)?;
        let mut pushed = Vec::new();
        if let Some(settings) = &settings {
            for b in &built {
                if !pushable.contains(&b.name) {
                    eprintln!("{}: not pushed (no image: names its registry)", b.name);
                    continue;
                }
                let r = davit_registry::ImageRef::parse(&b.tags[0]).map_err(usage_or)?;
                let reg = Registry::new(&r.registry, settings).map_err(usage_or)?;
                let tags: Vec<String> = b.tags.iter().map(|t| split_tag(t).1.to_string()).collect();
                let report = davit_registry::push_image(&docker, &b.image_id, &reg, &r.repository, &PushOptions { tags, ..Default::default() })
                    .await
                    .with_context(|| format!("pushing {}", b.name))?;
                pushed.push((b.name.clone(), report.pinned()));
            }
        }
        if args.json {
            println!("{}", serde_json::json!({"built": built, "pushed": pushed.iter().map(|(s, p)| serde_json::json!({"service": s, "image": p})).collect::<Vec<_>>()}));
        } else {
            for b in &built {
                println!("{}: {} ({})", b.name, b.tags.join(", "), b.image_id);
            }
            for (s, p) in &pushed {
                println!("{s}: pushed {p}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
