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
    let ready = super::preflight::ready(&args.project, &[])?;
    let name = ready.name.clone();
    let rt = runtime()?;
    let r = ready.redactor.clone();
    rt.block_on(async {
        let hosts = connect(&ready.urls, &args.project.ssh).await?;
        let list = davit_engine::deploy::releases(&name, &hosts).await?;
        if args.json {
            let mut doc = serde_json::json!({ "project": name, "releases": list });
            r.redact_json(&mut doc);
            println!("{doc}");
            return Ok(ExitCode::SUCCESS);
        }
        if list.is_empty() {
            println!("no release of {name} on these hosts");
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = format!(
            "{:<22} {:<22} {:<20} {:<18} IMAGES\n",
            "RELEASE", "TIME", "OUTCOME", "WHO"
        );
        for rel in &list {
            let images: Vec<String> = rel
                .services
                .iter()
                .map(|s| format!("{}={}", s.name, s.pinned))
                .collect();
            let outcome = match &rel.rollback_of {
                Some(of) => format!("{} (rollback to {of})", rel.outcome),
                None => rel.outcome.to_string(),
            };
            out.push_str(&format!(
                "{:<22} {:<22} {:<20} {:<18} {}\n",
                rel.id,
                rel.time,
                outcome,
                rel.who,
                images.join(" ")
            ));
        }
        print!("{}", r.redact(&out));
        Ok(ExitCode::SUCCESS)
    })
    .map_err(|e| super::preflight::redact_error(&ready.redactor, e))
}
