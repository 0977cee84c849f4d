//! `davit secrets init --template FILE --out FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::Usage;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Copy a .env template, filling every empty `KEY=` with a new random secret (256 bits from the
    /// OS), keeping set values, comments and order; writes mode 0600; a second run changes nothing.
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The template (committed with the project), e.g. .env.example.
    #[arg(long, value_name = "FILE")]
    template: PathBuf,
    /// The file to write (not committed), e.g. .env. Keys already filled there are kept.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print what was done as JSON (key names only, never values).
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretsCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let report = match davit_ops::secrets_init(&args.template, &args.out) {
        Ok(r) => r,
        Err(e) if e.is_usage() => return Err(Usage(chain(&e)).into()),
        Err(e) => return Err(anyhow::Error::new(e).context("davit secrets init")),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.out.display();
    let list = |keys: &[String]| keys.join(", ");
    if report.written {
        println!("wrote {out} (mode 0600)");
    } else {
        println!("{out} is up to date: nothing to generate");
    }
    if !report.generated.is_empty() {
        println!(
            "  generated {} new secret(s): {}",
            report.generated.len(),
            list(&report.generated)
        );
    }
    if !report.kept.is_empty() {
        println!(
            "  kept {} existing value(s): {}",
            report.kept.len(),
            list(&report.kept)
        );
    }
    if !report.appended.is_empty() {
        println!("  added from the template: {}", list(&report.appended));
    }
    if report.mode_fixed {
        println!("  tightened permissions to 0600");
    }
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The secrets every log line is masked with (see [`log_writer`]); set by commands once their
/// project is loaded.
static LOG_REDACTOR: std::sync::RwLock<Option<std::sync::Arc<davit_ops::Redactor>>> =
    std::sync::RwLock::new(None);

/// Masks `redactor`'s secrets in every log line from now on.
pub fn redact_logs(redactor: std::sync::Arc<davit_ops::Redactor>) {
    if let Ok(mut g) = LOG_REDACTOR.write() {
        *g = Some(redactor);
    }
}

/// The log writer of the `davit` binary: stderr, through the project's [`davit_ops::Redactor`]
/// once a command has set one with [`redact_logs`].
pub fn log_writer() -> davit_ops::RedactingWriter<std::io::Stderr> {
    let r = LOG_REDACTOR
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default();
    davit_ops::RedactingWriter::new(r, std::io::stderr())
}
