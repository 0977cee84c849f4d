//! `preflight` over projects loaded by `davit-compose` from real files.

use std::collections::BTreeMap;
use std::fs;

use davit_compose::{FsLoader, LoadOptions, load};
use davit_ops::preflight::{Problem, check_compose_files, preflight};

fn project(compose: &str, env: &[(&str, &str)]) -> (davit_compose::Project, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    fs::write(dir.path().join("web.env"), "A=1\n").unwrap();
    let vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let opts = LoadOptions::new(dir.path()).with_environment(vars);
    (load(&opts, &FsLoader).unwrap(), dir)
}

const COMPOSE: &str = "services:
  web:
    image: ${REGISTRY}/web:${VERSION}
    env_file:
      - web.env
      - path: optional.env
        required: false
  worker:
    image: acme/Worker:v1
";

#[test]
fn a_good_selection_passes() {
    let (p, _dir) = project(
        COMPOSE,
        &[("REGISTRY", "10.77.0.10:5000"), ("VERSION", "v1")],
    );
    assert_eq!(preflight(&p, &["web".to_owned()]), Ok(()));
}

#[test]
fn every_problem_is_reported_at_once() {
    let (p, _dir) = project(
        COMPOSE,
        &[("REGISTRY", "ghcr.io/acme/ghcr.io/acme"), ("VERSION", "")],
    );
    let problems = preflight(&p, &[]).unwrap_err().0;
    let kinds: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        kinds,
        vec![
            "service `web`: image `ghcr.io/acme/ghcr.io/acme/web:` has an empty tag (it ends with `:`) (the tag variable is empty, e.g. app:${VERSION} with VERSION unset)",
            "service `worker`: image `acme/Worker:v1` has uppercase letters in the repository (`Worker`) (repository names must be lowercase: `worker`)",
        ]
    );
    let unknown = preflight(&p, &["db".to_owned(), "worker".to_owned()])
        .unwrap_err()
        .0;
    assert_eq!(
        unknown[0],
        Problem::UnknownService {
            name: "db".into(),
            valid: vec!["web".into(), "worker".into()]
        }
    );
    assert_eq!(
        unknown.len(),
        2,
        "the selected worker's image is checked, web's is not: {unknown:?}"
    );
}

#[test]
fn unset_variables_in_the_files() {
    let (_p, dir) = project(COMPOSE, &[("REGISTRY", "r"), ("VERSION", "v")]);
    let files = vec![dir.path().join("compose.yaml")];
    let problems = check_compose_files(&files, |k| (k == "REGISTRY").then_some("r"));
    assert_eq!(problems.len(), 1);
    assert!(
        matches!(&problems[0], Problem::UnsetVariable { name, line: 3, column: 28, .. } if name == "VERSION"),
        "{problems:?}"
    );
}
