//! Thin helpers over the system commands the lab drives (iproute2, nsenter, apt-get).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; fails on a non-zero exit with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, Error> {
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and ignores its outcome (cleanup paths, where "already gone" is fine).
pub(crate) fn run_quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn ip(args: &[&str]) -> Result<String, Error> {
    run(Command::new("ip").args(args))
}

pub(crate) fn ip_quiet(args: &[&str]) {
    run_quiet(Command::new("ip").args(args));
}

/// `ip` inside a namespace.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<String, Error> {
    run(Command::new("ip").arg("-n").arg(netns).args(args))
}

/// Starts a long-running daemon detached from our process group, output to `log`. Returns its pid.
pub(crate) fn spawn_daemon(cmd: &mut Command, log: &Path) -> Result<u32, Error> {
    let command = describe(cmd);
    let out = fs::File::create(log).map_err(crate::error::io(log))?;
    let err = out.try_clone().map_err(crate::error::io(log))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn { command, source })?;
    Ok(child.id())
}

/// Whether a process with this pid exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the first field after the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(None) | None)
        }
        Err(_) => false,
    }
}

pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn kill(pid: u32, signal: &str) {
    run_quiet(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
    );
}

/// Sends TERM, waits up to `grace`, then KILL.
pub(crate) fn stop_pids(pids: &[u32], grace: Duration) {
    for &p in pids {
        kill(p, "TERM");
    }
    let start = Instant::now();
    while start.elapsed() < grace && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids {
        if alive(p) {
            kill(p, "KILL");
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every process for which `pred(cmdline, cgroup)` holds.
pub(crate) fn find_pids(pred: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if pred(&cmdline, &cgroup) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Mount points at or below `dir`, deepest first.
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.dedup();
    found
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub(crate) fn unmount_below(dir: &Path) {
    for m in mounts_below(dir) {
        run_quiet(Command::new("umount").arg("-l").arg(&m));
    }
}

/// Whether `name` is found on PATH (or is an existing absolute path).
pub(crate) fn have(name: &str) -> bool {
    if name.starts_with('/') {
        return Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(name).is_file())
}

/// Installs the Debian packages that provide the missing commands.
pub(crate) fn ensure_packages(needs: &[(&str, &str)]) -> Result<(), Error> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("davit lab: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NEEDRESTART_MODE", "a"))
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    apt(&args)?;
    Ok(())
}

/// Polls `check` until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 GET over a unix socket, returning the status code.
pub(crate) fn unix_http_status(socket: &Path, path: &str) -> Option<u16> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    parse_status(&buf)
}

pub(crate) fn parse_status(buf: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(buf.get(..buf.len().min(64))?).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

pub(crate) fn tcp_open(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
        .is_some()
}

pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    fs::write(path, contents).map_err(crate::error::io(path))
}

pub(crate) fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(crate::error::io(path))
}
