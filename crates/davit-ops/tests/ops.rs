//! Integration tests of `davit-ops` against real files, real HTTP(S) receivers and real sockets.

#[path = "ops/notify.rs"]
mod notify;
#[path = "ops/preflight.rs"]
mod preflight;
#[path = "ops/secrets.rs"]
mod secrets;
