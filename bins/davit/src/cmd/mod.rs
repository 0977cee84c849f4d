//! One module per command; each has `Args` (clap) and `run`.

use std::process::ExitCode;

pub mod lab;
pub mod notify;
pub mod secrets;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Simulated servers on this machine: network namespaces with their own engine and sshd.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Secrets files: `davit secrets init --template .env.example --out .env`.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Send a test deploy event to webhooks (Slack, Discord or generic JSON).
    Notify(notify::Args),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Lab(c) => lab::run(c),
        Command::Secrets(c) => secrets::run(c),
        Command::Notify(a) => notify::run(a),
    }
}
