//! `davit config` as users run it: output formats and exit codes.

use std::process::Command;

fn config_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_davit"))
        .arg("config")
        .args(args)
        .current_dir(dir)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .output()
        .unwrap()
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

#[test]
fn config_prints_compose_json() {
    let dir = project(&[(
        "compose.yaml",
        "name: demo\nservices:\n  web:\n    image: nginx:${TAG:-1}\n    ports: [\"8080:80\"]\n",
    )]);
    let out = config_in(dir.path(), &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], "demo");
    assert_eq!(doc["services"]["web"]["image"], "nginx:1");
    assert_eq!(doc["services"]["web"]["ports"][0]["published"], "8080");
    assert_eq!(doc["networks"]["default"]["name"], "demo_default");
}

#[test]
fn config_lists_services_and_images() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  b:\n    image: busybox\n  a:\n    build: .\n",
    )]);
    let out = config_in(dir.path(), &["--services"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    let out = config_in(dir.path(), &["--images"]);
    let images = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = images.lines().collect();
    assert_eq!(lines.len(), 2, "{images}");
    assert!(lines.contains(&"busybox"), "{images}");
    // A service without `image:` is built as `{project}-{service}`.
    assert!(lines.iter().any(|l| l.ends_with("-a")), "{images}");
}

#[test]
fn config_refuses_bad_input_with_every_position_and_exit_2() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    bogus: 1\n    depends_on: [missing]\n  db:\n    image: ${DB_IMAGE:?set DB_IMAGE}\n",
    )]);
    let out = config_in(dir.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("compose.yaml:4:5"),
        "unknown key position: {err}"
    );
    assert!(err.contains("bogus"), "{err}");
    assert!(
        err.contains("compose.yaml:7:12") && err.contains("DB_IMAGE"),
        "required variable: {err}"
    );
    assert!(err.contains("help:"), "hints: {err}");
}

#[test]
fn config_reports_dependency_cycles() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
    )]);
    let out = config_in(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dependency cycle detected: a -> b -> a"),
        "{err}"
    );
}

#[test]
fn config_yaml_output_round_trips_through_davit() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    command: echo \"a b\"\n",
    )]);
    let out = config_in(dir.path(), &["--format", "yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    let again = project(&[("compose.yaml", &yaml)]);
    let a = config_in(dir.path(), &["--format", "json"]);
    let b = config_in(again.path(), &["--format", "json"]);
    let ja: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let jb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(ja, jb, "{yaml}");
}
