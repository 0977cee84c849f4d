//! `davit prune REPOSITORY --keep N [--dry-run]`: the registry's tags; and `davit prune --keep N
//! [-f FILE] [--env NAME | --host URL...] [--dry-run]` (no REPOSITORY): the project's stopped
//! containers and the images of its releases older than the newest N, on every host.

use std::process::ExitCode;

use anyhow::Context as _;
use davit_registry::PruneOptions;

use super::deploy::{ProjectArgs, connect};
use super::push::{RegistryArgs, repository_arg, runtime, usage_or};
use crate::Usage;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Two forms:
  davit prune REPOSITORY --keep N [--dry-run]
      Registry: deletes all but the newest N tags of REPOSITORY (semantic-version order where
      tags are versions, else push time).
  davit prune --keep N [-f FILE] [--env NAME | --host URL...] [--dry-run]
      Hosts (no REPOSITORY): on every host of the project, removes its stopped containers and the
      images of its releases older than the newest N. The images of the kept releases, of running
      containers and of any container left on the host stay; release records stay (a rollback to
      an older release pulls its image again by digest).")]
pub struct PruneArgs {
    /// REGISTRY/NAME (e.g. 10.77.0.1:5000/app). Without it, prune the project's hosts.
    repository: Option<String>,
    /// How many of the newest tags (registry) or releases (hosts) to keep.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep: i64,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// A tag never deleted (repeatable; registry only).
    #[arg(long, value_name = "TAG")]
    protect: Vec<String>,
    /// A digest never deleted, e.g. what a host runs (repeatable; registry only).
    #[arg(long, value_name = "DIGEST")]
    running: Vec<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The project and its hosts (hosts form).
    #[command(flatten)]
    project: ProjectArgs,
}

pub fn run(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let keep = usize::try_from(args.keep)
        .map_err(|_| Usage(format!("--keep {} must be 0 or more", args.keep)))?;
    let Some(repository) = args.repository.clone() else {
        return hosts(&args, keep);
    };
    let p = &args.project;
    if !p.hosts.is_empty() || p.env.is_some() || !p.compose.files.is_empty() {
        return Err(Usage(format!(
            "prune {repository}: a REPOSITORY prunes registry tags; --host, --env and -f prune hosts (without REPOSITORY): not both"
        ))
        .into());
    }
    for d in &args.running {
        if !d.starts_with("sha256:") || d.len() != 71 {
            return Err(Usage(format!("--running {d}: expected a digest sha256:<64 hex>")).into());
        }
    }
    let (reg, repo) = repository_arg(&repository, &args.registry)?;
    let opts = PruneOptions {
        keep,
        protect: args.protect.clone(),
        running: args.running.clone(),
        dry_run: args.dry_run,
    };
    let plan = runtime()?
        .block_on(davit_registry::prune(&reg, &repo, &opts))
        .map_err(usage_or)
        .with_context(|| format!("pruning {repository}"))?;
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

/// `davit prune --keep N` without REPOSITORY: the project's hosts.
fn hosts(args: &PruneArgs, keep: usize) -> anyhow::Result<ExitCode> {
    if !args.protect.is_empty() || !args.running.is_empty() {
        return Err(Usage(
            "--protect and --running are for registry tags (davit prune REPOSITORY …)".into(),
        )
        .into());
    }
    if keep == 0 {
        return Err(Usage(
            "--keep 0 on hosts would remove the images of every release: keep at least 1".into(),
        )
        .into());
    }
    let ready = super::preflight::ready(&args.project, &[])?;
    let req = davit_engine::prune::PruneRequest {
        keep,
        dry_run: args.dry_run,
    };
    let reports = runtime()?
        .block_on(async {
            let hosts = connect(&ready.urls, &args.project.ssh).await?;
            anyhow::Ok(davit_engine::prune::prune(&ready.name, &hosts, &req).await)
        })
        .map_err(|e| ready.redact_error(e))?;
    let ok = reports.iter().all(|r| r.ok);
    if args.json {
        let mut doc = serde_json::json!({
            "project": ready.name, "keep": keep, "dry_run": args.dry_run, "hosts": reports,
        });
        ready.redactor.redact_json(&mut doc);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = String::new();
        for r in &reports {
            if let Some(e) = &r.error {
                out.push_str(&format!("{}: FAILED: {e}\n", r.host));
                continue;
            }
            out.push_str(&format!(
                "{}: keeping releases {}\n",
                r.host,
                if r.kept_releases.is_empty() {
                    "(none recorded)".to_string()
                } else {
                    r.kept_releases.join(", ")
                }
            ));
            for c in &r.containers {
                out.push_str(&format!("  {verb} container {} ({})\n", c.name, c.state));
            }
            for i in &r.images {
                out.push_str(&format!(
                    "  {verb} image {} ({}, releases {})\n",
                    i.image,
                    davit_ops::metrics::human_bytes(i.size_bytes),
                    i.releases.join(", ")
                ));
            }
            for i in &r.kept_images {
                out.push_str(&format!("  kept image {} ({})\n", i.image, i.reason));
            }
            if r.containers.is_empty() && r.images.is_empty() {
                out.push_str("  nothing to remove\n");
            } else {
                out.push_str(&format!(
                    "  {} {}\n",
                    if args.dry_run {
                        "would reclaim"
                    } else {
                        "reclaimed"
                    },
                    davit_ops::metrics::human_bytes(r.reclaimed_bytes)
                ));
            }
        }
        print!("{}", ready.redactor.redact(&out));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
