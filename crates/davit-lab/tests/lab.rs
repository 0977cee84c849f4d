//! The lab on this machine, for real: namespaces, engines, sshd, registry.
//!
//! Instances: 1 (three hosts serving the demo), 2 (brought up and torn down).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use davit_lab::{Instance, Lab, LabInfo, Options};

/// Tests on instance 1 share its hosts, and one of them cuts an sshd: they take turns.
static INSTANCE_1: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    INSTANCE_1.lock().unwrap_or_else(|e| e.into_inner())
}

fn ssh(info: &LabInfo, address: &str, command: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-i")
        .arg(&info.identity)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", info.known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(format!("root@{address}"))
        .arg(command)
        .output()
        .expect("ssh runs")
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn wait_for_body(addr: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http_get(addr, "/")
            && body.contains(needle)
        {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{addr} never answered with {needle}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_hosts_run_the_demo_from_the_lab_registry_over_ssh() {
    let _turn = serial();
    let (_lab, info) = davit_lab::for_tests(1, 3);
    assert_eq!(info.hosts.len(), 3);
    let registry = info.registry.clone().expect("registry");
    assert_eq!(registry, "10.77.0.2:5000");
    std::thread::scope(|s| {
        for h in &info.hosts {
            let (info, registry) = (&info, &registry);
            s.spawn(move || {
                // Through the host's own sshd, the host's own engine (its name proves which one).
                let out = ssh(
                    info,
                    &h.address,
                    "docker info --format '{{.Name}}' && docker rm -f demo >/dev/null 2>&1; true",
                );
                assert!(
                    out.status.success(),
                    "ssh to {}: {}",
                    h.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let run =
                    format!("docker run -d --name demo -p 8080:8080 {registry}/davit-demo:v1");
                let out = ssh(info, &h.address, &run);
                assert!(
                    out.status.success(),
                    "docker run on {}: {}",
                    h.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let body = wait_for_body(&format!("{}:8080", h.address), "v1");
                assert_eq!(body, "davit-demo v1\n");
            });
        }
    });
    // Each host's sshd leads to that host's engine only: the container exists on each, separately.
    for h in &info.hosts {
        let out = ssh(
            &info,
            &h.address,
            "docker ps --filter name=demo --format '{{.Image}}'",
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{registry}/davit-demo:v1")
        );
    }
    // What a failed test prints of a host: its containers with the ports they listen on and their
    // last log lines, and the host's own addresses.
    let seen = davit_lab::diagnose::lab(&info);
    for h in &info.hosts {
        assert!(
            seen.contains(&format!("--- {} ({})", h.name, h.address)),
            "{seen}"
        );
        assert!(seen.contains(&format!("{}/24", h.address)), "{seen}");
    }
    assert!(
        seen.contains("/demo running pid=") && seen.contains("listening=8080"),
        "{seen}"
    );
    // And what each container said last: the demo, where it listens.
    assert!(
        seen.contains("log: ") && seen.contains("davit-demo v1 listening on 0.0.0.0:8080"),
        "{seen}"
    );
}

#[test]
fn an_unknown_host_key_is_refused_by_openssh_with_the_lab_files() {
    let _turn = serial();
    let (_lab, info) = davit_lab::for_tests(1, 3);
    // The lab's known_hosts names each host's real key: a wrong file makes OpenSSH refuse.
    let empty = tempfile_path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new("ssh")
        .arg("-i")
        .arg(&info.identity)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", empty.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("root@{}", info.hosts[0].address))
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"));
}

#[test]
fn up_again_is_idempotent() {
    let _turn = serial();
    let (lab, info) = davit_lab::for_tests(1, 3);
    let again = Lab::up(&Options::new(1, 3, true)).unwrap();
    assert_eq!(info, again);
    for i in 1..=3 {
        assert!(lab.engine_up(i));
    }
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("davit-lab-test-{}-{name}", std::process::id()))
}

/// What a lab instance leaves on the machine: namespaces, links, mounts, processes, files.
fn traces(instance: u8) -> Vec<String> {
    let lab = Lab::new(&davit_lab::default_root(), Instance(instance));
    let dir = lab.dir().display().to_string();
    let run = format!("/run/davit-lab/lab{instance}");
    let mut found = Vec::new();
    let ns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    found.extend(
        ns.lines()
            .filter(|l| l.starts_with(&format!("davit{instance}-h")))
            .map(|l| format!("netns {l}")),
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    found.extend(
        links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| n.starts_with(&format!("dv{instance}h")))
            .map(|n| format!("link {n}")),
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| {
                m.starts_with(&dir)
                    || m.starts_with(&run)
                    || m.contains(&format!("davit{instance}-h"))
            })
            .map(|m| format!("mount {m}")),
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if cmdline.contains(&format!("{dir}/"))
            || cmdline.contains(&format!("{run}/"))
            || cgroup.contains(&format!("/davit-lab{instance}-h"))
        {
            found.push(format!("process {pid} {cmdline}"));
        }
    }
    if std::path::Path::new(&dir).exists() {
        found.push(format!("dir {dir}"));
    }
    if std::path::Path::new(&run).exists() {
        found.push(format!("dir {run}"));
    }
    found
}

#[test]
fn down_leaves_nothing_behind_even_with_containers_running() {
    let opts = Options::new(2, 2, true);
    let info = Lab::up(&opts).unwrap();
    let registry = info.registry.clone().unwrap();
    let out = ssh(
        &info,
        &info.hosts[0].address,
        &format!("docker run -d -p 8080:8080 {registry}/davit-demo:v2"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_body(&format!("{}:8080", info.hosts[0].address), "v2");
    assert!(
        !traces(2).is_empty(),
        "the lab should be visible before down"
    );
    Lab::down(&opts.root, Instance(2)).unwrap();
    assert_eq!(traces(2), Vec::<String>::new());
    // A crashed run: half-made state (a namespace and a stray file) is cleaned up too.
    Command::new("ip")
        .args(["netns", "add", "davit2-h5"])
        .status()
        .unwrap();
    std::fs::create_dir_all(Lab::new(&opts.root, Instance(2)).dir().join("h5")).unwrap();
    Lab::down(&opts.root, Instance(2)).unwrap();
    assert_eq!(traces(2), Vec::<String>::new());
}

#[test]
fn stop_sshd_cuts_open_connections_and_start_sshd_brings_it_back() {
    let _turn = serial();
    let (lab, info) = davit_lab::for_tests(1, 3);
    let host = &info.hosts[2];
    // An open session that would outlive a listener-only kill.
    let mut session = Command::new("ssh")
        .arg("-i")
        .arg(&info.identity)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", info.known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("root@{}", host.address))
        .arg("echo up; sleep 600")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 3];
    session
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"up\n");
    lab.stop_sshd(3);
    let status = session.wait().unwrap();
    assert!(!status.success(), "the open session should have been cut");
    assert!(!ssh(&info, &host.address, "true").status.success());
    lab.start_sshd(3).unwrap();
    assert!(ssh(&info, &host.address, "true").status.success());
}
