use std::collections::HashMap;

use super::*;

/// Renders the verdict for each image, one per line.
fn check_images(images: &[&str]) -> String {
    images
        .iter()
        .map(|i| match image_problem(i) {
            None => format!("ok   {i:?}"),
            Some((reason, hint)) => format!("BAD  {i:?}: {reason} ({hint})"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn image_references() {
    insta::assert_snapshot!(check_images(&[
        "web",
        "web:1.2.3",
        "acme/web:v1",
        "ghcr.io/acme/web:v1",
        "10.77.0.10:5000/davit-demo:v1",
        "localhost:5000/a/b/c",
        "my.registry.internal/team/app@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "registry.example.com/a__b/c-d/e.f:tag_1.0-rc",
        "",
        "web:",
        ":v1",
        "/app:v1",
        "ghcr.io/acme/ghcr.io/acme/web",
        "ghcr.io/acme/ghcr.io/acme/web:v1",
        "acme/10.77.0.10:5000/web",
        "ghcr.io/Acme/Web:v1",
        "ghcr.io/acme/web:.bad",
        "acme/web@",
        "acme/web@sha256:abc",
        "acme//web",
        "acme/",
        "acme/${VERSION}",
        "acme/web :v1",
        "acme/-web",
    ]));
}

#[test]
fn unknown_services_list_valid_names_and_suggest_the_closest() {
    let valid = ["web", "worker", "db"];
    let problems = check_services(&["wbe", "web", "cache"], &valid);
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(text.join("\n"));
    assert!(check_services(&["db"], &valid).is_empty());
}

#[test]
fn variable_references() {
    let text = "services:\n  web:\n    image: ${REGISTRY}/app:${VERSION:-latest}\n    # uses $COMMENTED\n    \
                environment:\n      A: $PLAIN and $$ESCAPED and ${NESTED:-${INNER}}\n      B: ${REQ:?set REQ}\n      \
                C: ${ALT:+x} ${DASH-d}\n";
    let refs: Vec<String> = variable_refs(text)
        .iter()
        .map(|r| {
            format!(
                "{}:{} {} default={} required={}",
                r.line, r.column, r.name, r.has_default, r.requires_non_empty
            )
        })
        .collect();
    insta::assert_snapshot!(refs.join("\n"));
}

#[test]
fn unset_variables_without_defaults_are_refused() {
    let text = "image: ${REGISTRY}/app:${VERSION:-latest}\nenv: ${TOKEN} ${TOKEN} ${EMPTY:?} ${OK} ${NESTED:-${INNER}}\n";
    let env: HashMap<&str, &str> = [("OK", "1"), ("EMPTY", "")].into();
    let problems = check_variables(Some(Path::new("compose.yaml")), text, |k| {
        env.get(k).copied()
    });
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn missing_required_env_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("present.env"), "A=1\n").unwrap();
    let files = [
        EnvFileRef {
            service: Some("web".into()),
            path: "present.env".into(),
            required: true,
        },
        EnvFileRef {
            service: Some("web".into()),
            path: "missing.env".into(),
            required: true,
        },
        EnvFileRef {
            service: Some("web".into()),
            path: "optional.env".into(),
            required: false,
        },
    ];
    let problems = check_env_files(&files, dir.path());
    assert_eq!(
        problems,
        vec![Problem::MissingEnvFile {
            service: Some("web".into()),
            path: "missing.env".into()
        }]
    );
    insta::assert_snapshot!(problems[0].to_string());
}

#[test]
fn problems_display_one_or_many() {
    let one = Problems(vec![Problem::UnknownService {
        name: "x".into(),
        valid: vec!["web".into()],
    }]);
    insta::assert_snapshot!(one.to_string(), @"refused before touching any host: unknown service `x`: valid services: web");
    assert!(Problems::into_result(vec![]).is_ok());
}
