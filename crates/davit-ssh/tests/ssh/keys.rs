//! Host keys and authentication against a real sshd (host h6).

use std::io::Write as _;

use davit_ssh::{Error, Host};

use crate::{host_key, keygen, lab, opts, url, url_as};

const H: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_unless_accepted_and_then_recorded() {
    let (_lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("ssh").join("known_hosts");
    let mut o = opts(&info);
    o.known_hosts = Some(kh.clone());

    let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
    assert!(matches!(e, Error::UnknownHostKey { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("--accept-new-host-keys") && msg.contains(&kh.display().to_string()),
        "{msg}"
    );
    assert!(
        !kh.exists(),
        "nothing is recorded without --accept-new-host-keys"
    );

    o.accept_new_host_keys = true;
    let h = Host::connect(&url(&info, H), &o).await.unwrap();
    assert_eq!(h.docker().ping().await.unwrap(), "OK");
    let recorded = std::fs::read_to_string(&kh).unwrap();
    let addr = &info.hosts[H - 1].address;
    assert_eq!(recorded.lines().count(), 1);
    assert!(
        recorded.starts_with(&format!("{addr} ssh-ed25519 ")),
        "{recorded}"
    );

    // Now known: connects without accepting anything.
    o.accept_new_host_keys = false;
    Host::connect(&url(&info, H), &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_always_refused_naming_file_and_line() {
    let (lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let addr = &info.hosts[H - 1].address;
    // Another host's key filed under this host's address, on line 3.
    let other = host_key(&lab, 1);
    std::fs::write(
        &kh,
        format!(
            "# comment\n10.77.255.9 {}\n{addr} {other}\n",
            host_key(&lab, 2)
        ),
    )
    .unwrap();
    let mut o = opts(&info);
    o.known_hosts = Some(kh.clone());
    for accept in [false, true] {
        o.accept_new_host_keys = accept;
        let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
        match &e {
            Error::HostKeyChanged {
                line, known_hosts, ..
            } => {
                assert_eq!(*line, 3);
                assert_eq!(known_hosts, &kh);
            }
            e => panic!("expected HostKeyChanged, got {e}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{}:3", kh.display())) && msg.contains("ssh-keygen -R"),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        3,
        "the file is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entries_are_honoured() {
    let (lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let addr = &info.hosts[H - 1].address;
    std::fs::write(&kh, format!("{addr} {}\n", host_key(&lab, H as u16))).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(st.status.success());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains(addr.as_str()),
        "{text}"
    );
    let mut o = opts(&info);
    o.known_hosts = Some(kh.clone());
    Host::connect(&url(&info, H), &o).await.unwrap();

    // A hashed entry with another key is a changed key.
    std::fs::write(&kh, format!("{addr} {}\n", host_key(&lab, 1))).unwrap();
    std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
    assert!(matches!(e, Error::HostKeyChanged { line: 1, .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_user_or_wrong_key_says_permission_denied_and_what_to_do() {
    let (_lab, info) = lab();
    let e = Host::connect(&url_as(&info, H, "davit-no-such-user"), &opts(&info))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("`davit-no-such-user`") && msg.contains("--identity"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let stranger = keygen(dir.path(), "stranger", &["-t", "ed25519"], "");
    let mut o = opts(&info);
    o.identity = Some(stranger.clone());
    let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e}");
    assert!(
        e.to_string().contains(&stranger.display().to_string()),
        "names the key tried: {e}"
    );

    o.identity = Some(dir.path().join("missing"));
    let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
    assert!(
        matches!(e, Error::Identity { .. }) && e.to_string().contains("no such file"),
        "{e}"
    );
}

/// Adds `pubkey` to the lab's authorized_keys (shared by its hosts) if missing.
fn authorize(lab: &davit_lab::Lab, key: &std::path::Path) {
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let ak = lab.dir().join("authorized_keys");
    let have = std::fs::read_to_string(&ak).unwrap_or_default();
    if !have.contains(public.trim()) {
        let mut f = std::fs::OpenOptions::new().append(true).open(&ak).unwrap();
        writeln!(f, "\n{}", public.trim()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_keys_authenticate() {
    let (lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [
        ("rsa", ["-t", "rsa", "-b", "3072"]),
        ("ecdsa", ["-t", "ecdsa", "-b", "256"]),
    ] {
        let key = keygen(dir.path(), name, &kind, "");
        authorize(&lab, &key);
        let mut o = opts(&info);
        o.identity = Some(key);
        let h = Host::connect(&url(&info, H), &o)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(h.exec("true").await.unwrap().success(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_is_used_through_the_agent() {
    let (lab, info) = lab();
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "locked", &["-t", "ed25519"], "correct horse");
    authorize(&lab, &key);
    let mut o = opts(&info);
    o.identity = Some(key.clone());
    // Without an agent: a clear refusal that says how to fix it.
    let e = Host::connect(&url(&info, H), &o).await.unwrap_err();
    assert!(
        matches!(e, Error::Identity { .. }) && e.to_string().contains("ssh-add"),
        "{e}"
    );

    // A real ssh-agent holding the key (unlocked with the passphrase through SSH_ASKPASS).
    let sock = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let askpass = dir.path().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho 'correct horse'\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&askpass)
        .status()
        .unwrap();
    let added = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    o.use_agent = true;
    o.agent_socket = Some(sock.clone());
    let r = Host::connect(&url(&info, H), &o).await;
    // Agent keys alone (no identity named) work too.
    o.identity = None;
    let r2 = Host::connect(&url(&info, H), &o).await;
    let _ = agent.kill();
    let _ = agent.wait();
    // Authenticated connections outlive the agent.
    assert!(r.unwrap().exec("true").await.unwrap().success());
    r2.unwrap();
}
