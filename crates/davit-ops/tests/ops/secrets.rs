//! `secrets init` on real files: modes, atomic replacement, idempotence, refusals.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;

use davit_ops::{Error, secrets_init};

const TEMPLATE: &str = "# Database\r\nDB_HOST=db\r\nDB_PASSWORD=\r\n\r\n# Tokens\r\nexport JWT_SECRET=\"\"\r\nSALT= # rotate\r\nPLAIN=value\r\n";

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The values of `KEY=` lines, by key.
fn value(text: &str, key: &str) -> String {
    davit_ops::dotenv::pairs(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap()
        .1
}

#[test]
fn writes_mode_0600_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join(".env.example");
    let out = dir.path().join(".env");
    fs::write(&template, TEMPLATE).unwrap();

    let report = secrets_init(&template, &out).unwrap();
    assert!(report.written);
    assert_eq!(report.generated, vec!["DB_PASSWORD", "JWT_SECRET", "SALT"]);
    assert_eq!(mode(&out), 0o600);
    let first = fs::read(&out).unwrap();
    let text = String::from_utf8(first.clone()).unwrap();
    for key in ["DB_PASSWORD", "JWT_SECRET", "SALT"] {
        let v = value(&text, key);
        assert_eq!(v.len(), 64, "{key}");
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    // Order, comments, CRLF, quoting and set values are kept: blanking the secrets gives the template back.
    let mut blanked = text.clone();
    for key in ["DB_PASSWORD", "JWT_SECRET", "SALT"] {
        blanked = blanked.replace(&value(&text, key), "");
    }
    assert_eq!(blanked, TEMPLATE);

    let mtime = fs::metadata(&out).unwrap().modified().unwrap();
    let again = secrets_init(&template, &out).unwrap();
    assert!(!again.written && again.generated.is_empty());
    assert_eq!(again.kept, vec!["DB_PASSWORD", "JWT_SECRET", "SALT"]);
    assert_eq!(fs::read(&out).unwrap(), first, "byte-identical");
    assert_eq!(
        fs::metadata(&out).unwrap().modified().unwrap(),
        mtime,
        "not rewritten"
    );
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn two_files_get_different_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    fs::write(&template, "A=\n").unwrap();
    secrets_init(&template, &dir.path().join("one.env")).unwrap();
    secrets_init(&template, &dir.path().join("two.env")).unwrap();
    let one = fs::read_to_string(dir.path().join("one.env")).unwrap();
    let two = fs::read_to_string(dir.path().join("two.env")).unwrap();
    assert_ne!(value(&one, "A"), value(&two, "A"));
}

#[test]
fn new_template_keys_are_added_and_edits_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    let out = dir.path().join("o.env");
    fs::write(&template, "HOST=db\nPASSWORD=\n").unwrap();
    secrets_init(&template, &out).unwrap();
    let edited = fs::read_to_string(&out)
        .unwrap()
        .replace("HOST=db", "HOST=db.internal");
    fs::write(&out, &edited).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&template, "HOST=db\nPASSWORD=\n# added later\nTOKEN=\n").unwrap();

    let report = secrets_init(&template, &out).unwrap();
    assert_eq!(report.appended, vec!["TOKEN"]);
    assert_eq!(report.generated, vec!["TOKEN"]);
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.starts_with(&edited), "{text}");
    assert!(text.contains("\n# added later\nTOKEN="));
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn an_up_to_date_file_with_loose_permissions_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    let out = dir.path().join("o.env");
    fs::write(&template, "A=\n").unwrap();
    secrets_init(&template, &out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
    let report = secrets_init(&template, &out).unwrap();
    assert!(!report.written && report.mode_fixed);
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn refusals_are_usage_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    fs::write(&template, "A=\n").unwrap();
    let target = dir.path().join("real.env");
    fs::write(&target, "A=keep\n").unwrap();
    let link = dir.path().join("link.env");
    symlink(&target, &link).unwrap();

    let missing = dir.path().join("missing.env");
    let cases: Vec<(Error, String)> = vec![
        (
            secrets_init(&missing, &dir.path().join("o.env")).unwrap_err(),
            missing.display().to_string(),
        ),
        (
            secrets_init(&template, &link).unwrap_err(),
            link.display().to_string(),
        ),
        (
            secrets_init(&template, dir.path()).unwrap_err(),
            dir.path().display().to_string(),
        ),
        (
            secrets_init(&template, &template).unwrap_err(),
            template.display().to_string(),
        ),
        (
            secrets_init(&template, &dir.path().join("no/such/dir/o.env")).unwrap_err(),
            "no/such/dir".into(),
        ),
    ];
    for (err, names) in &cases {
        assert!(err.is_usage(), "{err}");
        assert!(
            err.to_string().contains(names.as_str()),
            "{err} should name {names}"
        );
    }
    assert!(matches!(
        cases[1].0,
        Error::OutNotRegular {
            what: "a symbolic link",
            ..
        }
    ));
    // The link's target was not touched.
    assert_eq!(fs::read_to_string(&target).unwrap(), "A=keep\n");
    assert!(!dir.path().join("o.env").exists());
}

#[test]
fn every_generated_secret_is_masked_by_a_redactor_built_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    let out = dir.path().join("o.env");
    // Key names that say nothing about secrecy: the values are masked because they look generated.
    fs::write(
        &template,
        "HOST=db.internal\nA=\nB=\"\"\nexport C=\nVERSION=1.4.2\n",
    )
    .unwrap();
    secrets_init(&template, &out).unwrap();
    let text = fs::read_to_string(&out).unwrap();
    let values: Vec<String> = ["A", "B", "C"].iter().map(|k| value(&text, k)).collect();

    let redactor = davit_ops::Redactor::from_env_files([&out]).unwrap();
    let log = format!(
        "connecting to db.internal with {} / {}; token={}; version 1.4.2",
        values[0], values[1], values[2]
    );
    assert_eq!(
        redactor.redact(&log),
        "connecting to db.internal with ******** / ********; token=********; version 1.4.2"
    );
    // The environment's hash is stable and shows none of them.
    let pairs = davit_ops::dotenv::pairs(&text);
    let hash = davit_ops::env_hash(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(
        hash,
        davit_ops::env_hash(pairs.iter().rev().map(|(k, v)| (k.as_str(), v.as_str())))
    );
    assert!(values.iter().all(|v| !hash.contains(&v[..8])));
}
