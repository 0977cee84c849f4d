//! `davit logs SERVICE`: the service's container logs from every host, prefixed by host.

use std::process::ExitCode;

use super::deploy::{ProjectArgs, connect, runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service.
    pub service: String,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Keep streaming new lines.
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (name, urls) = args.project.load_for_name()?;
    let rt = runtime()?;
    rt.block_on(async {
        let hosts = connect(&urls, &args.project.ssh).await?;
        davit_engine::status::logs(&name, &args.service, &hosts, args.follow, args.tail).await?;
        Ok(ExitCode::SUCCESS)
    })
}
