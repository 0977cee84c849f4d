//! The README's first command, `scripts/demo.sh` (the main job), run as users run it, with this build of
//! davit and lab instance 19 (2 hosts) instead of a release build and instance 0.

use std::process::Command;

const INSTANCE: &str = "19";

#[test]
fn the_readme_main_job_rolls_out_v2_to_two_servers_with_no_failed_request() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .env("DAVIT_BIN", env!("CARGO_BIN_EXE_davit"))
        .env("DAVIT_LAB_INSTANCE", INSTANCE)
        .env("DAVIT_PROXY_BIN", crate::deploy::proxy_binary())
        .env(
            "DAVIT_DEMO_BIN",
            davit_lab::static_binary("davit-demo").expect("a static davit-demo"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo.sh failed ({:?})\n{stdout}\n{stderr}",
        out.status
    );
    // The load ran through the rollout on both servers and nothing failed.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("requests served: "))
        .unwrap_or_else(|| panic!("no request count:\n{stdout}"));
    let (served, failed) = line
        .trim_start_matches("requests served: ")
        .split_once(", failed: ")
        .unwrap();
    assert!(served.parse::<u64>().unwrap() > 50, "{line}");
    assert_eq!(failed, "0", "{line}");
    // Both servers answer v2 at the end, and the releases command shows the history it recorded.
    assert_eq!(
        stdout.matches("answers: davit-demo v2").count(),
        2,
        "{stdout}"
    );
    let releases = stdout
        .split_once("answers: davit-demo v2")
        .map(|(_, rest)| rest)
        .unwrap();
    assert!(releases.contains("succeeded"), "{releases}");
}
