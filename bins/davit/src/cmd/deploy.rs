//! `davit deploy`, and what `rollback`, `releases`, `status` and `logs` share with it: loading the
//! project, choosing and connecting hosts.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use davit_engine::adapters::{RegistryResolver, SshRemote};
use davit_engine::deploy::{Note, Notes, Options, Report};
use davit_engine::driver::DriverNote;
use davit_engine::release::ReleaseOutcome;
use davit_engine::{Error as EngineError, ProjectSpec, RemoteRef};
use davit_rollout::{Action, Gates, Strategy};

use super::compose_args::ComposeArgs;
use super::hosts::{SshArgs, parse_duration};
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
    #[command(flatten)]
    pub notify: super::notify::NotifyArgs,
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
    let ready = super::preflight::ready(&args.project, &args.services)?;
    let ops = ready.deploy_ops(&args.notify)?;
    let (Some(project), urls) = (ready.spec, ready.urls) else {
        return Err(Usage("davit deploy needs a compose file (-f FILE)".into()).into());
    };
    let mut hooks = ready.hooks;
    if let Some(h) = &mut hooks {
        h.timeout = gates.progress_deadline;
    }
    let opts = Options {
        services: args.services.clone(),
        strategy,
        gates,
        dry_run: args.dry_run,
        force_unlock: args.force_unlock,
        lock_ttl: lock_ttl(&args.lock_ttl)?,
        keep_releases: args.keep_releases.max(1),
        hooks: hooks
            .filter(|h| !args.skip_hooks && h.any())
            .map(|h| Arc::new(h) as Arc<dyn davit_engine::hooks::Hooks>),
        ..Options::default()
    };
    let rt = runtime()?;
    rt.block_on(run_deploy(
        project,
        urls,
        opts,
        &args.project.ssh,
        args.json,
        &ops,
    ))
}

/// Prepares, connects, deploys and reports; shared by `deploy` and `rollback`. Announces the
/// deploy to `ops`' webhooks (start, then success, or failure and rollback; never for a dry run)
/// and masks `ops`' secrets in everything it prints and in its error.
pub async fn run_deploy(
    project: ProjectSpec,
    urls: Vec<davit_ssh::HostUrl>,
    opts: Options,
    ssh: &SshArgs,
    json: bool,
    ops: &super::notify::DeployOps,
) -> anyhow::Result<ExitCode> {
    use davit_ops::Outcome as Announce;
    let name = project.name.clone();
    let host_names: Vec<String> = urls.iter().map(ToString::to_string).collect();
    let announce = async |outcome, release: Option<&str>, message: String| {
        if !opts.dry_run {
            ops.announce(outcome, &name, release, &host_names, message, json)
                .await;
        }
    };
    let redactor = ops.redactor.clone();
    let what = match &opts.rollback_of {
        Some(to) => format!("rollback to release {to}"),
        None => "deploy".to_string(),
    };
    announce(
        Announce::Started,
        None,
        format!("{what} of {name} started by {}", opts.who),
    )
    .await;
    let result: anyhow::Result<Option<Report>> = async {
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
        let progress = Progress::new(json, opts.dry_run, redactor.clone());
        let p = progress.clone();
        let r = redactor.clone();
        let notes: Notes = Arc::new(move |n: &Note| {
            if !json {
                return p.note(n);
            }
            // JSON lines, every string masked.
            if let Ok(mut v) = serde_json::to_value(n) {
                r.redact_json(&mut v);
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{v}");
                let _ = o.flush();
            }
        });
        let result = davit_engine::deploy(project, hosts, &opts, None, cancel_rx, notes).await;
        progress.finish();
        let (plan, report) = match result {
            Ok(r) => r,
            Err(e @ EngineError::Input(_)) => return Err(Usage(e.to_string()).into()),
            Err(e) => return Err(e.into()),
        };
        if report.is_none() && !json {
            // With --json the plan was already printed as a `plan` event.
            print!("{}", redactor.redact(&plan.render()));
        }
        Ok(report)
    }
    .await;
    let report = match result {
        Ok(Some(report)) => report,
        Ok(None) => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            let e = super::preflight::redact_error(&redactor, e);
            announce(
                Announce::Failed,
                None,
                format!("{what} of {name} failed: {e:#}"),
            )
            .await;
            return Err(e);
        }
    };
    let message = report
        .message
        .as_deref()
        .map(|m| redactor.redact(m).into_owned());
    if json {
        let line = serde_json::json!({"event": "result", "release": report.release, "outcome": report.outcome, "message": message});
        println!("{}", redactor.redact(&line.to_string()));
    } else {
        match report.outcome {
            ReleaseOutcome::Succeeded => println!("release {} deployed", report.release),
            _ => eprintln!(
                "release {} {}: {}",
                report.release,
                report.outcome,
                message.as_deref().unwrap_or("")
            ),
        }
    }
    let release = Some(report.release.as_str());
    let why = message.clone().unwrap_or_default();
    match (&report.outcome, &opts.rollback_of) {
        (ReleaseOutcome::Succeeded, None) => {
            announce(Announce::Succeeded, release, format!("{name} deployed")).await;
        }
        (ReleaseOutcome::Succeeded, Some(to)) => {
            announce(
                Announce::RolledBack,
                release,
                format!("{name} rolled back to release {to}"),
            )
            .await;
        }
        (ReleaseOutcome::RolledBack, _) => {
            announce(Announce::Failed, release, format!("{what} failed: {why}")).await;
            announce(
                Announce::RolledBack,
                release,
                format!("every host was returned to the previous release ({why})"),
            )
            .await;
        }
        (_, _) => {
            announce(
                Announce::Failed,
                release,
                format!("{what} failed and the rollback is incomplete: {why}"),
            )
            .await;
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
    redactor: Arc<davit_ops::Redactor>,
}

impl Progress {
    fn new(json: bool, dry_run: bool, redactor: Arc<davit_ops::Redactor>) -> Progress {
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
            redactor,
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
        let bar = &Masked(bar, &self.redactor);
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

/// The spinner, printing through the project's redactor.
struct Masked<'a>(&'a indicatif::ProgressBar, &'a davit_ops::Redactor);

impl Masked<'_> {
    fn set_message(&self, m: String) {
        self.0.set_message(self.1.redact(&m).into_owned());
    }
    fn println(&self, m: impl AsRef<str>) {
        self.0.println(self.1.redact(m.as_ref()));
    }
}
