//! What a lab host runs, in a few lines, for the message of a test that failed: every container of
//! its engine (state, address, restarts) with the TCP ports its process listens on and its last
//! log lines, and the host's addresses and routes. Best effort: whatever cannot be read is said
//! so, never an error.

use std::process::Command;

use crate::{HostInfo, Lab, LabInfo, Options};

/// Every host of lab `instance`, as it is now (nothing when the lab is not up).
pub fn instance(instance: u8) -> String {
    let root = Options::new(instance, 0, false).root;
    match Lab::read_info(&root, crate::Instance(instance)) {
        Some(info) => lab(&info),
        None => format!("lab instance {instance}: not up\n"),
    }
}

/// Every host of `info`, as it is now.
pub fn lab(info: &LabInfo) -> String {
    info.hosts.iter().map(host).collect()
}

/// One host, as it is now.
pub fn host(h: &HostInfo) -> String {
    let mut out = format!("--- {} ({}):\n", h.name, h.address);
    let run = |args: &[&str]| {
        Command::new("docker")
            .arg("--host")
            .arg(&h.docker_host)
            .args(args)
            .output()
            .ok()
    };
    let docker = |args: &[&str]| {
        run(args)
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let ids: Vec<String> = docker(&["ps", "-aq"])
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let mut args = vec![
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} pid={{.State.Pid}} restarts={{.RestartCount}} \
             started={{.State.StartedAt}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
        ];
        args.extend(ids.iter().map(String::as_str));
        match docker(&args) {
            Some(text) => {
                // `docker inspect` answers in the order it was asked.
                for (line, id) in text.lines().zip(&ids) {
                    let pid = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("pid="))
                        .and_then(|p| p.parse::<u32>().ok())
                        .filter(|p| *p > 0);
                    let listening = pid.map(listening_ports).unwrap_or_default();
                    out.push_str(&format!("  {line} listening={listening}\n"));
                    // What it said last (a server that got SIGTERM, or never bound, says so).
                    if let Some(o) = run(&["logs", "--timestamps", "--tail", "4", id]) {
                        for l in String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .chain(String::from_utf8_lossy(&o.stderr).lines())
                        {
                            out.push_str(&format!("    log: {}\n", l.trim()));
                        }
                    }
                }
            }
            None => out.push_str("  (the engine did not answer `docker inspect`)\n"),
        }
    } else {
        out.push_str("  (no container, or the engine did not answer)\n");
    }
    for what in [["-4", "-br", "addr"].as_slice(), &["route"], &["neigh"]] {
        let o = Command::new("ip")
            .args(["-n", &h.netns])
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for line in o.lines() {
            out.push_str(&format!("  ip {}: {}\n", what.join(" "), line.trim()));
        }
    }
    out
}

/// The TCP ports that process `pid` listens on, in its own network namespace.
pub(crate) fn listening_ports(pid: u32) -> String {
    let mut ports: Vec<u16> = ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    // local_address is ADDR:PORT in hex; state 0A is LISTEN.
                    (cols.get(3) == Some(&"0A"))
                        .then(|| cols.get(1)?.rsplit(':').next())
                        .flatten()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        "none".into()
    } else {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}
