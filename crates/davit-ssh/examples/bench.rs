//! Benchmark: davit's SSH transport vs OpenSSH on the lab (docs/BENCHMARKS.md).
//!
//! ```text
//! DAVIT_LAB_INSTANCE=3 davit lab up --hosts 8 --registry
//! DAVIT_LAB_INSTANCE=11 davit lab up --hosts 2
//! cargo build --release -p davit --bin davit && cargo build --release -p davit-ssh --example bench
//! target/release/examples/bench --davit target/release/davit --runs 5
//! ```
//!
//! 1. `davit hosts check` on 3 and 10 hosts (a fresh process, connecting from scratch) vs
//!    `ssh HOST docker version` to every host in parallel.
//! 2. 100 Docker API calls (`GET /version`) over one davit connection vs 100 `ssh HOST docker version`
//!    invocations one after another (and, for reference, OpenSSH with a ControlMaster connection).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use davit_lab::{Instance, Lab, LabInfo};

use davit_ssh::{Host, HostUrl, SshOptions};

struct Target {
    url: String,
    address: String,
}

/// One key and one known_hosts for both instances (the bench adds instance 3's key to instance 11's
/// authorized_keys and merges the known_hosts files).
struct Creds {
    identity: PathBuf,
    known_hosts: PathBuf,
}

fn creds() -> Creds {
    let root = davit_lab::default_root();
    let kh = std::env::temp_dir().join("davit-bench-known_hosts");
    let mut text = String::new();
    for inst in [3u8, 11] {
        text.push_str(
            &std::fs::read_to_string(root.join(format!("lab{inst}")).join("known_hosts")).unwrap(),
        );
    }
    std::fs::write(&kh, text).unwrap();
    let public = std::fs::read_to_string(root.join("lab3").join("id_ed25519.pub")).unwrap();
    let ak = root.join("lab11").join("authorized_keys");
    let have = std::fs::read_to_string(&ak).unwrap_or_default();
    if !have.contains(public.trim()) {
        std::fs::write(&ak, format!("{have}\n{public}")).unwrap();
    }
    Creds {
        identity: root.join("lab3").join("id_ed25519"),
        known_hosts: kh,
    }
}

fn targets() -> Vec<Target> {
    let root = davit_lab::default_root();
    let mut out = Vec::new();
    for inst in [3u8, 11] {
        let info: LabInfo = Lab::read_info(&root, Instance(inst)).unwrap_or_else(|| {
            panic!("lab instance {inst} is not up (see the header of this file)")
        });
        for h in &info.hosts {
            out.push(Target {
                url: h.url.clone(),
                address: h.address.clone(),
            });
        }
    }
    out
}

fn ssh(t: &Target, c: &Creds, extra: &[String]) -> Command {
    let (t, creds) = (t, c);
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(&creds.identity)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            creds.known_hosts.display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(extra)
        .arg(format!("root@{}", t.address))
        .args(["docker", "version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn davit_check(davit: &Path, ts: &[Target], creds: &Creds) {
    let mut c = Command::new(davit);
    c.args(["hosts", "check", "--json"])
        .stdout(Stdio::null())
        .env("DAVIT_IDENTITY", &creds.identity)
        .env("DAVIT_KNOWN_HOSTS", &creds.known_hosts)
        .env_remove("SSH_AUTH_SOCK");
    for t in ts {
        c.args(["--host", &t.url]);
    }
    assert!(c.status().unwrap().success(), "davit hosts check failed");
}

fn ssh_parallel(ts: &[Target], creds: &Creds) {
    let children: Vec<_> = ts
        .iter()
        .map(|t| ssh(t, creds, &[]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "ssh docker version failed");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let davit = PathBuf::from(arg("--davit").unwrap_or_else(|| "target/release/davit".into()));
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let ts = targets();
    let creds = creds();
    assert!(ts.len() >= 10, "need 10 hosts, have {}", ts.len());

    println!("| work | davit | OpenSSH | OpenSSH / davit |");
    println!("| --- | --- | --- | --- |");
    for n in [3usize, 10] {
        let d = time(runs, || davit_check(&davit, &ts[..n], &creds));
        let o = time(runs, || ssh_parallel(&ts[..n], &creds));
        println!(
            "| `hosts check` on {n} hosts vs {n} parallel `ssh HOST docker version` | {:.0} ms | {:.0} ms | {:.2}x |",
            d.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            o.as_secs_f64() / d.as_secs_f64()
        );
    }

    // 100 API calls over one connection (connection set-up included).
    let t = &ts[0];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut opts = SshOptions::default();
    opts.identity = Some(creds.identity.clone());
    opts.known_hosts = Some(creds.known_hosts.clone());
    opts.use_agent = false;
    let url = HostUrl::parse(&t.url).unwrap();
    let d = time(runs.min(3), || {
        rt.block_on(async {
            let host = Host::connect(&url, &opts).await.unwrap();
            let docker = host.docker();
            for _ in 0..100 {
                docker.version().await.unwrap();
            }
        })
    });
    let o = time(1, || {
        for _ in 0..100 {
            assert!(ssh(t, &creds, &[]).status().unwrap().success());
        }
    });
    println!(
        "| 100 `GET /version` over one connection vs 100 `ssh HOST docker version` | {:.0} ms | {:.0} ms | {:.2}x |",
        d.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        o.as_secs_f64() / d.as_secs_f64()
    );
    let cp = std::env::temp_dir().join(format!("davit-bench-cm-{}", std::process::id()));
    let mux = vec![
        "-o".to_string(),
        "ControlMaster=auto".into(),
        "-o".into(),
        format!("ControlPath={}", cp.display()),
        "-o".into(),
        "ControlPersist=60".into(),
    ];
    let o = time(1, || {
        for _ in 0..100 {
            assert!(ssh(t, &creds, &mux).status().unwrap().success());
        }
    });
    let _ = Command::new("ssh")
        .args(["-O", "exit", "-o"])
        .arg(format!("ControlPath={}", cp.display()))
        .arg(format!("root@{}", t.address))
        .stderr(Stdio::null())
        .status();
    println!(
        "| same, OpenSSH multiplexed (ControlMaster) | {:.0} ms | {:.0} ms | {:.2}x |",
        d.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        o.as_secs_f64() / d.as_secs_f64()
    );
}
