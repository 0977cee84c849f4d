//! `davit prune REPOSITORY --keep N [--dry-run]`.

use std::process::ExitCode;

use anyhow::Context as _;
use davit_registry::PruneOptions;

use super::push::{RegistryArgs, repository_arg, runtime, usage_or};
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// REGISTRY/NAME (e.g. 10.77.0.1:5000/app).
    repository: String,
    /// How many of the newest tags to keep (semantic-version order where tags are versions, else push time).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep: i64,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// A tag never deleted (repeatable).
    #[arg(long, value_name = "TAG")]
    protect: Vec<String>,
    /// A digest never deleted, e.g. what a host runs (repeatable).
    #[arg(long, value_name = "DIGEST")]
    running: Vec<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let keep = usize::try_from(args.keep)
        .map_err(|_| Usage(format!("--keep {} must be 0 or more", args.keep)))?;
    for d in &args.running {
        if !d.starts_with("sha256:") || d.len() != 71 {
            return Err(Usage(format!("--running {d}: expected a digest sha256:<64 hex>")).into());
        }
    }
    let (reg, repo) = repository_arg(&args.repository, &args.registry)?;
    let opts = PruneOptions {
        keep,
        protect: args.protect.clone(),
        running: args.running.clone(),
        dry_run: args.dry_run,
    };
    let plan = runtime()?
        .block_on(davit_registry::prune(&reg, &repo, &opts))
        .map_err(usage_or)
        .with_context(|| format!("pruning {}", args.repository))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if plan.applied {
        "deleted"
    } else {
        "would delete"
    };
    for (tag, digest) in &plan.delete {
        println!("{verb} {tag} ({digest})");
    }
    for (tag, reason) in &plan.keep {
        let why = serde_json::to_value(reason)?
            .as_str()
            .unwrap_or_default()
            .replace('_', " ");
        println!("kept {tag} ({why})");
    }
    Ok(ExitCode::SUCCESS)
}
