//! Hosts that do not answer, and connections cut mid-operation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use davit_ssh::{Error, Host, HostUrl, check_hosts};

use crate::{connect, lab, opts, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_hosts_time_out_without_delaying_the_others() {
    let (_lab, info) = lab();
    // A server that accepts TCP and never says a word, and an address on h1's link with no host.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let blackhole = info.hosts[0]
        .address
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.99"))
        .unwrap();
    let urls = [
        HostUrl::parse(&format!("ssh://root@127.0.0.1:{port}")).unwrap(),
        HostUrl::parse(&format!("ssh://root@{blackhole}:22")).unwrap(),
        url(&info, 1),
    ];
    let mut o = opts(&info);
    o.connect_timeout = Duration::from_secs(2);

    // Completion order: the answering host finishes while the silent ones are still waiting.
    let order = Arc::new(Mutex::new(Vec::new()));
    let futs = urls.iter().enumerate().map(|(i, u)| {
        let (o, order) = (o.clone(), order.clone());
        async move {
            let r = Host::connect(u, &o).await;
            order.lock().unwrap().push(i);
            r
        }
    });
    let results = futures_util::future::join_all(futs).await;
    assert_eq!(
        order.lock().unwrap()[0],
        2,
        "the live host is not held up by the silent ones"
    );
    for r in &results[..2] {
        match r {
            Err(e @ Error::Timeout { after, .. }) => {
                assert_eq!(*after, Duration::from_secs(2));
                assert!(e.to_string().contains("timed out after 2s"), "{e}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert!(results[2].is_ok());

    let reports = check_hosts(&urls, &o).await;
    assert_eq!(
        reports.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert!(reports[0].error.as_deref().unwrap().contains("timed out"));
    hold.abort();
}

/// Restarts h4's sshd however the test ends.
struct Restart(davit_lab::Lab);
impl Drop for Restart {
    fn drop(&mut self) {
        let _ = self.0.start_sshd(4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_a_clear_error_and_the_next_call_reconnects() {
    let (lab, info) = lab();
    let guard = Restart(lab);
    let host = connect(&info, 4).await;
    let docker = host.docker();
    assert_eq!(docker.ping().await.unwrap(), "OK");

    // A command in flight when sshd dies (with all its connections).
    let running = {
        let h = host.clone();
        tokio::spawn(async move { h.exec("echo started; sleep 60").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lab = davit_lab::Lab::new(
        &davit_lab::default_root(),
        davit_lab::Instance(crate::INSTANCE),
    );
    tokio::task::spawn_blocking(move || {
        // `stop_sshd` finds sshd by the config path on its command line, which per-connection
        // children (`sshd: root@notty`) no longer carry: kill the listener's descendants too.
        let sessions = descendants_of_sshd(&lab, 4);
        lab.stop_sshd(4);
        for pid in sessions {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    })
    .await
    .unwrap();

    let cut = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the cut is noticed")
        .unwrap();
    match cut {
        Err(e @ Error::Disconnected { .. }) => {
            assert!(e.to_string().contains("connection was lost"), "{e}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // While sshd is down: clear errors, no hang.
    let e = tokio::time::timeout(Duration::from_secs(30), host.exec("true"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    let e = tokio::time::timeout(Duration::from_secs(60), docker.ping())
        .await
        .unwrap()
        .unwrap_err();
    assert!(davit_ssh_chain(&e).contains("cannot connect"), "{e}");

    // sshd back: the same handle reconnects on the next call.
    let lab = davit_lab::Lab::new(
        &davit_lab::default_root(),
        davit_lab::Instance(crate::INSTANCE),
    );
    tokio::task::spawn_blocking(move || lab.start_sshd(4))
        .await
        .unwrap()
        .unwrap();
    let out = host.exec("echo back").await.unwrap();
    assert_eq!(out.stdout, b"back\n");
    assert_eq!(docker.ping().await.unwrap(), "OK");
    drop(guard);
}

fn davit_ssh_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Every process below host `i`'s sshd listener (the per-connection sshd processes and their children).
fn descendants_of_sshd(lab: &davit_lab::Lab, i: u16) -> Vec<u32> {
    let config = lab
        .dir()
        .join(format!("h{i}"))
        .join("sshd_config")
        .display()
        .to_string();
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, ppid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect();
    let mut found: Vec<u32> = procs
        .iter()
        .filter(|(_, _, c)| c.contains(&config))
        .map(|p| p.0)
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    found
}
