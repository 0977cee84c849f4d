//! One module per command; each has `Args` (clap) and `run`.

use std::process::ExitCode;

pub mod config;
pub mod hosts;
pub mod lab;
pub mod prune;
pub mod push;
pub mod tags;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loads compose files exactly as Docker Compose v2 does and prints the result.
    Config(config::Args),
    /// Simulated servers on this machine: network namespaces with their own engine and sshd.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Check that hosts' Docker engines answer, locally or over SSH.
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
    /// Push an image from the local engine to a registry under each tag (only missing blobs are sent).
    Push(push::PushArgs),
    /// List the tags of a repository.
    Tags(tags::TagsArgs),
    /// Delete all but the newest N tags of a repository.
    Prune(prune::PruneArgs),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(a) => config::run(a),
        Command::Lab(c) => lab::run(c),
        Command::Hosts(c) => hosts::run(c),
        Command::Push(a) => push::run(a),
        Command::Tags(a) => tags::run(a),
        Command::Prune(a) => prune::run(a),
    }
}
