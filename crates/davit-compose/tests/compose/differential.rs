//! Every YAML file of `../shared/corpus`, loaded by `davit_compose::load` and by the reference
//! Compose v2 binary (`$DAVIT_COMPOSE_BIN`, default `davit-reference-compose`), both from the
//! file's directory with the same environment: they must agree on accept/reject and, when
//! accepted, print equal JSON. Per-file results go to `$CARGO_TARGET_DIR/compose-differential.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use davit_compose::{FsLoader, LoadOptions, load};

/// `../shared/corpus` relative to the workspace root (`$CARGO_MANIFEST_DIR/../../../shared/corpus`);
/// from a git worktree elsewhere, the nearest ancestor holding `shared/corpus`.
fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let direct = manifest.join("../../../shared/corpus");
    if direct.is_dir() {
        return direct;
    }
    manifest
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|p| p.is_dir())
        .unwrap_or(direct)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn reference_bin() -> String {
    std::env::var("DAVIT_COMPOSE_BIN").unwrap_or_else(|_| "davit-reference-compose".into())
}

#[test]
fn corpus_agrees_with_compose_v2() {
    let root = corpus()
        .canonicalize()
        .expect("../shared/corpus must exist");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() > 100, "corpus too small: {}", files.len());
    let bin = reference_bin();
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("COMPOSE_"))
        .collect();
    let mut report = String::new();
    let mut mismatches = Vec::new();
    let mut accepted = 0;
    for f in &files {
        let dir = f.parent().unwrap();
        let base = f.file_name().unwrap();
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let out = Command::new(&bin)
            .arg("-f")
            .arg(base)
            .args(["config", "--format", "json"])
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .unwrap_or_else(|e| panic!("cannot run the reference compose binary {bin:?}: {e}"));
        let reference: Option<serde_json::Value> = if out.status.success() {
            Some(serde_json::from_slice(&out.stdout).expect("reference JSON"))
        } else {
            None
        };
        let opts = LoadOptions::new(dir)
            .with_environment(env.iter().cloned())
            .with_file(base);
        let ours = load(&opts, &FsLoader)
            .map_err(|d| d.to_string())
            .and_then(|p| match p.config_json() {
                Ok(_) => Ok(p),
                Err(e) => Err(e.to_string()),
            });
        let verdict = match (&reference, &ours) {
            (Some(r), Ok(p)) if r == p.to_json() => "ok (accepted, same JSON)".to_owned(),
            (Some(r), Ok(p)) => format!(
                "MISMATCH json\n  reference: {r}\n  ours:      {}",
                p.to_json()
            ),
            (None, Err(_)) => "ok (rejected by both)".to_owned(),
            (Some(_), Err(d)) => format!("MISMATCH we reject, compose accepts: {d}"),
            (None, Ok(_)) => format!(
                "MISMATCH we accept, compose rejects: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ),
        };
        if reference.is_some() {
            accepted += 1;
        }
        if verdict.starts_with("MISMATCH") {
            mismatches.push(format!("{rel}: {verdict}"));
        }
        report.push_str(&format!("{rel}: {verdict}\n"));
    }
    let summary = format!(
        "{} of {} files agree ({} accepted by compose)\n",
        files.len() - mismatches.len(),
        files.len(),
        accepted
    );
    report.push_str(&summary);
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let _ = std::fs::write(target.join("compose-differential.txt"), &report);
    println!("{report}");
    assert!(mismatches.is_empty(), "{summary}{}", mismatches.join("\n"));
}
