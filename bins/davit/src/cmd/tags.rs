//! `davit tags REPOSITORY [--json]`.

use std::process::ExitCode;

use anyhow::Context as _;

use super::push::{RegistryArgs, repository_arg, runtime};

#[derive(Debug, clap::Args)]
pub struct TagsArgs {
    /// REGISTRY/NAME (e.g. 10.77.0.1:5000/app).
    repository: String,
    /// Print `{"tags":[...]}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: TagsArgs) -> anyhow::Result<ExitCode> {
    let (reg, repo) = repository_arg(&args.repository, &args.registry)?;
    let tags = runtime()?
        .block_on(reg.tags(&repo))
        .with_context(|| format!("listing the tags of {}", args.repository))?;
    if args.json {
        println!("{}", serde_json::json!({ "tags": tags }));
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
