//! One module per command; each has `Args` (clap) and `run`.

use std::process::ExitCode;

pub mod hosts;
pub mod lab;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Simulated servers on this machine: network namespaces with their own engine and sshd.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Check that hosts' Docker engines answer, locally or over SSH.
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Lab(c) => lab::run(c),
        Command::Hosts(c) => hosts::run(c),
    }
}
