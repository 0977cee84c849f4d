//! `davit lab up|down`.

use std::process::ExitCode;

use anyhow::Context as _;
use davit_lab::{Instance, Lab, Options};

use crate::Usage;

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Start N simulated servers (and a registry with the demo images).
    Up(UpArgs),
    /// Remove everything `lab up` made, also after a crashed run.
    Down(DownArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// How many hosts (0 to 64).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    hosts: i64,
    /// Also run a registry holding davit-demo:v1, :v2 and :broken.
    #[arg(long)]
    registry: bool,
    /// Print the lab as JSON.
    #[arg(long)]
    json: bool,
    /// Which lab instance (0 is the one users see; test suites use 1 to 23, up to 8 hosts each).
    #[arg(long, default_value_t = 0, env = "DAVIT_LAB_INSTANCE", hide = true)]
    instance: u8,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Which lab instance.
    #[arg(long, default_value_t = 0, env = "DAVIT_LAB_INSTANCE", hide = true)]
    instance: u8,
    /// Remove every lab instance.
    #[arg(long)]
    all: bool,
}

pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let instance = Instance(args.instance);
    let max = i64::from(if args.instance <= davit_lab::MAX_INSTANCE { instance.max_hosts() } else { 0 });
    if args.instance > davit_lab::MAX_INSTANCE {
        return Err(Usage(format!("--instance {} is out of range: use 0 to {}", args.instance, davit_lab::MAX_INSTANCE)).into());
    }
    if !(0..=max).contains(&args.hosts) {
        return Err(Usage(format!(
            "--hosts {} is out of range: the lab holds 0 to {max} hosts (e.g. `davit lab up --hosts 3 --registry`)",
            args.hosts
        ))
        .into());
    }
    let hosts = u16::try_from(args.hosts).expect("checked above");
    let opts = Options { instance, hosts, registry: args.registry, root: davit_lab::default_root() };
    let info = Lab::up(&opts).context("bringing the lab up")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        for h in &info.hosts {
            println!("{}  {}  {}", h.name, h.address, h.url);
        }
        if let Some(r) = &info.registry {
            println!("registry  {r}  (davit-demo:v1, davit-demo:v2, davit-demo:broken)");
        }
        println!("identity     {}", info.identity.display());
        println!("known_hosts  {}", info.known_hosts.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let root = davit_lab::default_root();
    let instances: Vec<u8> = if args.all { (0..=davit_lab::MAX_INSTANCE).collect() } else { vec![args.instance] };
    for i in instances {
        Lab::down(&root, Instance(i)).with_context(|| format!("removing lab instance {i}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
