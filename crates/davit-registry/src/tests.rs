use std::path::Path;

use crate::auth::{Credentials, Settings, from_docker_config};
use crate::build::{Ignore, split_tag};
use crate::client::parse_challenge;
use crate::prune::{PruneOptions, TagInfo, plan};
use crate::tags::{GitInfo, Strategy, sanitize, tags_for};
use crate::tarstream::TarStream;
use crate::{Error, ImageRef, validate_repository, validate_tag};

#[test]
fn plain_http_only_for_loopback_and_registries_named_insecure() {
    let s = Settings {
        insecure: vec![
            "10.77.0.0/16".into(),
            "reg.lan:5000".into(),
            "bare.lan".into(),
        ],
        ..Default::default()
    };
    let cases = [
        ("127.0.0.1:5000", true),
        ("127.8.9.10:80", true),
        ("localhost:5000", true),
        ("[::1]:5000", true),
        ("10.77.0.6:5000", true),
        ("10.78.0.6:5000", false),
        ("reg.lan:5000", true),
        ("reg.lan:5001", false),
        ("bare.lan:443", true),
        ("ghcr.io", false),
    ];
    for (reg, want) in cases {
        assert_eq!(s.is_insecure(reg), want, "{reg}");
    }
    // Lab addresses are not insecure unless told.
    assert!(!Settings::default().is_insecure("10.77.0.6:5000"));
}

fn creds(config: &str, registry: &str) -> Result<Credentials, Error> {
    from_docker_config(config, Path::new("/cfg.json"), registry, None)
}

#[test]
fn credentials_from_docker_config_auths() {
    // "alice:s3cret:with:colons" base64.
    let cfg = r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"YWxpY2U6czNjcmV0OndpdGg6Y29sb25z"},
                 "https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"}}}"#;
    assert_eq!(
        creds(cfg, "reg.example:5000").unwrap(),
        Credentials::Basic {
            user: "alice".into(),
            password: "s3cret:with:colons".into()
        }
    );
    assert_eq!(
        creds(cfg, "docker.io").unwrap(),
        Credentials::Basic {
            user: "hub".into(),
            password: "hubpw".into()
        }
    );
    assert_eq!(creds(cfg, "other.example").unwrap(), Credentials::Anonymous);
    let bad = creds(r#"{"auths":{"r":{"auth":"%%%"}}}"#, "r").unwrap_err();
    assert!(bad.to_string().contains("not base64"), "{bad}");
    assert!(
        creds("{", "r")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON")
    );
}

#[test]
fn credentials_from_a_helper_program() {
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-davittest");
    // Answers for one server only, as real helpers do; reads the server from stdin.
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\nif [ \"$server\" = \"reg.example\" ]; then\n\
         echo '{\"ServerURL\":\"reg.example\",\"Username\":\"bob\",\"Secret\":\"helper-pw\"}'\nelse\n\
         echo 'credentials not found in native keychain'; exit 1\nfi\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = r#"{"credHelpers":{"reg.example":"davittest"},"credsStore":"davittest",
                 "auths":{"fallback.example":{"auth":"Zjpn"}}}"#;
    let get = |reg: &str| from_docker_config(cfg, Path::new("/cfg.json"), reg, Some(dir.path()));
    let c = get("reg.example").unwrap();
    assert_eq!(
        c,
        Credentials::Basic {
            user: "bob".into(),
            password: "helper-pw".into()
        }
    );
    assert!(
        !format!("{c:?}").contains("helper-pw"),
        "Debug hides the secret"
    );
    // The store has nothing for it: the auths entry is used.
    assert_eq!(
        get("fallback.example").unwrap(),
        Credentials::Basic {
            user: "f".into(),
            password: "g".into()
        }
    );
    let missing = from_docker_config(
        r#"{"credsStore":"nope"}"#,
        Path::new("/c"),
        "r",
        Some(dir.path()),
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("docker-credential-nope"),
        "{missing}"
    );
}

#[test]
fn bearer_challenges_are_parsed() {
    let got = parse_challenge(
        r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(
        got,
        [
            (
                "realm".to_string(),
                "https://auth.example/token".to_string()
            ),
            ("service".into(), "registry.example".into()),
            ("scope".into(), "repository:a/b:pull,push".into()),
        ]
    );
    assert_eq!(
        parse_challenge(r#"Basic realm="x""#),
        [("realm".to_string(), "x".to_string())]
    );
}

#[test]
fn tags_and_repositories_are_checked() {
    for ok in ["latest", "1.10.0", "_x", "a-b.c_d"] {
        validate_tag(ok).unwrap();
    }
    for bad in ["", "-x", ".x", "a/b", "a:b", &"x".repeat(129)] {
        let e = validate_tag(bad).unwrap_err();
        assert!(e.is_usage(), "{bad}");
    }
    for ok in ["app", "team/app", "a.b/c-d/e_f"] {
        validate_repository(ok).unwrap();
    }
    for bad in ["", "App", "a//b", "-a", "a-"] {
        assert!(validate_repository(bad).is_err(), "{bad}");
    }
}

#[test]
fn image_references_parse_as_docker_does() {
    let r = ImageRef::parse("10.77.0.6:5000/team/app:1.2").unwrap();
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str(), r.reference()),
        ("10.77.0.6:5000", "team/app", "1.2")
    );
    let r = ImageRef::parse("app").unwrap();
    assert_eq!(
        (r.registry.as_str(), r.repository.as_str()),
        ("index.docker.io", "library/app")
    );
    let d = format!("sha256:{}", "a".repeat(64));
    let r = ImageRef::parse(&format!("localhost:5000/app@{d}")).unwrap();
    assert_eq!(r.reference(), d);
    assert!(ImageRef::parse("bad ref!").unwrap_err().is_usage());
}

#[test]
fn ci_tag_strategies() {
    let git = |branch: Option<&str>, tag: Option<&str>| GitInfo {
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: branch.map(String::from),
        tag: tag.map(String::from),
    };
    let all: Vec<Strategy> = ["latest", "sha", "branch-sha", "semver", "staging"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let cases = [
        ("main branch", git(Some("main"), None)),
        ("feature branch", git(Some("Feature/Login_Page"), None)),
        ("release tag", git(None, Some("v1.10.2"))),
        ("pre-release tag", git(None, Some("v2.0.0-rc.1"))),
        ("non-version tag", git(Some("main"), Some("nightly"))),
    ];
    let out: Vec<(String, Vec<String>)> = cases
        .iter()
        .map(|(n, g)| (n.to_string(), tags_for(&all, g)))
        .collect();
    insta::assert_yaml_snapshot!(out);
    assert_eq!(sanitize("..Weird Branch!"), "weird-branch-");
    assert!("-bad".parse::<Strategy>().is_err());
    assert_eq!(
        "moving:production".parse::<Strategy>().unwrap(),
        Strategy::Moving("production".into())
    );
}

fn t(tag: &str, digest: &str, created: Option<&str>) -> TagInfo {
    TagInfo {
        tag: tag.into(),
        digest: format!("sha256:{digest}"),
        created: created.map(String::from),
    }
}

#[test]
fn prune_plans() {
    let versions = vec![
        t("1.9.0", "a", None),
        t("1.10.0", "b", None),
        t("v1.2.0", "c", None),
        t("0.1.0", "d", None),
    ];
    let mixed = vec![
        t("latest", "b", Some("2026-01-03T00:00:00.5Z")),
        t("1.9.0", "a", Some("2026-01-02T00:00:00.123456789Z")),
        t("1.10.0", "b", Some("2026-01-03T00:00:00.5Z")),
        t("nightly", "e", Some("2026-01-02T00:00:00.2Z")),
        t("old", "f", Some("2025-12-31T23:59:59Z")),
        t("unknown", "g", None),
    ];
    let cases = [
        (
            "semver keep 2",
            versions.clone(),
            PruneOptions {
                keep: 2,
                ..Default::default()
            },
        ),
        (
            "semver keep 0 protect and running",
            versions.clone(),
            PruneOptions {
                keep: 0,
                protect: vec!["0.1.0".into()],
                running: vec!["sha256:c".into()],
                ..Default::default()
            },
        ),
        (
            "semver keep more than there are",
            versions,
            PruneOptions {
                keep: 10,
                ..Default::default()
            },
        ),
        (
            "mixed by push time keep 1",
            mixed.clone(),
            PruneOptions {
                keep: 1,
                ..Default::default()
            },
        ),
        (
            "mixed keep 3",
            mixed,
            PruneOptions {
                keep: 3,
                ..Default::default()
            },
        ),
    ];
    let out: Vec<(String, crate::PrunePlan)> = cases
        .into_iter()
        .map(|(n, tags, o)| (n.to_string(), plan(&tags, &o)))
        .collect();
    insta::assert_yaml_snapshot!(out);
}

#[test]
fn dockerignore_patterns() {
    let ig = Ignore::parse("# comment\n\ntarget\n*.log\n!keep.log\ndocs/**/*.md\n./secret/\n");
    let cases = [
        ("target", true),
        ("target/debug/x", true),
        ("src/target", false),
        ("a.log", true),
        ("keep.log", false),
        ("dir/a.log", false),
        ("docs/x/y/z.md", true),
        ("docs/z.md", true),
        ("docs/z.txt", false),
        ("secret/key", true),
        ("Dockerfile", false),
    ];
    for (p, want) in cases {
        assert_eq!(ig.excludes(p), want, "{p}");
    }
    assert_eq!(split_tag("reg:5000/a/b:1.2"), ("reg:5000/a/b", "1.2"));
    assert_eq!(split_tag("reg:5000/a/b"), ("reg:5000/a/b", "latest"));
}

#[tokio::test]
async fn tar_entries_stream_in_small_pieces() {
    let long = format!("blobs/sha256/{}", "ab".repeat(60));
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", b"[]".to_vec()),
        (long.as_str(), vec![7u8; 1500]),
        ("x/layer.tar", vec![1u8; 512]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    // 7-byte pieces: headers and data straddle chunk boundaries.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        .chunks(7)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let mut tar = TarStream::new(futures_util::stream::iter(chunks));
    let mut seen = Vec::new();
    while let Some(e) = tar.next_entry().await.unwrap() {
        if e.path == long {
            let mut data = Vec::new();
            tar.read_data(e.size, |p| data.extend_from_slice(p))
                .await
                .unwrap();
            assert_eq!(data, vec![7u8; 1500]);
        }
        seen.push((e.path, e.size));
    }
    assert_eq!(
        seen,
        [
            ("manifest.json".to_string(), 2),
            (long.clone(), 1500),
            ("x/layer.tar".to_string(), 512)
        ]
    );
}

#[test]
fn errors_name_what_failed_and_keep_their_cause() {
    let e = Error::Unreachable {
        registry: "10.0.0.1:5000".into(),
        url: "http://10.0.0.1:5000/v2/".into(),
        source: Box::new(std::io::Error::other("connection refused")),
    };
    assert!(
        e.to_string().contains("10.0.0.1:5000") && e.to_string().contains("--insecure-registry")
    );
    assert_eq!(
        std::error::Error::source(&e).unwrap().to_string(),
        "connection refused"
    );
    assert!(!e.is_usage());
}
