//! The `davit` command line as users run it.

#[path = "cli/config.rs"]
mod config;

use std::process::Command;

/// A run's output, stdout then stderr, as one text to search.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A run's exit code and its output, labelled, for an assertion's message.
fn report(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What a davit run printed, then what the lab hosts of `instances` run now (their containers with
/// the ports they listen on, their addresses and routes): the message of an assertion on a run
/// that touched them, so that a failure in CI says what the hosts looked like.
fn ran(out: &std::process::Output, instances: &[u8]) -> String {
    let mut s = report(out);
    s.push('\n');
    for i in instances {
        s.push_str(&format!("lab instance {i} now:\n"));
        s.push_str(&davit_lab::diagnose::instance(*i));
    }
    s
}

fn davit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_davit"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn lab_up_refuses_negative_host_counts() {
    let out = davit(&["lab", "up", "--hosts", "-1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--hosts -1") && err.contains("0 to 64"),
        "{err}"
    );
}

#[test]
fn lab_up_refuses_too_many_hosts() {
    let out = davit(&["lab", "up", "--hosts", "500"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--hosts 500") && err.contains("0 to 64"),
        "{err}"
    );
}

#[test]
fn lab_up_refuses_a_non_number() {
    let out = davit(&["lab", "up", "--hosts", "three"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("three"));
}

#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/deploy.rs"]
mod deploy;
#[path = "cli/hosts.rs"]
mod hosts;
#[path = "cli/jobs.rs"]
mod jobs;
#[path = "cli/ops.rs"]
mod ops;
#[path = "cli/ops_lab.rs"]
mod ops_lab;
#[path = "cli/probe.rs"]
mod probe;
#[path = "cli/registry.rs"]
mod registry;
