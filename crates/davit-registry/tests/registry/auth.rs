//! A second registry with htpasswd (basic) auth on a loopback port, started by the test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use davit_registry::{Credentials, Error, PushOptions, Registry, Settings, push_image};

use crate::support::{local_docker, make_image, unique};

struct AuthRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        // Only the process this test started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_auth_registry(user: &str, password: &str) -> AuthRegistry {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: davit-test\n    path: {root}/htpasswd\n",
        root = dir.path().display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("docker-registry (apt-get install docker-registry)");
    let r = AuthRegistry {
        child,
        addr,
        _dir: dir,
    };
    wait_listening(&r.addr, r._dir.path());
    r
}

fn wait_listening(addr: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "registry on {addr} did not start: {}",
        std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    );
}

fn client(addr: &str, user: &str, password: &str) -> Registry {
    let creds = Credentials::Basic {
        user: user.into(),
        password: password.into(),
    };
    Registry::with_credentials(addr, &Settings::default(), creds).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_a_clear_error_and_touch_nothing() {
    let r = start_auth_registry("ci", "right-secret");
    let docker = local_docker().await;
    let local = format!("davit-registry-test/{}:1", unique("auth"));
    make_image(&docker, &local, &unique("auth")).await;
    let repo = unique("auth");

    let bad = client(&r.addr, "ci", "wrong-secret");
    let err = push_image(
        &docker,
        &local,
        &bad,
        &repo,
        &PushOptions {
            tags: vec!["v1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&r.addr) && msg.contains("\"ci\"") && msg.contains("DAVIT_REGISTRY_PASSWORD"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-secret"), "the secret leaked: {msg}");

    // Nothing was written: the right credentials see no such repository.
    let good = client(&r.addr, "ci", "right-secret");
    let err = good.tags(&repo).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // Anonymous is refused too, and says there were no credentials.
    let anon =
        Registry::with_credentials(&r.addr, &Settings::default(), Credentials::Anonymous).unwrap();
    let err = anon.tags(&repo).await.unwrap_err();
    assert!(err.to_string().contains("anonymous"), "{err}");

    // The right credentials push (basic auth flow), list and resolve.
    let report = push_image(
        &docker,
        &local,
        &good,
        &repo,
        &PushOptions {
            tags: vec!["v1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.uploaded(), 3, "{report:?}");
    assert_eq!(good.tags(&repo).await.unwrap(), ["v1"]);
    assert_eq!(
        good.resolve_digest(&repo, "v1").await.unwrap(),
        report.digest
    );
    good.delete_manifest(&repo, &report.digest).await.unwrap();
    assert!(good.tags(&repo).await.unwrap_or_default().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_the_docker_config() {
    use base64::Engine as _;
    let r = start_auth_registry("cfg", "from-config");
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("cfg:from-config");
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, r.addr),
    )
    .unwrap();
    let settings = Settings {
        docker_config: Some(path),
        ..Default::default()
    };
    let reg = Registry::new(&r.addr, &settings).unwrap();
    reg.check("anything", true)
        .await
        .expect("credentials from config.json are accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_is_a_clear_error_and_touches_nothing() {
    let docker = local_docker().await;
    let local = format!("davit-registry-test/{}:1", unique("unreach"));
    make_image(&docker, &local, &unique("unreach")).await;
    // A loopback port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let reg = Registry::new(&addr, &Settings::default()).unwrap();
    let err = push_image(
        &docker,
        &local,
        &reg,
        "app",
        &PushOptions {
            tags: vec!["v1".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&addr) && err.to_string().contains("unreachable"),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
}
