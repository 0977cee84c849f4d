//! `davit push`, `davit tags`, `davit prune` against the lab registry (instance 5, the registry suite's).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_davit"))
        .args(args)
        .env_remove("DAVIT_REGISTRY_USER")
        .env_remove("DAVIT_INSECURE_REGISTRIES")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

fn registry() -> String {
    let (_lab, info) = davit_lab::for_tests(5, 1);
    info.registry.expect("lab registry")
}

/// Builds a two-layer `FROM scratch` image (busybox + a unique file) in the local engine.
fn image(tag: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("/bin/busybox (busybox-static)");
    std::fs::write(dir.path().join("data"), unique("data")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data /data\n",
    )
    .unwrap();
    let spec = davit_registry::build::BuildSpec {
        name: "cli-test".into(),
        context: dir.path().to_path_buf(),
        tags: vec![tag.into()],
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        davit_registry::build::build_image(&docker, &spec)
            .await
            .unwrap()
            .image_id
    })
}

#[test]
fn push_then_tags_then_prune() {
    let reg = registry();
    let repo = format!("{reg}/{}", unique("cli"));
    let local = format!("davit-cli-test/{}:1", unique("img"));
    image(&local);

    let (code, out, err) = run(&[
        "push",
        &local,
        &repo,
        "--tag",
        "1.9.0",
        "1.10.0",
        "--tag",
        "latest",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.trim().starts_with(&format!("{repo}@sha256:")),
        "stdout is the pinned reference: {out}"
    );
    assert!(err.contains("3 uploaded"), "{err}");

    // Unchanged: nothing sent again, same digest.
    let (code, out2, err) = run(&[
        "push",
        &local,
        &repo,
        "--tag",
        "1.9.0",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("0 uploaded") && err.contains("3 already there"),
        "{err}"
    );
    assert_eq!(out2, out);

    let (code, out, err) = run(&["tags", &repo, "--json", "--insecure-registry", &reg]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut tags: Vec<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.10.0", "1.9.0", "latest"]);

    let (code, out, err) = run(&["tags", &repo, "--insecure-registry", &reg]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");

    // All three tags are one manifest: pruning to 1 keeps the others, since they share its digest.
    let (code, out, err) = run(&[
        "prune",
        &repo,
        "--keep",
        "1",
        "--dry-run",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("would delete"), "{out}");
    assert!(out.contains("kept latest (shares digest)"), "{out}");
}

#[test]
fn prune_deletes_all_but_the_newest_versions() {
    let reg = registry();
    let repo = format!("{reg}/{}", unique("cli-prune"));
    for t in ["1.9.0", "1.10.0", "1.2.0"] {
        let local = format!("davit-cli-test/{}:{t}", unique("img"));
        image(&local);
        let (code, _, err) = run(&[
            "push",
            &local,
            &repo,
            "--tag",
            t,
            "--insecure-registry",
            &reg,
        ]);
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, out, err) = run(&[
        "prune",
        &repo,
        "--keep",
        "2",
        "--dry-run",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("would delete 1.2.0 (sha256:"), "{out}");
    let (code, out, err) = run(&["prune", &repo, "--keep", "2", "--insecure-registry", &reg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("deleted 1.2.0 (sha256:"), "{out}");
    assert!(
        out.contains("kept 1.10.0 (newest)") && out.contains("kept 1.9.0 (newest)"),
        "{out}"
    );
    let (_, out, _) = run(&["tags", &repo, "--json", "--insecure-registry", &reg]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut tags: Vec<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.10.0", "1.9.0"]);
}

#[test]
fn registry_commands_refuse_bad_input_with_exit_2() {
    let cases: [(&[&str], &str); 5] = [
        (&["push", "img", "127.0.0.1:5999/app"], "--tag"),
        (
            &["push", "img", "127.0.0.1:5999/app:v1", "--tag", "v2"],
            "names a tag",
        ),
        (
            &["push", "img", "127.0.0.1:5999/app", "--tag=-bad"],
            "\"-bad\"",
        ),
        (
            &["prune", "127.0.0.1:5999/app", "--keep", "-1"],
            "--keep -1",
        ),
        (&["tags", "127.0.0.1:5999/App"], "invalid image reference"),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn an_unreachable_registry_exits_1_and_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = format!("127.0.0.1:{port}/app");
    let (code, _, err) = run(&["tags", &repo]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("unreachable"),
        "{err}"
    );
}

#[test]
fn build_builds_every_service_with_a_build_section_and_pushes_them() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("web")).unwrap();
    std::fs::create_dir_all(p.join("worker")).unwrap();
    std::fs::copy("/bin/busybox", p.join("web/busybox")).unwrap();
    std::fs::write(p.join("web/Dockerfile"), "FROM scratch AS base\nARG MODE\nCOPY busybox /bin/busybox\nLABEL mode=$MODE\nFROM base AS prod\nLABEL stage=prod\n").unwrap();
    std::fs::write(p.join("worker/data"), unique("worker")).unwrap();
    std::fs::write(
        p.join("worker/Worker.Dockerfile"),
        "FROM scratch\nCOPY data /data\n",
    )
    .unwrap();
    let web_repo = unique("cli-build-web");
    let project = unique("proj");
    std::fs::write(
        p.join("compose.yaml"),
        format!(
            "name: {project}\nservices:\n  web:\n    image: {reg}/{web_repo}:dev\n    build:\n      context: ./web\n      target: prod\n      args:\n        MODE: fast\n\
             \x20 worker:\n    build:\n      context: ./worker\n      dockerfile: Worker.Dockerfile\n\
             \x20 db:\n    image: {reg}/not-built:1\n"
        ),
    )
    .unwrap();
    let file = p.join("compose.yaml");
    let file = file.to_str().unwrap();
    let (code, out, err) = run(&[
        "build",
        "-f",
        file,
        "--tag",
        "1.0.0",
        "latest",
        "--push",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "web: {reg}/{web_repo}:1.0.0, {reg}/{web_repo}:latest (sha256:"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "worker: {project}-worker:1.0.0, {project}-worker:latest"
        )),
        "{out}"
    );
    assert!(!out.contains("db:"), "{out}");
    // web's image names a registry: pushed under both tags. worker has no image: it stays local.
    assert!(
        out.contains(&format!("web: pushed {reg}/{web_repo}@sha256:")),
        "{out}"
    );
    assert!(err.contains("worker: not pushed"), "{err}");
    let (code, out, err) = run(&[
        "tags",
        &format!("{reg}/{web_repo}"),
        "--json",
        "--insecure-registry",
        &reg,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1.0.0") && out.contains("latest"), "{out}");
}
