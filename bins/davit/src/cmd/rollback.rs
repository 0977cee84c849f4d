//! `davit rollback [--to RELEASE]`: puts every host back on the previous (or the named) release,
//! restored from the snapshot recorded on the hosts (images by digest; no registry lookup).
//! Preflight runs first (exit 2, nothing touched); webhooks hear the start and the outcome.

use std::process::ExitCode;
use std::sync::Arc;

use davit_engine::deploy::{Options, rollback_target};

use super::deploy::{ProjectArgs, connect, run_deploy, runtime};
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The release to go back to (default: the one before the current release).
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Print events as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Print the plan and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Take the deploy lock even if another deploy holds it.
    #[arg(long)]
    pub force_unlock: bool,
    /// The deploy lock's lease (see `davit deploy --lock-ttl`).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lock_ttl: String,
    #[command(flatten)]
    pub notify: super::notify::NotifyArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lock_ttl = super::deploy::lock_ttl(&args.lock_ttl)?;
    let ready = super::preflight::ready(&args.project, &[])?;
    let mut ops = ready.deploy_ops(&args.notify)?;
    let (name, urls) = (ready.name.clone(), ready.urls.clone());
    let rt = runtime()?;
    rt.block_on(async {
        let hosts = connect(&urls, &args.project.ssh).await?;
        let (target, spec) = match rollback_target(&name, &hosts, args.to.as_deref()).await {
            Ok(t) => t,
            Err(e @ davit_engine::Error::NoRelease(_)) if args.to.is_some() => {
                return Err(Usage(e.to_string()).into());
            }
            Err(e) => return Err(ready.redact_error(e.into())),
        };
        // The restored environment is masked too: env-file keys and secret-looking values.
        let mut redactor = (*ready.redactor).clone();
        for s in &spec.services {
            redactor.add_env_map(
                s.environment.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &ready.secret_keys,
            );
        }
        let redactor = Arc::new(redactor);
        super::secrets::redact_logs(redactor.clone());
        ops.notifier = ops.notifier.with_redactor((*redactor).clone());
        ops.redactor = redactor;
        if !args.json {
            eprintln!(
                "rolling back {name} to release {} ({}, by {})",
                target.id, target.time, target.who
            );
        }
        drop(hosts);
        let opts = Options {
            dry_run: args.dry_run,
            force_unlock: args.force_unlock,
            lock_ttl,
            rollback_of: Some(target.id.clone()),
            ..Options::default()
        };
        run_deploy(spec, urls, opts, &args.project.ssh, args.json, &ops).await
    })
}
