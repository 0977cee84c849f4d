//! `davit notify`: send one deploy event to webhooks, to try a webhook setup before a deploy uses it.
//! [`NotifyArgs`] is the `--notify` flag other commands flatten in.

use std::process::ExitCode;
use std::time::Duration;

use davit_ops::{Event, Notifier, Outcome};

use crate::Usage;

/// `--notify [FORMAT=]URL` (repeatable; also `DAVIT_NOTIFY_URL`), for any command that notifies.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NotifyArgs {
    /// Post deploy events to this webhook: `[slack=|discord=|generic=]URL` (the format is inferred
    /// from Slack and Discord URLs). Repeatable; adds to `x-davit.notify` in the compose file.
    #[arg(long = "notify", value_name = "[FORMAT=]URL", env = "DAVIT_NOTIFY_URL")]
    pub urls: Vec<String>,
}

impl NotifyArgs {
    /// The notifier for these flags plus the compose file's top-level `x-davit` (if any).
    pub fn notifier(&self, x_davit: Option<&serde_json::Value>) -> anyhow::Result<Notifier> {
        Notifier::from_config(x_davit, &self.urls)
            .map_err(|e| Usage(super::secrets::chain(&e)).into())
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    notify: NotifyArgs,
    /// What to announce: started, succeeded, failed or rolled_back.
    #[arg(long, default_value = "succeeded")]
    outcome: Outcome,
    /// Project name in the message.
    #[arg(long, default_value = "davit")]
    project: String,
    /// Environment name in the message.
    #[arg(long = "env", value_name = "NAME")]
    environment: Option<String>,
    /// Release id in the message.
    #[arg(long)]
    release: Option<String>,
    /// Host URLs in the message (repeatable).
    #[arg(long = "host", value_name = "URL")]
    hosts: Vec<String>,
    /// The message.
    #[arg(long, default_value = "test notification from davit")]
    message: String,
    /// Give up on a webhook after this long (e.g. 500ms, 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the deliveries as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let notifier = args.notify.notifier(None)?.with_timeout(args.timeout);
    if notifier.is_empty() {
        return Err(Usage(
            "no webhook to notify: pass --notify URL (or set DAVIT_NOTIFY_URL)".into(),
        )
        .into());
    }
    let event = Event {
        outcome: args.outcome,
        project: args.project,
        environment: args.environment,
        release: args.release,
        hosts: args.hosts,
        message: args.message,
    };
    let deliveries = notifier.send_blocking(&event);
    if args.json {
        let list: Vec<serde_json::Value> = deliveries
            .iter()
            .map(|d| match &d.result {
                Ok(status) => {
                    serde_json::json!({ "target": d.target, "ok": d.ok(), "status": status })
                }
                Err(e) => serde_json::json!({ "target": d.target, "ok": false, "error": e }),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "deliveries": list }))?
        );
    } else {
        for d in &deliveries {
            match &d.result {
                Ok(status) => println!(
                    "{}  {}  HTTP {status}",
                    if d.ok() { "ok    " } else { "FAILED" },
                    d.target
                ),
                Err(e) => println!("FAILED  {}  {e}", d.target),
            }
        }
    }
    Ok(if deliveries.iter().all(davit_ops::Delivery::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `300ms`, `5s`, `2m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 500ms, 5s, 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}` is not a duration: use e.g. 500ms, 5s, 1m")),
    }
}

/// What `deploy` and `rollback` announce to webhooks and mask in their output: built by
/// [`super::preflight::Ready`] before any host is touched.
pub struct DeployOps {
    pub notifier: Notifier,
    pub redactor: std::sync::Arc<davit_ops::Redactor>,
    /// `--env NAME`, for the messages.
    pub environment: Option<String>,
}

impl DeployOps {
    /// Posts one event to every webhook (a failing webhook is a warning, never an error). With
    /// `json`, each delivery is reported as a `{"event":"notified",…}` line on stdout.
    pub async fn announce(
        &self,
        outcome: Outcome,
        project: &str,
        release: Option<&str>,
        hosts: &[String],
        message: String,
        json: bool,
    ) {
        if self.notifier.is_empty() {
            return;
        }
        let event = Event {
            outcome,
            project: project.to_string(),
            environment: self.environment.clone(),
            release: release.map(str::to_string),
            hosts: hosts.to_vec(),
            message: self.redactor.redact(&message).into_owned(),
        };
        let deliveries = self.notifier.send(&event).await;
        for d in &deliveries {
            let (status, error) = match &d.result {
                Ok(s) => (Some(*s), None),
                Err(e) => (None, Some(e.clone())),
            };
            if json {
                let line = serde_json::json!({
                    "event": "notified", "outcome": outcome, "target": d.target,
                    "ok": d.ok(), "status": status, "error": error,
                });
                println!("{}", self.redactor.redact(&line.to_string()));
            } else if !d.ok() {
                let why = error.unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(0)));
                eprintln!(
                    "warning: webhook {} not notified ({why}); the deploy goes on",
                    d.target
                );
            }
        }
    }
}
