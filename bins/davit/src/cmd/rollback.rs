//! `davit rollback [--to RELEASE]`: puts every host back on the previous (or the named) release,
//! restored from the snapshot recorded on the hosts (images by digest; no registry lookup).

use std::process::ExitCode;

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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lock_ttl = super::deploy::lock_ttl(&args.lock_ttl)?;
    let (name, urls) = args.project.load_for_name()?;
    let rt = runtime()?;
    rt.block_on(async {
        let hosts = connect(&urls, &args.project.ssh).await?;
        let (target, spec) = match rollback_target(&name, &hosts, args.to.as_deref()).await {
            Ok(t) => t,
            Err(e @ davit_engine::Error::NoRelease(_)) if args.to.is_some() => {
                return Err(Usage(e.to_string()).into());
            }
            Err(e) => return Err(e.into()),
        };
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
        run_deploy(spec, urls, opts, &args.project.ssh, args.json).await
    })
}
