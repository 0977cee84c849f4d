use super::*;

fn redactor(secrets: &[&str]) -> Redactor {
    let mut r = Redactor::new();
    for s in secrets {
        r.add(s);
    }
    r
}

#[test]
fn masks_every_occurrence() {
    let r = redactor(&["hunter22"]);
    assert_eq!(
        r.redact("pw=hunter22 again hunter22."),
        "pw=******** again ********."
    );
}

#[test]
fn text_without_secrets_is_borrowed() {
    let r = redactor(&["hunter22"]);
    assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
}

#[test]
fn the_longest_secret_wins_when_one_contains_another() {
    let r = redactor(&["abcd", "abcdefgh"]);
    assert_eq!(r.redact("x abcdefgh y abcd"), "x ******** y ********");
}

#[test]
fn short_values_and_switch_words_are_not_secrets() {
    let r = redactor(&["abc", "true", "1"]);
    assert!(r.is_empty());
}

#[test]
fn json_escaped_forms_are_masked_too() {
    let r = redactor(&["pa\"ss\\word"]);
    let json = serde_json::to_string(&serde_json::json!({ "env": "PW=pa\"ss\\word" })).unwrap();
    assert_eq!(r.redact(&json), r#"{"env":"PW=********"}"#);
}

#[test]
fn redacts_json_values_and_keys() {
    let r = redactor(&["s3cr3t-value"]);
    let mut v =
        serde_json::json!({ "a": ["x s3cr3t-value", 1], "s3cr3t-value": { "b": "s3cr3t-value" } });
    r.redact_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({ "a": ["x ********", 1], "********": { "b": "********" } })
    );
}

#[test]
fn which_env_values_are_secrets() {
    let text = "DB_PASSWORD=pw-1234\nVERSION=1.4.2\nHOST=db.internal\nAPI_KEY=k-9999\n\
                TOKEN_GENERATED=\nRANDOM=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b\n\
                DATABASE_URL=postgres://app:url-pass-77@db/app\nDEBUG=true\nGITHUB_TOKEN=true\n";
    let mut r = Redactor::new();
    r.add_env_text(text);
    let out = r.redact(
        "pw-1234 1.4.2 db.internal k-9999 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b url-pass-77 true",
    );
    assert_eq!(
        out,
        "******** 1.4.2 db.internal ******** ******** ******** true"
    );
}

#[test]
fn secret_key_names() {
    for k in [
        "DB_PASSWORD",
        "jwt_secret",
        "GITHUB_TOKEN",
        "API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "KEY_FILE_PASS",
        "SENTRY_DSN",
        "BASIC_AUTH",
    ] {
        assert!(is_secret_key(k), "{k}");
    }
    for k in [
        "VERSION", "HOST", "KEYBOARD", "MONKEY", "AUTHOR", "REPLICAS",
    ] {
        assert!(!is_secret_key(k), "{k}");
    }
}

#[test]
fn generated_looking_values() {
    assert!(looks_generated("9f86d081884c7d659a2feaa0c55ad015"));
    assert!(looks_generated("AKIAIOSFODNN7EXAMPLE"));
    assert!(!looks_generated("registry.example.com"));
    assert!(!looks_generated("1.4.2"));
    assert!(!looks_generated("ghcr.io/acme/web:1.2.3-rc1"));
}

#[test]
fn env_hash_is_stable_and_order_free() {
    let a = env_hash([("A", "1"), ("B", "2")]);
    assert_eq!(a, env_hash([("B", "2"), ("A", "1")]));
    assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
    assert_ne!(a, env_hash([("A", "1"), ("B", "3")]));
    assert_ne!(env_hash([("A", "BC")]), env_hash([("AB", "C")]));
    assert_ne!(env_hash([("A", "")]), env_hash::<&str, &str>([]));
}

#[test]
fn env_hash_reveals_no_value() {
    let secret = "d1c7a6f0e5b4c3a29180f7e6d5c4b3a2";
    let h = env_hash([("SECRET", secret)]);
    assert!(!h.contains(secret) && !h.contains(&secret[..8]));
}

#[test]
fn the_writer_masks_secrets_split_across_writes() {
    use std::io::Write as _;
    let r = std::sync::Arc::new(redactor(&["hunter22"]));
    let mut out = Vec::new();
    {
        let mut w = RedactingWriter::new(r.clone(), &mut out);
        w.write_all(b"pw=hun").unwrap();
        w.write_all(b"ter22 ok\nlast hunter").unwrap();
        w.write_all(b"22").unwrap();
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "pw=******** ok\nlast ********"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_redacted_too() {
    let r = redactor(&["hunter22"]);
    assert_eq!(
        r.redact_bytes(b"\xff hunter22 \xfe").as_ref(),
        b"\xff ******** \xfe"
    );
}

#[test]
fn env_file_values_are_secrets_unless_they_cannot_be_one() {
    let cases = [
        ("DAVIT_DEMO_VERSION", "9f86d081884c7d659a2f", true),
        ("GREETING", "hello world, friend", true),
        ("APP_NAME", "shop", false),
        ("PORT", "8080", false),
        ("TIMEOUT_SECONDS", "1234567890", false),
        ("DEBUG", "false", false),
        ("DB_PASSWORD", "pw-1", true),
        ("DB_PASSWORD", "abc", false),
    ];
    for (key, value, secret) in cases {
        assert_eq!(is_env_file_secret(key, value), secret, "{key}={value}");
    }
}

#[test]
fn a_release_environment_masks_env_file_keys_and_secret_looking_ones() {
    let keys: std::collections::BTreeSet<String> = ["FROM_FILE".to_string()].into();
    let mut r = Redactor::new();
    r.add_env_map(
        [
            ("FROM_FILE", "plain-looking-value"),
            ("API_TOKEN", "tok-1"),
            ("GREETING", "hello everyone"),
        ],
        &keys,
    );
    assert_eq!(
        r.redact("plain-looking-value tok-1 hello everyone"),
        "******** ******** hello everyone"
    );
}
