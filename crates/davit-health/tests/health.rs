//! Integration tests of `davit-health` against real endpoints: local HTTP, TCP and TLS servers,
//! and the lab's containers (instance 4), probed from the server's side over SSH and through the
//! hosts' Docker engines.

#[path = "health/lab.rs"]
mod lab;
#[path = "health/local.rs"]
mod local;

#[test]
fn error_is_std_error() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<davit_health::Error>();
}
