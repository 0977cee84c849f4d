//! `davit preflight`: every check a deploy makes before it touches a host, without touching one.
//! Exit 0 when the project is deployable as given, 2 (with every problem listed) when not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use davit_compose::{FsLoader, LoadOptions, load};
use davit_ops::preflight::Problems;

use super::compose_args::ComposeArgs;
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let process_env: BTreeMap<String, String> = std::env::vars().collect();
    let options = |extra: &BTreeMap<String, String>| {
        // The process environment wins over the environment's variables, which win over .env.
        let mut vars = extra.clone();
        vars.extend(process_env.clone());
        args.compose.load_options(&cwd, vars)
    };
    let mut project = load_project(&options(&BTreeMap::new()))?;
    let x_davit = project.to_json().get("x-davit").cloned();
    let environment = match &args.env {
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
    // Webhook settings are checked too, so a deploy does not find a bad URL halfway.
    args.notify.notifier(x_davit.as_ref())?;

    let mut problems = match davit_ops::preflight::preflight(&project, &args.services) {
        Ok(()) => Vec::new(),
        Err(Problems(p)) => p,
    };
    let lookup = interpolation_env(&args, &cwd, &project.working_dir, &variables, &process_env);
    let files = compose_files(&args, &cwd);
    problems.extend(davit_ops::preflight::check_compose_files(&files, |k| {
        lookup.get(k).map(String::as_str)
    }));
    if !problems.is_empty() {
        return Err(Usage(Problems(problems).to_string()).into());
    }
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
    if let Some(env) = &environment {
        print!(", environment {} ({} hosts)", env.name, env.hosts.len());
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

fn load_project(opts: &LoadOptions) -> anyhow::Result<davit_compose::Project> {
    load(opts, &FsLoader).map_err(|diags| {
        let msg: String = diags.iter().map(|d| format!("\n{d}")).collect();
        Usage(format!("invalid compose project:{msg}")).into()
    })
}

/// The files Compose reads: `-f`, else the default file (and its override) in the project directory.
/// (Files pulled in by `include:` and `extends:` are not scanned for variables.)
fn compose_files(args: &Args, cwd: &Path) -> Vec<PathBuf> {
    if !args.compose.files.is_empty() {
        return args.compose.files.iter().map(|f| cwd.join(f)).collect();
    }
    let dir = args
        .compose
        .project_directory
        .as_ref()
        .map_or_else(|| cwd.to_owned(), |d| cwd.join(d));
    let first = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    first(&DEFAULT_FILES)
        .into_iter()
        .chain(first(&OVERRIDE_FILES))
        .collect()
}

/// What interpolation sees: `.env` (or `--env-file`), then the environment's variables, then the
/// process environment.
fn interpolation_env(
    args: &Args,
    cwd: &Path,
    project_dir: &Path,
    variables: &BTreeMap<String, String>,
    process_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let files: Vec<PathBuf> = if args.compose.env_files.is_empty() {
        vec![project_dir.join(".env")]
    } else {
        args.compose.env_files.iter().map(|f| cwd.join(f)).collect()
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
