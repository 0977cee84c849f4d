use std::fmt::Write as _;

use crate::known_hosts::{Verdict, check_text, host_pattern};
use crate::{Error, HostUrl};

/// One line per input: the parsed URL (Debug), its canonical form, or the error.
fn check_urls(inputs: &[&str]) -> String {
    let mut out = String::new();
    for i in inputs {
        match HostUrl::parse(i) {
            Ok(u) => writeln!(out, "{i:<45} => {u}  {u:?}").unwrap(),
            Err(e) => writeln!(out, "{i:<45} !! {e}").unwrap(),
        }
    }
    out
}

#[test]
fn host_urls() {
    insta::assert_snapshot!(check_urls(&[
        "local",
        "unix:///var/run/docker.sock",
        "unix://relative.sock",
        "ssh://root@10.77.1.2:22",
        "ssh://deploy@example.com",
        "ssh://example.com:2222",
        "ssh://root@[2001:db8::1]:22",
        "ssh://root@host?socket=/run/user/1000/docker.sock",
        "ssh://root@host?socket=relative",
        "ssh://root@host?sock=/x",
        "ssh://root:hunter2@host",
        "ssh://root@host/path",
        "ssh://",
        "tcp://1.2.3.4:2375",
        "example.com",
    ]));
}

#[test]
fn error_display_names_the_url() {
    let e = HostUrl::parse("ftp://x").unwrap_err();
    assert!(matches!(e, Error::InvalidUrl { .. }));
    assert!(e.to_string().contains("ftp://x"), "{e}");
}

#[test]
fn passwords_in_urls_never_appear_in_errors() {
    let e = HostUrl::parse("ssh://root:hunter2@host").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().contains("ssh://root:***@host"), "{e}");
}

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbmKP8x6i6AnYRxYQzBXCD3Z//oaIRVEW/EVBdbwVk+";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL3NHPo0qiy9L9fGpidZEh1q8Pk4Z8Nj3bO/meWe416+";

fn key(k: &str) -> russh::keys::PublicKey {
    russh::keys::parse_public_key_base64(k.split_whitespace().nth(1).unwrap()).unwrap()
}

/// `ssh-keygen -H` of `10.0.0.1` (salt and hash from the real tool).
fn hashed(name: &str) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let salt = [7u8; 20];
    let mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt)
        .unwrap()
        .chain_update(name.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "|1|{}|{}",
        b64.encode(salt),
        b64.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn known_hosts_verdicts() {
    let cases: Vec<(String, &str, u16, &str, Verdict)> = vec![
        (
            format!("10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("10.0.0.1 {KEY_A}\n"),
            "10.0.0.2",
            22,
            KEY_A,
            Verdict::Unknown,
        ),
        (
            format!("# c\n\n10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_B,
            Verdict::Changed { line: 3 },
        ),
        (
            format!("[10.0.0.1]:2222 {KEY_A}\n"),
            "10.0.0.1",
            2222,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("[10.0.0.1]:2222 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_B,
            Verdict::Unknown,
        ),
        (
            format!("10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            2222,
            KEY_B,
            Verdict::Unknown,
        ),
        (
            format!("web,10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("{} {KEY_A}\n", hashed("10.0.0.1")),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("{} {KEY_A}\n", hashed("10.0.0.1")),
            "10.0.0.1",
            22,
            KEY_B,
            Verdict::Changed { line: 1 },
        ),
        (
            format!("{} {KEY_A}\n", hashed("[10.0.0.1]:2222")),
            "10.0.0.1",
            2222,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("10.0.0.* {KEY_A}\n"),
            "10.0.0.9",
            22,
            KEY_A,
            Verdict::Known,
        ),
        (
            format!("10.0.0.*,!10.0.0.9 {KEY_A}\n"),
            "10.0.0.9",
            22,
            KEY_A,
            Verdict::Unknown,
        ),
        (
            format!("@revoked * {KEY_A}\n10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Revoked { line: 1 },
        ),
        (
            format!("@cert-authority * {KEY_B}\n10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Known,
        ),
        // Another key first, then ours: known (OpenSSH accepts any matching line).
        (
            format!("10.0.0.1 {KEY_B}\n10.0.0.1 {KEY_A}\n"),
            "10.0.0.1",
            22,
            KEY_A,
            Verdict::Known,
        ),
    ];
    for (text, host, port, k, want) in cases {
        assert_eq!(
            check_text(&text, host, port, &key(k)),
            want,
            "{text} for {host}:{port}"
        );
    }
    assert_eq!(host_pattern("h", 22), "h");
    assert_eq!(host_pattern("h", 2222), "[h]:2222");
}

#[test]
fn learn_appends_a_line_that_check_then_knows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub").join("known_hosts");
    crate::known_hosts::learn(&p, "10.0.0.1", 2222, &key(KEY_A)).unwrap();
    std::fs::write(&p, std::fs::read_to_string(&p).unwrap().trim_end()).unwrap(); // no final newline
    crate::known_hosts::learn(&p, "10.0.0.2", 22, &key(KEY_B)).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("[10.0.0.1]:2222 ssh-ed25519 "));
    assert_eq!(
        crate::known_hosts::check(&p, "10.0.0.1", 2222, &key(KEY_A)).unwrap(),
        Verdict::Known
    );
    assert_eq!(
        crate::known_hosts::check(&p, "10.0.0.2", 22, &key(KEY_B)).unwrap(),
        Verdict::Known
    );
}

#[test]
fn ssh_config_basics() {
    let text = "\
# global
Host web prod-*
  HostName 10.0.0.5
  User deploy
  Port 2222
  IdentityFile ~/.ssh/deploy_key
Host *
  User fallback
  IdentityFile /keys/all
Match host x
  User never
";
    let web = crate::config::lookup_text(text, "web");
    assert_eq!(web.host_name.as_deref(), Some("10.0.0.5"));
    assert_eq!(web.user.as_deref(), Some("deploy"), "the first value wins");
    assert_eq!(web.port, Some(2222));
    assert_eq!(web.identity_files.len(), 2);
    assert!(web.identity_files[0].ends_with(".ssh/deploy_key"));
    let other = crate::config::lookup_text(text, "db");
    assert_eq!(
        (other.host_name, other.user, other.port),
        (None, Some("fallback".into()), None)
    );
    assert_eq!(crate::config::lookup_text(text, "prod-eu").port, Some(2222));
}

#[test]
fn df_output_gives_free_bytes() {
    let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda1        102400000 40000000  62400000      40% /\n";
    assert_eq!(crate::check::parse_df(text), Some(62_400_000 * 1024));
    assert_eq!(crate::check::parse_df("garbage"), None);
}

#[test]
fn known_algorithms_come_first_in_file_order() {
    use russh::keys::{Algorithm, EcdsaCurve};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("known_hosts");
    let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHJ8+VDDu6mGC4d0e3gVMSv+KSYcxT+ZB6rZ5qRv3cxQYRQuG2Hp2f3L8rYQK6vK2f9rbgw9FA7hvF0sR0Nq0sE=";
    std::fs::write(
        &p,
        format!("other {KEY_A}\n[h]:2222 {ecdsa}\n[h]:2222 {KEY_B}\n"),
    )
    .unwrap();
    let got = crate::known_hosts::known_algorithms(&p, "h", 2222);
    assert_eq!(
        got,
        vec![
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256
            },
            Algorithm::Ed25519
        ]
    );
    assert!(crate::known_hosts::known_algorithms(&p, "h", 22).is_empty());
}
