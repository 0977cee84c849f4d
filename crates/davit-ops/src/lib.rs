//! `davit-ops`: the operations toolkit around a deploy.
//!
//! Everything here is a library the engine and the `davit` binary call; nothing here touches a host.
//!
//! - [`secrets`]: `davit secrets init`, a `.env` template copied with every empty `KEY=` filled by a new
//!   random secret from the OS CSPRNG, written atomically with mode 0600, idempotent.
//! - [`redact`]: [`Redactor`] masks secret values in any text (output, logs, release records);
//!   [`env_hash`] is a stable digest of an environment that reveals no value.
//! - [`notify`]: [`Notifier`] posts deploy events (start, success, failure, rollback) to webhooks in
//!   Slack, Discord or generic JSON shape; a failing webhook never fails the caller.
//! - [`preflight`]: pure checks over plain inputs (service names, image references, variables, env
//!   files) that refuse bad input before any host is touched.
//! - [`metrics`]: the host CPU, memory and disk figures of `davit status`, parsed from `/proc` and `df`.
//! - [`environments`]: resolves `x-davit.environments.NAME` (hosts, variables) for `--env NAME`.

pub mod dotenv;
pub mod environments;
mod error;
pub mod metrics;
pub mod notify;
pub mod preflight;
pub mod redact;
pub mod secrets;

pub use environments::{Environment, resolve_environment};
pub use error::Error;
pub use notify::{Delivery, Event, Format, Notifier, Outcome, Target};
pub use preflight::{Problem, Problems};
pub use redact::{MASK, RedactingWriter, Redactor, env_hash};
pub use secrets::{InitReport, generate_secret, init as secrets_init};
