//! `davit config`: loads compose files exactly as Docker Compose v2 does and prints the result.

use std::io::Write;
use std::process::ExitCode;

use davit_compose::{FsLoader, Severity, load};

use super::compose_args::ComposeArgs;
use crate::Usage;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub compose: ComposeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Print the image names, one per line.
    #[arg(long)]
    pub images: bool,
    /// Do not interpolate variables.
    #[arg(long)]
    pub no_interpolate: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let mut opts = args.compose.load_options(cwd, std::env::vars());
    opts.interpolate = !args.no_interpolate;
    let project = match load(&opts, &FsLoader) {
        Ok(p) => p,
        Err(diags) => {
            let mut msg = String::new();
            for d in diags.iter() {
                let level = if d.severity == Severity::Error {
                    ""
                } else {
                    "warning: "
                };
                msg.push_str(&format!("\n{level}{d}"));
            }
            let n = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            return Err(Usage(format!(
                "invalid compose project ({n} problem{}):{msg}",
                if n == 1 { "" } else { "s" }
            ))
            .into());
        }
    };
    for w in &project.warnings {
        eprintln!("warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    if args.services {
        let mut names: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        for n in names {
            writeln!(out, "{n}")?;
        }
    } else if args.images {
        for s in &project.services {
            let image = s
                .image
                .clone()
                .unwrap_or_else(|| format!("{}-{}", project.name, s.name));
            writeln!(out, "{image}")?;
        }
    } else {
        match args.format {
            Format::Json => match project.config_json() {
                Ok(j) => write!(out, "{j}")?,
                Err(e) => return Err(Usage(e.to_string()).into()),
            },
            Format::Yaml => write!(out, "{}", project.to_yaml_string())?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
