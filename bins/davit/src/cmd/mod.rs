//! One module per command; each has `Args` (clap) and `run`.

use std::process::ExitCode;

pub mod build;
pub mod compose_args;
pub mod config;
pub mod deploy;
pub mod hooks;
pub mod hosts;
pub mod lab;
pub mod logs;
pub mod notify;
pub mod preflight;
pub mod probe;
pub mod prune;
pub mod push;
pub mod releases;
pub mod rollback;
pub mod secrets;
pub mod status;
pub mod tags;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loads compose files exactly as Docker Compose v2 does and prints the result.
    Config(config::Args),
    /// Simulated servers on this machine: network namespaces with their own engine and sshd.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Wait until a target is healthy: http(s)://…, tcp://host:port, container://NAME[@HOST-URL].
    Probe(Box<probe::Args>),
    /// Secrets files: `davit secrets init --template .env.example --out .env`.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Send a test deploy event to webhooks (Slack, Discord or generic JSON).
    Notify(notify::Args),
    /// Check a project before a deploy, touching no host: unknown --service names, variables with no
    /// value, missing env files, odd image references, --env names. Exit 2 lists every problem.
    Preflight(preflight::Args),
    /// Check that hosts' Docker engines answer, locally or over SSH.
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
    /// Build every service with a `build:` section (several at a time), tagged per the CI strategies.
    Build(build::BuildArgs),
    /// Push an image from the local engine to a registry under each tag (only missing blobs are sent).
    Push(push::PushArgs),
    /// List the tags of a repository.
    Tags(tags::TagsArgs),
    /// Delete all but the newest N tags of a repository; without REPOSITORY, the stopped containers
    /// and old releases' images on the project's hosts.
    Prune(prune::PruneArgs),
    /// Deploy the compose project to every host: zero-downtime behind the proxy, rolled back if unhealthy.
    Deploy(deploy::Args),
    /// Return every host to the previous (or the named) release.
    Rollback(rollback::Args),
    /// The release history: id, time, images by digest, outcome.
    Releases(releases::Args),
    /// Per host and service: release, image digest, containers and their health.
    Status(status::Args),
    /// Container logs of a service, from every host, prefixed by host.
    Logs(logs::Args),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(a) => config::run(a),
        Command::Lab(c) => lab::run(c),
        Command::Probe(a) => probe::run(*a),
        Command::Secrets(c) => secrets::run(c),
        Command::Notify(a) => notify::run(a),
        Command::Preflight(a) => preflight::run(a),
        Command::Hosts(c) => hosts::run(c),
        Command::Build(a) => build::run(a),
        Command::Push(a) => push::run(a),
        Command::Tags(a) => tags::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Deploy(a) => deploy::run(a),
        Command::Rollback(a) => rollback::run(a),
        Command::Releases(a) => releases::run(a),
        Command::Status(a) => status::run(a),
        Command::Logs(a) => logs::run(a),
    }
}
