//! `davit secrets` and `davit notify` as users run them.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use crate::text;

fn davit_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davit"));
    cmd.args(args).env_remove("DAVIT_NOTIFY_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const TEMPLATE: &str = "# App\nAPP_NAME=shop\nDB_PASSWORD=\nexport JWT_SECRET=\"\"\nSESSION_KEY= # rotate yearly\r\n\nAPI_TOKEN=\n";
const SECRET_KEYS: [&str; 4] = ["DB_PASSWORD", "JWT_SECRET", "SESSION_KEY", "API_TOKEN"];

fn secret_values(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    davit_ops::dotenv::pairs(&text)
        .into_iter()
        .filter(|(k, _)| SECRET_KEYS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn secrets_init_fills_empty_keys_writes_0600_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (template, out) = (dir.path().join(".env.example"), dir.path().join(".env"));
    fs::write(&template, TEMPLATE).unwrap();
    let args = [
        "secrets",
        "init",
        "--template",
        template.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];

    let first = davit_env(&args, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        text(&first)
            .contains("generated 4 new secret(s): DB_PASSWORD, JWT_SECRET, SESSION_KEY, API_TOKEN"),
        "{}",
        text(&first)
    );
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let written = fs::read(&out).unwrap();
    let secrets = secret_values(&out);
    assert_eq!(secrets.len(), 4);
    for s in &secrets {
        assert!(
            s.len() >= 43
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s}"
        );
    }
    let unique: std::collections::HashSet<&String> = secrets.iter().collect();
    assert_eq!(unique.len(), 4);
    let expected = TEMPLATE
        .replace("DB_PASSWORD=\n", &format!("DB_PASSWORD={}\n", secrets[0]))
        .replace("JWT_SECRET=\"\"", &format!("JWT_SECRET=\"{}\"", secrets[1]))
        .replace("SESSION_KEY= #", &format!("SESSION_KEY={} #", secrets[2]))
        .replace("API_TOKEN=\n", &format!("API_TOKEN={}\n", secrets[3]));
    assert_eq!(
        String::from_utf8(written.clone()).unwrap(),
        expected,
        "order, comments, CRLF and set values kept"
    );

    let second = davit_env(&args, &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(text(&second).contains("is up to date"), "{}", text(&second));
    assert_eq!(
        fs::read(&out).unwrap(),
        written,
        "byte-identical after a second run"
    );
}

#[test]
fn secrets_never_appear_in_any_output_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let (template, out) = (dir.path().join("t.env"), dir.path().join("o.env"));
    fs::write(&template, TEMPLATE).unwrap();
    let (t, o) = (template.to_str().unwrap(), out.to_str().unwrap());
    let trace = [("DAVIT_LOG", "trace"), ("RUST_BACKTRACE", "1")];
    let mut captured = String::new();
    for args in [
        vec!["secrets", "init", "--template", t, "--out", o],
        vec!["secrets", "init", "--template", t, "--out", o],
        vec!["secrets", "init", "--template", t, "--out", o, "--json"],
    ] {
        let run = davit_env(&args, &trace);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
        captured.push_str(&text(&run));
    }
    // Refusals involving the secrets file: it as a template for itself, and a link to it.
    let link = dir.path().join("link.env");
    symlink(&out, &link).unwrap();
    for args in [
        vec!["secrets", "init", "--template", o, "--out", o],
        vec![
            "secrets",
            "init",
            "--template",
            t,
            "--out",
            link.to_str().unwrap(),
        ],
    ] {
        let run = davit_env(&args, &trace);
        assert_eq!(run.status.code(), Some(2), "{}", text(&run));
        captured.push_str(&text(&run));
    }
    // A notification carrying the file's values, to a webhook that is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secrets = secret_values(&out);
    let message = format!("DB_PASSWORD={}", secrets[0]);
    let run = davit_env(
        &[
            "notify",
            "--notify",
            &format!("http://127.0.0.1:{port}/{}", secrets[1]),
            "--message",
            &message,
        ],
        &trace,
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    captured.push_str(&text(&run));

    assert!(
        captured.contains("DB_PASSWORD"),
        "the output names the keys: {captured}"
    );
    for s in &secrets {
        assert!(
            !captured.contains(s.as_str()),
            "a secret leaked into the output:\n{captured}"
        );
        assert!(
            !captured.contains(&s[..12]),
            "part of a secret leaked into the output:\n{captured}"
        );
    }
}

#[test]
fn a_missing_template_is_refused_with_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.env.example");
    let out = dir.path().join(".env");
    let run = davit_env(
        &[
            "secrets",
            "init",
            "--template",
            missing.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("No such file"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn an_out_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.env");
    fs::write(&template, "A=\n").unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, "untouched\n").unwrap();
    let link = dir.path().join(".env");
    symlink(&target, &link).unwrap();
    let run = davit_env(
        &[
            "secrets",
            "init",
            "--template",
            template.to_str().unwrap(),
            "--out",
            link.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("symbolic link") && err.contains(link.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "untouched\n");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A webhook receiver on loopback that answers 200 and sends each request's body.
fn receiver() -> (String, mpsc::Receiver<(String, serde_json::Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(&mut stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((_, v)) = line
                    .split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            if tx
                .send((
                    request_line.trim().to_owned(),
                    serde_json::from_slice(&body).unwrap(),
                ))
                .is_err()
            {
                return;
            }
        }
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn notify_posts_the_event_in_the_chosen_shape() {
    let (base, seen) = receiver();
    let run = davit_env(
        &[
            "notify",
            "--notify",
            &format!("discord={base}/d"),
            "--notify",
            &format!("generic={base}/g"),
            "--outcome",
            "rolled_back",
            "--project",
            "shop",
            "--env",
            "production",
            "--release",
            "r9",
            "--host",
            "ssh://root@10.77.9.2:22",
            "--message",
            "health check failed",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let mut got: Vec<(String, serde_json::Value)> = (0..2)
        .map(|_| seen.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got[0].0, "POST /d HTTP/1.1");
    assert_eq!(
        got[0].1,
        serde_json::json!({ "content": "↩️ davit: shop (production) release r9 rolled back on 1 host (ssh://root@10.77.9.2:22): health check failed" })
    );
    assert_eq!(got[1].1["outcome"], "rolled_back");
    assert_eq!(
        got[1].1["hosts"],
        serde_json::json!(["ssh://root@10.77.9.2:22"])
    );
}

#[test]
fn notify_reads_davit_notify_url() {
    let (base, seen) = receiver();
    let run = davit_env(
        &["notify", "--outcome", "started"],
        &[("DAVIT_NOTIFY_URL", &format!("slack={base}/s"))],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let (_, body) = seen.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("🚀 davit: davit deploy started"),
        "{body}"
    );
}

#[test]
fn notify_to_a_down_webhook_exits_1_and_a_bad_url_exits_2() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = davit_env(
        &[
            "notify",
            "--notify",
            &format!("http://127.0.0.1:{port}/token-in-path"),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("cannot connect") && !text(&run).contains("token-in-path"),
        "{}",
        text(&run)
    );
    // The failure is also a logged warning (what a deploy leaves behind when its webhook is down).
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("WARN")
            && stderr.contains("webhook notification failed; the deploy goes on"),
        "{stderr}"
    );

    let run = davit_env(&["notify", "--notify", "ftp://example.invalid/x"], &[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("scheme `ftp` is not supported"),
        "{}",
        text(&run)
    );

    let run = davit_env(&["notify"], &[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(text(&run).contains("--notify URL"), "{}", text(&run));
}

/// Runs `davit preflight ARGS` on a project whose compose.yaml is `compose`, with a clean environment
/// plus `env`.
fn preflight(compose: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davit"));
    cmd.arg("preflight")
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.output().unwrap(), dir)
}

const PROJECT: &str = "name: shop
services:
  web:
    image: ${REGISTRY}/web:${VERSION}
  worker:
    image: ${REGISTRY}/worker:${VERSION:-latest}
x-davit:
  environments:
    production:
      hosts: [ssh://root@10.77.9.2:22]
      variables: {REGISTRY: ghcr.io/acme, VERSION: \"1.2\"}
    staging:
      hosts: [ssh://root@10.77.9.3:22]
";

#[test]
fn preflight_passes_a_deployable_project() {
    let (out, _dir) = preflight(PROJECT, &["--env", "production"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "preflight ok: project shop, services web, worker, environment production (1 hosts)\n"
    );
}

/// Asserts that preflight refuses with exit 2 and an error containing every `needle`.
fn refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused before touching any host") || err.contains("--env"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from:\n{err}");
    }
}

#[test]
fn preflight_refuses_an_unknown_service_listing_the_valid_ones() {
    let (out, _dir) = preflight(PROJECT, &["--env", "production", "--service", "wbe"], &[]);
    refused(
        &out,
        &[
            "unknown service `wbe`",
            "did you mean `web`?",
            "valid services: web, worker",
        ],
    );
}

#[test]
fn preflight_refuses_an_unknown_environment_listing_the_valid_ones() {
    let (out, _dir) = preflight(PROJECT, &["--env", "prod"], &[]);
    refused(
        &out,
        &["--env prod", "valid environments: production, staging"],
    );
}

#[test]
fn preflight_refuses_variables_with_no_value_and_no_default() {
    let (out, _dir) = preflight(PROJECT, &["--env", "staging"], &[]);
    refused(
        &out,
        &[
            "compose.yaml:4:12: variable `REGISTRY` is not set and has no default",
            "compose.yaml:4:28: variable `VERSION` is not set",
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("`VERSION:-latest`"));
    // The process environment fills them in.
    let (out, _dir) = preflight(
        PROJECT,
        &["--env", "staging"],
        &[("REGISTRY", "10.77.0.10:5000"), ("VERSION", "v1")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn preflight_refuses_a_missing_env_file() {
    let compose = "services:\n  web:\n    image: web:v1\n    env_file: [secrets.env]\n";
    let (out, _dir) = preflight(compose, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secrets.env") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn preflight_refuses_odd_image_references() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            "${REGISTRY}/${APP}:v1",
            &[("REGISTRY", "ghcr.io/acme"), ("APP", "ghcr.io/acme/web")],
            "image `ghcr.io/acme/ghcr.io/acme/web:v1` has the registry `ghcr.io` inside its path",
        ),
        (
            "web:${VERSION}",
            &[("VERSION", "")],
            "image `web:` has an empty tag",
        ),
        ("${NAME}:v1", &[("NAME", "")], "image `:v1` has no name"),
        (
            "ghcr.io/Acme/web:v1",
            &[],
            "has uppercase letters in the repository (`Acme`)",
        ),
        (
            "${REGISTRY}/web:v1",
            &[("REGISTRY", "")],
            "image `/web:v1` starts with `/`",
        ),
    ];
    for (image, env, needle) in cases {
        let compose = format!("services:\n  web:\n    image: \"{image}\"\n");
        let (out, _dir) = preflight(&compose, &[], env);
        refused(&out, &["service `web`", needle]);
    }
    // An image that interpolates to nothing is refused by the loader already.
    let (out, _dir) = preflight(
        "services:\n  web:\n    image: \"${IMAGE}\"\n",
        &[],
        &[("IMAGE", "")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither an image nor a build context"));
}

#[test]
fn preflight_refuses_a_bad_webhook_setting() {
    let (out, _dir) = preflight(
        PROJECT,
        &["--env", "production", "--notify", "ftp://example.invalid/x"],
        &[],
    );
    refused_plain(&out, "scheme `ftp` is not supported");
    let compose = format!("{PROJECT}  notify: [{{url: \"not a url\"}}]\n");
    let (out, _dir) = preflight(&compose, &["--env", "production"], &[]);
    refused_plain(&out, "x-davit.notify[0]: not a URL");
}

fn refused_plain(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "{}",
        text(out)
    );
}

#[test]
fn preflight_scans_the_override_file_for_unset_variables() {
    let (_, dir) = preflight(PROJECT, &[], &[]);
    fs::write(
        dir.path().join("compose.override.yaml"),
        "services:\n  web:\n    environment:\n      TOKEN: ${API_TOKEN}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_davit"))
        .args(["preflight", "--env", "production"])
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    refused_plain(
        &out,
        "compose.override.yaml:4:14: variable `API_TOKEN` is not set",
    );
}
