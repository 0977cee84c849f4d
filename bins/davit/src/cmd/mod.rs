//! One module per command; each has `Args` (clap) and `run`.

use std::process::ExitCode;

pub mod lab;
pub mod probe;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Simulated servers on this machine: network namespaces with their own engine and sshd.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Wait until a target is healthy: http(s)://…, tcp://host:port, container://NAME[@HOST-URL].
    Probe(Box<probe::Args>),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Lab(c) => lab::run(c),
        Command::Probe(a) => probe::run(*a),
    }
}
