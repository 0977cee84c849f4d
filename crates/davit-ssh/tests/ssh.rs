//! Integration tests of `davit-ssh` against lab instance 3: real sshd, real engines, real registry.
//!
//! Host roles (so that tests running in parallel never disturb each other):
//! h1-h3 `hosts check`; h2 the container lifecycle; h4 connection cuts (its sshd is killed);
//! h5 the CLI tests (`bins/davit/tests/cli/hosts.rs`); h6 host keys and authentication.

mod ssh {
    pub mod engine;
    pub mod faults;
    pub mod keys;
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use davit_lab::{Lab, LabInfo};
use davit_ssh::{Host, HostUrl, SshOptions};

pub const INSTANCE: u8 = 3;
pub const HOSTS: u16 = 6;

pub fn lab() -> (Lab, LabInfo) {
    davit_lab::for_tests(INSTANCE, HOSTS)
}

/// Options that reach the lab: its key, its known_hosts, no agent, no user ssh config.
pub fn opts(info: &LabInfo) -> SshOptions {
    let mut o = SshOptions::default();
    o.identity = Some(info.identity.clone());
    o.known_hosts = Some(info.known_hosts.clone());
    o.use_agent = false;
    o.ssh_config = Some(PathBuf::from("/nonexistent/ssh_config"));
    o.connect_timeout = Duration::from_secs(10);
    o
}

/// Host `i` (1-based) of the lab.
pub fn url(info: &LabInfo, i: usize) -> HostUrl {
    HostUrl::parse(&info.hosts[i - 1].url).unwrap()
}

/// Host `i` with another user.
pub fn url_as(info: &LabInfo, i: usize, user: &str) -> HostUrl {
    HostUrl::parse(&format!("ssh://{user}@{}:22", info.hosts[i - 1].address)).unwrap()
}

pub async fn connect(info: &LabInfo, i: usize) -> Host {
    Host::connect(&url(info, i), &opts(info))
        .await
        .unwrap_or_else(|e| panic!("h{i}: {e}"))
}

/// The host key of host `i`, as `TYPE BASE64`.
pub fn host_key(lab: &Lab, i: u16) -> String {
    let p = lab
        .dir()
        .join(format!("h{i}"))
        .join("ssh_host_ed25519_key.pub");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ssh-keygen` a key pair in `dir`.
pub fn keygen(dir: &Path, name: &str, kind: &[&str], passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .args(kind)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

#[test]
fn error_is_std_error() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<davit_ssh::Error>();
}

#[test]
fn host_and_stream_can_cross_tasks() {
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send + Unpin + 'static>() {}
    send_sync::<davit_ssh::Host>();
    send::<davit_ssh::Stream>();
    let io: std::io::Error = davit_ssh::HostUrl::parse("nope").unwrap_err().into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}
