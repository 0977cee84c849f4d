//! `davit deploy`, and what `rollback`, `releases`, `status` and `logs` share with it: loading the
//! project, choosing and connecting hosts.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use davit_compose::{FsLoader, LoadOptions, load};
use davit_engine::adapters::{RegistryResolver, SshRemote, from_compose};
use davit_engine::deploy::{Note, Notes, Options};
use davit_engine::driver::DriverNote;
use davit_engine::release::ReleaseOutcome;
use davit_engine::{Error as EngineError, ProjectSpec, RemoteRef};
use davit_rollout::{Action, Gates, Strategy};

use super::compose_args::ComposeArgs;
use super::hosts::{SshArgs, parse_duration, parse_hosts};
use crate::Usage;

/// Which project, and where.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub compose: ComposeArgs,
    /// A named environment of the top-level `x-davit.environments` (its hosts and variables).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
    /// A host: `local`, `unix:///path/docker.sock` or `ssh://user@host[:port]`. Repeat for several
    /// [default: the environment's hosts, else local].
    #[arg(long = "host", value_name = "URL")]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

impl ProjectArgs {
    fn load_options(
        &self,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<LoadOptions> {
        let cwd = std::env::current_dir()?;
        let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        for (k, v) in extra {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Ok(self.compose.load_options(cwd, env))
    }

    /// Loads the compose project (with the chosen environment's variables) and picks the hosts.
    /// Everything wrong here is a usage error: no host has been touched.
    pub fn load(&self) -> anyhow::Result<(ProjectSpec, Vec<davit_ssh::HostUrl>)> {
        self.load_with_hooks().map(|(spec, hosts, _)| (spec, hosts))
    }

    /// [`ProjectArgs::load`], with the project's `x-davit.hooks` and directory.
    pub fn load_with_hooks(
        &self,
    ) -> anyhow::Result<(
        ProjectSpec,
        Vec<davit_ssh::HostUrl>,
        super::hooks::LocalHooks,
    )> {
        let load_with = |extra: &std::collections::BTreeMap<String, String>| -> anyhow::Result<davit_compose::Project> {
            let opts = self.load_options(extra)?;
            load(&opts, &FsLoader).map_err(|diags| {
                let mut msg = String::new();
                for d in diags.iter() {
                    msg.push_str(&format!("\n{d}"));
                }
                Usage(format!("invalid compose project:{msg}")).into()
            })
        };
        let none = std::collections::BTreeMap::new();
        let mut project = load_with(&none)?;
        let mut env_hosts = Vec::new();
        if let Some(name) = &self.env {
            let Some(env) = project.environments.get(name).cloned() else {
                let known: Vec<&String> = project.environments.keys().collect();
                return Err(Usage(format!(
                    "--env {name}: no such environment in x-davit.environments (known: {known:?})"
                ))
                .into());
            };
            if !env.variables.is_empty() {
                project = load_with(&env.variables)?;
            }
            env_hosts = env.hosts;
        }
        let spec = from_compose(&project).map_err(|e| Usage(e.to_string()))?;
        let hooks = super::hooks::LocalHooks::new(project.hooks.clone(), &project.working_dir);
        let hosts = if self.hosts.is_empty() && !env_hosts.is_empty() {
            parse_hosts(&env_hosts)?
        } else {
            parse_hosts(&self.hosts)?
        };
        Ok((spec, hosts, hooks))
    }

    /// The project name and hosts, for commands that do not deploy: from the compose files, or
    /// from `-p NAME` alone when there are none.
    pub fn load_for_name(&self) -> anyhow::Result<(String, Vec<davit_ssh::HostUrl>)> {
        match self.load() {
            Ok((spec, hosts)) => Ok((spec.name, hosts)),
            Err(e) => match &self.compose.project_name {
                Some(name) if self.compose.files.is_empty() && self.env.is_none() => {
                    Ok((name.clone(), parse_hosts(&self.hosts)?))
                }
                _ => Err(e),
            },
        }
    }
}

/// Connects to every host in parallel; any failure is exit 1.
pub async fn connect(urls: &[davit_ssh::HostUrl], ssh: &SshArgs) -> anyhow::Result<Vec<RemoteRef>> {
    let opts = ssh.options()?;
    let futs = urls.iter().map(|u| SshRemote::connect(u, &opts));
    let mut out: Vec<RemoteRef> = Vec::new();
    for r in futures_util::future::join_all(futs).await {
        out.push(Arc::new(r?));
    }
    Ok(out)
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Only these services (repeat for several).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,
    /// Overrides every service's strategy: recreate, rolling, blue-green or canary.
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<String>,
    /// Hosts rolled at once by rolling and recreate.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_parallel: usize,
    /// Print the plan and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print events as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// A new container must stay healthy this long.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub min_healthy_time: String,
    /// A new container must be healthy within this long.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub healthy_deadline: String,
    /// The deploy fails when no step finishes for this long.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub progress_deadline: String,
    /// Take the deploy lock even if another deploy holds it.
    #[arg(long)]
    pub force_unlock: bool,
    /// The deploy lock's lease: renewed every third of it while davit runs; a deploy that died
    /// (killed, machine lost) leaves a lock that others may take over once it is this old.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lock_ttl: String,
    /// Releases kept per host.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub keep_releases: usize,
    /// Do not run the `x-davit.hooks` (pre-deploy, post-deploy).
    #[arg(long)]
    pub skip_hooks: bool,
}

fn duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    parse_duration(s)
        .ok_or_else(|| Usage(format!("{flag} {s}: not a duration (e.g. 500ms, 10s, 1m)")).into())
}

/// `--lock-ttl`: at least 3 s (the lease is renewed every third of it, and stamped in seconds).
pub fn lock_ttl(s: &str) -> anyhow::Result<Duration> {
    let d = duration("--lock-ttl", s)?;
    if d < Duration::from_secs(3) {
        return Err(Usage(format!(
            "--lock-ttl {s}: too short; the lease is renewed every third of it and stamped in seconds, so give at least 3s"
        ))
        .into());
    }
    Ok(d)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let strategy = match &args.strategy {
        None => None,
        Some(s) => Some(
            match Strategy::by_name(s).map_err(|e| Usage(e.to_string()))? {
                Strategy::Rolling { .. } => Strategy::Rolling {
                    max_parallel: args.max_parallel.max(1),
                },
                Strategy::Recreate { .. } => Strategy::Recreate {
                    max_parallel: args.max_parallel.max(1),
                },
                other => other,
            },
        ),
    };
    let gates = Gates {
        min_healthy_time: duration("--min-healthy-time", &args.min_healthy_time)?,
        healthy_deadline: duration("--healthy-deadline", &args.healthy_deadline)?,
        progress_deadline: duration("--progress-deadline", &args.progress_deadline)?,
    };
    let (project, urls, mut hooks) = args.project.load_with_hooks()?;
    hooks.timeout = gates.progress_deadline;
    let opts = Options {
        services: args.services.clone(),
        strategy,
        gates,
        dry_run: args.dry_run,
        force_unlock: args.force_unlock,
        lock_ttl: lock_ttl(&args.lock_ttl)?,
        keep_releases: args.keep_releases.max(1),
        hooks: (!args.skip_hooks && hooks.any())
            .then(|| Arc::new(hooks) as Arc<dyn davit_engine::hooks::Hooks>),
        ..Options::default()
    };
    let rt = runtime()?;
    rt.block_on(run_deploy(
        project,
        urls,
        opts,
        &args.project.ssh,
        args.json,
    ))
}

/// Prepares, connects, deploys and reports; shared by `deploy` and `rollback`.
pub async fn run_deploy(
    project: ProjectSpec,
    urls: Vec<davit_ssh::HostUrl>,
    opts: Options,
    ssh: &SshArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let resolver = RegistryResolver {
        settings: davit_registry::Settings::from_env(),
    };
    let project = match davit_engine::prepare(&project, &opts, &resolver).await {
        Ok(p) => p,
        Err(e) if e.is_input() => return Err(Usage(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    let hosts = connect(&urls, ssh).await?;
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: putting the old release back…");
            let _ = cancel_tx.send(true);
        }
    });
    let progress = Progress::new(json, opts.dry_run);
    let p = progress.clone();
    let notes: Notes = Arc::new(move |n: &Note| p.note(n));
    let result = davit_engine::deploy(project, hosts, &opts, None, cancel_rx, notes).await;
    progress.finish();
    let (plan, report) = match result {
        Ok(r) => r,
        Err(e @ EngineError::Input(_)) => return Err(Usage(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    let Some(report) = report else {
        // With --json the plan was already printed as a `plan` event.
        if !json {
            print!("{}", plan.render());
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "result", "release": report.release, "outcome": report.outcome, "message": report.message})
        );
    } else {
        match report.outcome {
            ReleaseOutcome::Succeeded => println!("release {} deployed", report.release),
            _ => eprintln!(
                "release {} {}: {}",
                report.release,
                report.outcome,
                report.message.as_deref().unwrap_or("")
            ),
        }
    }
    Ok(if report.outcome == ReleaseOutcome::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Progress on stderr (a spinner with the latest step), or JSON lines on stdout.
#[derive(Clone)]
struct Progress {
    json: bool,
    dry_run: bool,
    bar: Option<indicatif::ProgressBar>,
    out: Arc<Mutex<()>>,
}

impl Progress {
    fn new(json: bool, dry_run: bool) -> Progress {
        let bar = (!json).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress {
            json,
            dry_run,
            bar,
            out: Arc::new(Mutex::new(())),
        }
    }

    fn note(&self, n: &Note) {
        if self.json {
            let _g = self.out.lock();
            if let Ok(line) = serde_json::to_string(n) {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
            return;
        }
        let Some(bar) = &self.bar else { return };
        match n {
            Note::Phase { message } => bar.set_message(message.clone()),
            // A dry run prints its plan on stdout at the end.
            Note::Plan { .. } if self.dry_run => {}
            Note::Plan { plan } => bar.println(plan.render().trim_end()),
            Note::Service { service, note } => match note {
                DriverNote::Action { action, .. } => match action {
                    Action::Finished { .. } => {}
                    a => bar.set_message(format!("{service}: {a}")),
                },
                DriverNote::Event { event, .. } => bar.set_message(format!("{service}: {event}")),
            },
            Note::ServiceDone { service, outcome } => {
                bar.println(format!("service {service}: {outcome}"));
            }
            Note::Recorded { release, outcome } => {
                bar.println(format!("release {release} recorded ({outcome})"));
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
