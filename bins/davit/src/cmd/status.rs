//! `davit status`: per host and service, the release, the image digest, the containers and their
//! health.

use std::process::ExitCode;

use super::deploy::{ProjectArgs, connect, runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Print `{"project":…,"hosts":[…]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (name, urls) = args.project.load_for_name()?;
    let rt = runtime()?;
    rt.block_on(async {
        let hosts = connect(&urls, &args.project.ssh).await?;
        let report = davit_engine::status::status(&name, &hosts).await;
        let ok = report.iter().all(|h| h.ok);
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "project": name, "hosts": report })
            );
        } else {
            for h in &report {
                match &h.error {
                    Some(e) => println!("{}: unreachable: {e}", h.host),
                    None => println!(
                        "{}: release {}",
                        h.host,
                        h.release.as_deref().unwrap_or("none")
                    ),
                }
                for s in &h.services {
                    println!(
                        "  {} release {} image {}",
                        s.service,
                        s.release.as_deref().unwrap_or("-"),
                        s.image.as_deref().unwrap_or("-")
                    );
                    for c in &s.containers {
                        println!(
                            "    {} {}{}",
                            c.name,
                            c.state,
                            c.health
                                .as_deref()
                                .map(|x| format!(" ({x})"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
