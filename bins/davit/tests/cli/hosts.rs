//! `davit hosts check` as users run it, against lab instance 3 (its host h5 is for these tests).

use std::process::{Command, Output};

const INSTANCE: u8 = 3;
const HOSTS: u16 = 6;

fn hosts_check(args: &[&str], info: &davit_lab::LabInfo) -> Output {
    Command::new(env!("CARGO_BIN_EXE_davit"))
        .args(["hosts", "check"])
        .args(args)
        .env("DAVIT_IDENTITY", &info.identity)
        .env("DAVIT_KNOWN_HOSTS", &info.known_hosts)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn hosts_check_json_reports_every_host() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let (h5, h1) = (&info.hosts[4].url, &info.hosts[0].url);
    let out = hosts_check(&["--host", h5, "--host", h1, "--json"], &info);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["url"], h5.as_str());
    assert_eq!(hosts[1]["url"], h1.as_str());
    for h in hosts {
        assert_eq!(h["ok"], true, "{h}");
        assert!(
            h["engine_version"].as_str().is_some_and(|s| !s.is_empty()),
            "{h}"
        );
        assert!(
            h["cpus"].as_i64().unwrap() >= 1 && h["memory_bytes"].as_i64().unwrap() > 0,
            "{h}"
        );
        assert!(h["free_disk_bytes"].as_u64().unwrap() > 0, "{h}");
        assert!(h["os"].is_string(), "{h}");
    }
}

#[test]
fn hosts_check_human_output_has_one_line_per_host() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let out = hosts_check(&["--host", &info.hosts[4].url], &info);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("ok    {}  docker ", info.hosts[4].url)),
        "{text}"
    );
    assert!(
        text.contains("CPUs") && text.contains("free disk"),
        "{text}"
    );
}

#[test]
fn one_failing_host_means_exit_1_and_says_why() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let dir = tempfile_dir();
    let empty = dir.join("known_hosts");
    let out = Command::new(env!("CARGO_BIN_EXE_davit"))
        .args([
            "hosts",
            "check",
            "--json",
            "--host",
            &info.hosts[4].url,
            "--known-hosts",
        ])
        .arg(&empty)
        .env("DAVIT_IDENTITY", &info.identity)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let h = &v["hosts"][0];
    assert_eq!(h["ok"], false);
    let err = h["error"].as_str().unwrap();
    assert!(
        err.contains("not known") && err.contains("--accept-new-host-keys"),
        "{err}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 1 host(s) failed"), "{stderr}");
    assert!(
        !empty.exists(),
        "an unknown key is not recorded without --accept-new-host-keys"
    );

    // With --accept-new-host-keys it is recorded, and the host passes.
    let out = Command::new(env!("CARGO_BIN_EXE_davit"))
        .args([
            "hosts",
            "check",
            "--accept-new-host-keys",
            "--host",
            &info.hosts[4].url,
            "--known-hosts",
        ])
        .arg(&empty)
        .env("DAVIT_IDENTITY", &info.identity)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&empty)
            .unwrap()
            .starts_with(&info.hosts[4].address)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_is_exit_2_before_any_host_is_touched() {
    let (_lab, info) = davit_lab::for_tests(INSTANCE, HOSTS);
    let out = hosts_check(
        &["--host", &info.hosts[4].url, "--host", "ftp://nope"],
        &info,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no host was checked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid host URL `ftp://nope`"));

    let out = hosts_check(
        &["--host", &info.hosts[4].url, "--connect-timeout", "soon"],
        &info,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connect-timeout soon"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("davit-cli-hosts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
