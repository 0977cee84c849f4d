//! `davit releases`: the release history recorded on the hosts.

use std::process::ExitCode;

use super::deploy::{ProjectArgs, connect, runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Print `{"releases":[…]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (name, urls) = args.project.load_for_name()?;
    let rt = runtime()?;
    rt.block_on(async {
        let hosts = connect(&urls, &args.project.ssh).await?;
        let list = davit_engine::deploy::releases(&name, &hosts).await?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "project": name, "releases": list })
            );
            return Ok(ExitCode::SUCCESS);
        }
        if list.is_empty() {
            println!("no release of {name} on these hosts");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:<22} {:<22} {:<20} {:<18} IMAGES",
            "RELEASE", "TIME", "OUTCOME", "WHO"
        );
        for r in &list {
            let images: Vec<String> = r
                .services
                .iter()
                .map(|s| format!("{}={}", s.name, s.pinned))
                .collect();
            let outcome = match &r.rollback_of {
                Some(of) => format!("{} (rollback to {of})", r.outcome),
                None => r.outcome.to_string(),
            };
            println!(
                "{:<22} {:<22} {:<20} {:<18} {}",
                r.id,
                r.time,
                outcome,
                r.who,
                images.join(" ")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
