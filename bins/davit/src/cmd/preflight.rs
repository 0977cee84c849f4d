//! `davit preflight`: every check a deploy makes before it touches a host, without touching one.
//! Exit 0 when the project is deployable as given, 2 (with every problem listed) when not.
//!
//! [`ready`] is the same check for every command that touches hosts (`deploy`, `rollback`,
//! `status`, `logs`, `releases`, `prune` on hosts): it runs before any connection, and hands the
//! command its hosts, its webhooks and the [`davit_ops::Redactor`] of the project's secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use davit_compose::{FsLoader, LoadOptions, load};
use davit_ops::preflight::Problems;

use super::compose_args::ComposeArgs;
use super::deploy::ProjectArgs;
use super::hosts::parse_hosts;
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub compose: ComposeArgs,
    /// The environment (`x-davit.environments.NAME`): its hosts and variables.
    #[arg(long = "env", value_name = "NAME")]
    env: Option<String>,
    /// Only these services (repeatable; default: all).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    #[command(flatten)]
    notify: super::notify::NotifyArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let checked = check(&args.compose, args.env.as_deref(), &args.services, &cwd)?;
    // Webhook settings are checked too, so a deploy does not find a bad URL halfway.
    args.notify.notifier(checked.x_davit.as_ref())?;
    let project = &checked.project;
    let services: Vec<&str> = project
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| args.services.is_empty() || args.services.iter().any(|s| s == n))
        .collect();
    print!(
        "preflight ok: project {}, services {}",
        project.name,
        services.join(", ")
    );
    if let Some(env) = &checked.environment {
        print!(", environment {} ({} hosts)", env.name, env.hosts.len());
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

/// A project that passed preflight.
pub struct Checked {
    pub project: davit_compose::Project,
    /// The top-level `x-davit` (webhooks, environments).
    pub x_davit: Option<serde_json::Value>,
    /// The environment chosen with `--env`.
    pub environment: Option<davit_ops::Environment>,
}

/// Loads the project as Compose does (with the `--env` environment's variables) and runs every
/// preflight check on it for the `services` (all when empty): unknown services, odd image
/// references, missing env files, variables with no value and no default. Every problem is a
/// [`Usage`] error (exit 2): nothing has been touched.
pub fn check(
    compose: &ComposeArgs,
    env: Option<&str>,
    services: &[String],
    cwd: &Path,
) -> anyhow::Result<Checked> {
    let process_env: BTreeMap<String, String> = std::env::vars().collect();
    let options = |extra: &BTreeMap<String, String>| {
        // The process environment wins over the environment's variables, which win over .env.
        let mut vars = extra.clone();
        vars.extend(process_env.clone());
        compose.load_options(cwd, vars)
    };
    let mut project = load_project(&options(&BTreeMap::new()))?;
    let x_davit = project.to_json().get("x-davit").cloned();
    let environment = match env {
        Some(name) => Some(
            davit_ops::resolve_environment(x_davit.as_ref(), name)
                .map_err(|e| Usage(e.to_string()))?,
        ),
        None => None,
    };
    let variables = environment
        .as_ref()
        .map(|e| e.variables.clone())
        .unwrap_or_default();
    if !variables.is_empty() {
        project = load_project(&options(&variables))?;
    }
    let mut problems = match davit_ops::preflight::preflight(&project, services) {
        Ok(()) => Vec::new(),
        Err(Problems(p)) => p,
    };
    let lookup = interpolation_env(compose, cwd, &project.working_dir, &variables, &process_env);
    let files = compose_files(compose, cwd);
    problems.extend(davit_ops::preflight::check_compose_files(&files, |k| {
        lookup.get(k).map(String::as_str)
    }));
    if !problems.is_empty() {
        return Err(Usage(Problems(problems).to_string()).into());
    }
    Ok(Checked {
        project,
        x_davit,
        environment,
    })
}

/// What a command that touches hosts knows once preflight passed.
pub struct Ready {
    /// The project name.
    pub name: String,
    /// The project in the engine's terms (`None` with `-p NAME` and no compose file).
    pub spec: Option<davit_engine::ProjectSpec>,
    /// The hosts: `--host`, else the environment's, else local.
    pub urls: Vec<davit_ssh::HostUrl>,
    /// Masks the project's secrets in everything the command prints.
    pub redactor: Arc<davit_ops::Redactor>,
    /// Keys that come from env files (their values are secrets in a release's environment too).
    pub secret_keys: BTreeSet<String>,
    pub x_davit: Option<serde_json::Value>,
    pub environment: Option<davit_ops::Environment>,
    /// The project's `x-davit.hooks`, run in its directory.
    pub hooks: Option<super::hooks::LocalHooks>,
}

impl Ready {
    /// The webhooks of `--notify` / `DAVIT_NOTIFY_URL`, `x-davit.notify` and the environment's
    /// `notify`, masking the project's secrets.
    pub fn notifier(
        &self,
        args: &super::notify::NotifyArgs,
    ) -> anyhow::Result<davit_ops::Notifier> {
        let base = args.notifier(self.x_davit.as_ref())?;
        let mut targets = base.targets().to_vec();
        if let Some(env) = &self.environment {
            for t in &env.notify {
                if !targets.iter().any(|e| e.url() == t.url()) {
                    targets.push(t.clone());
                }
            }
        }
        Ok(davit_ops::Notifier::new(targets).with_redactor((*self.redactor).clone()))
    }

    /// The webhooks and redactor of `deploy` and `rollback`.
    pub fn deploy_ops(
        &self,
        args: &super::notify::NotifyArgs,
    ) -> anyhow::Result<super::notify::DeployOps> {
        Ok(super::notify::DeployOps {
            notifier: self.notifier(args)?,
            redactor: self.redactor.clone(),
            environment: self.environment.as_ref().map(|e| e.name.clone()),
        })
    }

    /// `e` with the project's secrets masked, keeping whether it is a usage error.
    pub fn redact_error(&self, e: anyhow::Error) -> anyhow::Error {
        redact_error(&self.redactor, e)
    }
}

/// `e` with `redactor`'s secrets masked, keeping whether it is a usage error (exit 2).
pub fn redact_error(redactor: &davit_ops::Redactor, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    let masked = redactor.redact(&text);
    if matches!(masked, std::borrow::Cow::Borrowed(_)) {
        return e;
    }
    if e.downcast_ref::<Usage>().is_some() {
        Usage(masked.into_owned()).into()
    } else {
        anyhow::anyhow!("{masked}")
    }
}

/// Preflight for a command that touches hosts (`deploy`, `rollback`, `status`, `logs`, `releases`,
/// `prune` on hosts), before it connects anywhere. `services` are the names the command was given
/// (`--service`, `davit logs SERVICE`). With `-p NAME` and no compose file (status and logs of a
/// project whose files are elsewhere) there is nothing to check but the host URLs.
pub fn ready(project: &ProjectArgs, services: &[String]) -> anyhow::Result<Ready> {
    let cwd = std::env::current_dir()?;
    let no_file = project.compose.files.is_empty()
        && !compose_files(&project.compose, &cwd)
            .first()
            .is_some_and(|f| f.is_file());
    if let (true, Some(name), None) = (no_file, &project.compose.project_name, &project.env) {
        return Ok(Ready {
            name: name.clone(),
            spec: None,
            urls: parse_hosts(&project.hosts)?,
            redactor: Arc::new(davit_ops::Redactor::new()),
            secret_keys: BTreeSet::new(),
            x_davit: None,
            environment: None,
            hooks: None,
        });
    }
    let checked = check(&project.compose, project.env.as_deref(), services, &cwd)?;
    let spec =
        davit_engine::adapters::from_compose(&checked.project).map_err(|e| Usage(e.to_string()))?;
    let env_hosts = checked
        .environment
        .as_ref()
        .map(|e| e.hosts.clone())
        .unwrap_or_default();
    let urls = if project.hosts.is_empty() && !env_hosts.is_empty() {
        parse_hosts(&env_hosts)?
    } else {
        parse_hosts(&project.hosts)?
    };
    let mut secret_keys = BTreeSet::new();
    for s in &checked.project.services {
        for f in &s.env_files {
            if let Ok(text) = std::fs::read_to_string(&f.path) {
                secret_keys.extend(davit_ops::dotenv::pairs(&text).into_iter().map(|(k, _)| k));
            }
        }
    }
    let redactor = Arc::new(davit_ops::Redactor::from_project(&checked.project, &[]));
    super::secrets::redact_logs(redactor.clone());
    Ok(Ready {
        name: spec.name.clone(),
        redactor,
        spec: Some(spec),
        urls,
        secret_keys,
        x_davit: checked.x_davit,
        environment: checked.environment,
        hooks: Some(super::hooks::LocalHooks::new(
            checked.project.hooks.clone(),
            &checked.project.working_dir,
        )),
    })
}

fn load_project(opts: &LoadOptions) -> anyhow::Result<davit_compose::Project> {
    load(opts, &FsLoader).map_err(|diags| {
        let msg: String = diags.iter().map(|d| format!("\n{d}")).collect();
        Usage(format!("invalid compose project:{msg}")).into()
    })
}

/// The files Compose reads, as the loader finds them (`-f`, `COMPOSE_FILE`, the default file and its
/// override). (Files pulled in by `include:` and `extends:` are not scanned for variables.)
fn compose_files(compose: &ComposeArgs, cwd: &Path) -> Vec<PathBuf> {
    davit_compose::compose_files(&compose.load_options(cwd, std::env::vars()), &FsLoader)
}

/// What interpolation sees: `.env` (or `--env-file`), then the environment's variables, then the
/// process environment.
fn interpolation_env(
    compose: &ComposeArgs,
    cwd: &Path,
    project_dir: &Path,
    variables: &BTreeMap<String, String>,
    process_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let files: Vec<PathBuf> = if compose.env_files.is_empty() {
        vec![project_dir.join(".env")]
    } else {
        compose.env_files.iter().map(|f| cwd.join(f)).collect()
    };
    let mut env = BTreeMap::new();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            env.extend(davit_ops::dotenv::pairs(&text));
        }
    }
    env.extend(variables.clone());
    env.extend(process_env.clone());
    env
}
