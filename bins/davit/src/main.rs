//! The umbrella `davit` command: a thin layer of argument parsing over the library crates.
//!
//! Exit codes (CONTRACT.md): 0 success, 1 the operation failed, 2 bad usage or bad input (refused
//! before any host is touched). Library errors become exit 1 unless wrapped in [`Usage`].

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// An error that is the user's input, not the operation: exit 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

#[derive(Debug, Parser)]
#[command(
    name = "davit",
    version,
    about = "Zero-downtime deploys of compose projects to your own servers."
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAVIT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(cmd::secrets::log_writer)
        .init();
    let cli = Cli::parse();
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            if let Some(usage) = e.downcast_ref::<Usage>() {
                eprintln!("error: {usage}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
