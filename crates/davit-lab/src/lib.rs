//! `davit-lab`: simulated servers on one machine.
//!
//! Each simulated host is a network namespace with its own address on `10.77.0.0/16`, its own Docker
//! engine (dockerd started inside the namespace) and its own OpenSSH server, whose sessions see that
//! engine at `/var/run/docker.sock`. With a registry, a real `docker-registry` serves every host and
//! holds the demo images `davit-demo:v1`, `davit-demo:v2` and `davit-demo:broken`.
//!
//! This crate is synchronous and drives system commands (iproute2, nsenter, dockerd, sshd); it is
//! test and demo infrastructure, not part of the deploy path. Integration tests of every other crate
//! start their servers through [`Lab::up`], each on its own [`Instance`] so suites can run side by side.

mod bins;
pub mod diagnose;
mod error;
pub mod image;
mod plan;
mod sys;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use bins::{
    STATIC_TARGET, build_static, is_static_elf, static_binary, static_target_dir, workspace_root,
};
pub use error::Error;
pub use plan::{Instance, MAX_HOSTS, MAX_HOSTS_SIDE, MAX_INSTANCE, REGISTRY_PORT};

use error::io;

/// The demo image tags the registry holds.
pub const DEMO_TAGS: [&str; 3] = ["v1", "v2", "broken"];
/// The port the demo app listens on inside its container.
pub const DEMO_PORT: u16 = 8080;

/// What to bring up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which lab (0 for `davit lab up`; tests use others).
    pub instance: Instance,
    /// How many hosts.
    pub hosts: u16,
    /// Whether to run a registry holding the demo images.
    pub registry: bool,
    /// Where the lab keeps its files (`$DAVIT_LAB_DIR`, default `/var/lib/davit-lab`).
    pub root: PathBuf,
}

impl Options {
    pub fn new(instance: u8, hosts: u16, registry: bool) -> Self {
        Options {
            instance: Instance(instance),
            hosts,
            registry,
            root: default_root(),
        }
    }
}

/// The lab's root directory.
pub fn default_root() -> PathBuf {
    std::env::var_os("DAVIT_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/davit-lab"))
}

/// One simulated host, as `davit lab up --json` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub address: String,
    pub url: String,
    /// The host's network namespace (for `nsenter --net=/var/run/netns/NAME`).
    pub netns: String,
    /// The host's engine reached directly from this machine, without SSH (for tests and debugging).
    pub docker_host: String,
}

/// A running lab, as `davit lab up --json` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LabInfo {
    pub hosts: Vec<HostInfo>,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub registry: Option<String>,
}

/// How long a daemon whose process is alive may take to answer before the lab takes it for dead
/// and starts another.
const LIVE_DAEMON_GRACE: Duration = Duration::from_secs(30);

/// A lab instance on this machine.
#[derive(Debug, Clone)]
pub struct Lab {
    instance: Instance,
    dir: PathBuf,
    run: PathBuf,
}

const PACKAGES: [(&str, &str); 7] = [
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("dockerd", "docker.io"),
    ("sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("docker-registry", "docker-registry"),
    ("iptables", "iptables"),
];

impl Lab {
    /// The lab `instance` under `root` (nothing is touched).
    pub fn new(root: &Path, instance: Instance) -> Self {
        Lab {
            instance,
            dir: root.join(instance.dir_name()),
            run: PathBuf::from("/run/davit-lab").join(instance.dir_name()),
        }
    }

    /// Brings the lab to exactly what `opts` asks for, reusing whatever already runs. Idempotent.
    pub fn up(opts: &Options) -> Result<LabInfo, Error> {
        opts.instance.check(opts.hosts)?;
        if !is_root() {
            return Err(Error::NotRoot);
        }
        let lab = Lab::new(&opts.root, opts.instance);
        sys::create_dir(&lab.dir)?;
        let _lock = lab.lock()?;
        sys::ensure_packages(&PACKAGES)?;
        sys::create_dir(&lab.run)?;
        sys::create_dir(Path::new("/run/sshd"))?;
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(io("/proc/sys/net/ipv4/ip_forward"))?;
        lab.ensure_client_key()?;

        // Hosts beyond the requested number go away, so `up` converges to exactly `hosts`.
        for i in lab.existing_hosts() {
            if i > opts.hosts {
                lab.remove_host(i);
            }
        }
        let indices: Vec<u16> = (1..=opts.hosts).collect();
        let lab_ref = &lab;
        for chunk in indices.chunks(8) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&i| s.spawn(move || lab_ref.ensure_host(i)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("host thread panicked"))
                    .collect::<Result<Vec<()>, Error>>()
            })?;
        }
        lab.write_known_hosts(opts.hosts)?;

        let registry = if opts.registry {
            lab.ensure_registry()?;
            lab.ensure_demo_images()?;
            Some(opts.instance.registry_address())
        } else {
            lab.stop_registry();
            None
        };
        let info = lab.info(opts.hosts, registry);
        sys::write_file(
            &lab.dir.join("lab.json"),
            serde_json::to_vec_pretty(&info).expect("json"),
        )?;
        Ok(info)
    }

    /// Removes everything the lab instance made: processes, containers, mounts, namespaces, links and
    /// files. Works from what is on the machine, not from a state file, so it also cleans up after a
    /// crashed run.
    pub fn down(root: &Path, instance: Instance) -> Result<(), Error> {
        if !is_root() {
            return Err(Error::NotRoot);
        }
        let lab = Lab::new(root, instance);
        let netns: Vec<String> = lab
            .existing_hosts()
            .into_iter()
            .map(|i| instance.netns(i))
            .collect();
        let mut pids = lab.own_pids();
        for ns in &netns {
            if let Ok(out) = sys::run(Command::new("ip").args(["netns", "pids", ns])) {
                pids.extend(out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        sys::stop_pids(&pids, Duration::from_secs(10));
        // Shims or containers that were started while we stopped the rest.
        sys::stop_pids(&lab.own_pids(), Duration::from_secs(2));
        sys::unmount_below(&lab.dir);
        sys::unmount_below(&lab.run);
        for ns in &netns {
            sys::ip_quiet(&["netns", "del", ns]);
        }
        for link in links_with_prefix(&instance.veth_prefix()) {
            sys::ip_quiet(&["link", "del", &link]);
        }
        lab.drop_registry_address();
        let _ = fs::remove_dir_all(&lab.run);
        let _ = fs::remove_dir_all(&lab.dir);
        Ok(())
    }

    /// The info of a lab that is up (read back from its state file).
    pub fn read_info(root: &Path, instance: Instance) -> Option<LabInfo> {
        let lab = Lab::new(root, instance);
        serde_json::from_slice(&fs::read(lab.dir.join("lab.json")).ok()?).ok()
    }

    /// The instance's directory (keys, logs, engine data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<fs::File, Error> {
        let path = self.dir.join("lock");
        let f = fs::File::create(&path).map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(f)
    }

    fn host_dir(&self, i: u16) -> PathBuf {
        self.dir.join(self.instance.host_name(i))
    }

    fn host_run(&self, i: u16) -> PathBuf {
        self.run.join(self.instance.host_name(i))
    }

    /// The directory that a host's SSH sessions see as `/run` (it holds that host's `docker.sock`).
    fn remote_run(&self, i: u16) -> PathBuf {
        self.host_run(i).join("run")
    }

    /// The engine socket of host `i`, on this machine.
    pub fn docker_socket(&self, i: u16) -> PathBuf {
        self.remote_run(i).join("docker.sock")
    }

    fn own_pids(&self) -> Vec<u32> {
        let dir = format!("{}/", self.dir.display());
        let run = format!("{}/", self.run.display());
        let cg = format!("/davit-lab{}-h", self.instance.0);
        sys::find_pids(|cmd, cgroup| {
            cmd.contains(&dir) || cmd.contains(&run) || cgroup.contains(&cg)
        })
    }

    fn existing_hosts(&self) -> Vec<u16> {
        let prefix = self.instance.netns_prefix();
        let mut found: Vec<u16> = fs::read_dir("/var/run/netns")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for link in links_with_prefix(&self.instance.veth_prefix()) {
            if let Some(i) = link
                .strip_prefix(&self.instance.veth_prefix())
                .and_then(|s| s.parse().ok())
            {
                found.push(i);
            }
        }
        if let Ok(d) = fs::read_dir(&self.dir) {
            found.extend(d.flatten().filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix('h')?
                    .parse::<u16>()
                    .ok()
            }));
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    fn ensure_client_key(&self) -> Result<(), Error> {
        let key = self.dir.join("id_ed25519");
        if !key.exists() {
            sys::run(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "davit-lab", "-f"])
                    .arg(&key),
            )?;
        }
        let public =
            fs::read_to_string(key.with_extension("pub")).map_err(io(key.with_extension("pub")))?;
        sys::write_file(&self.dir.join("authorized_keys"), public)
    }

    fn ensure_host(&self, i: u16) -> Result<(), Error> {
        let dir = self.host_dir(i);
        sys::create_dir(&dir)?;
        sys::create_dir(&self.remote_run(i).join("sshd"))?;
        self.ensure_link(i)?;
        self.start_engine(i)?;
        self.start_sshd(i)
    }

    fn ensure_link(&self, i: u16) -> Result<(), Error> {
        let inst = self.instance;
        let (ns, veth, peer) = (inst.netns(i), inst.veth(i), inst.veth_peer(i));
        let (addr, gw) = (inst.host_address(i), inst.gateway_address(i));
        let healthy = Path::new("/var/run/netns").join(&ns).exists()
            && sys::ip(&["-o", "addr", "show", "dev", &veth])
                .map(|o| o.contains(&gw))
                .unwrap_or(false)
            && sys::ip_in(&ns, &["-o", "addr", "show", "dev", "eth0"])
                .map(|o| o.contains(&addr))
                .unwrap_or(false);
        if healthy {
            return Ok(());
        }
        sys::ip_quiet(&["link", "del", &veth]);
        if !Path::new("/var/run/netns").join(&ns).exists() {
            sys::ip(&["netns", "add", &ns])?;
        }
        sys::ip_quiet(&["-n", &ns, "link", "del", "eth0"]);
        sys::ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        sys::ip(&["link", "set", &peer, "netns", &ns])?;
        sys::ip_in(&ns, &["link", "set", &peer, "name", "eth0"])?;
        sys::ip(&["addr", "add", &format!("{gw}/24"), "dev", &veth])?;
        sys::ip(&["link", "set", &veth, "up"])?;
        sys::ip_in(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        sys::ip_in(&ns, &["link", "set", "eth0", "up"])?;
        sys::ip_in(&ns, &["link", "set", "lo", "up"])?;
        sys::ip_in(&ns, &["route", "replace", "default", "via", &gw])?;
        Ok(())
    }

    /// Whether host `i`'s engine answers.
    pub fn engine_up(&self, i: u16) -> bool {
        sys::unix_http_status(&self.docker_socket(i), "/_ping") == Some(200)
    }

    /// Starts host `i`'s Docker engine if it is not running (and waits until it answers).
    pub fn start_engine(&self, i: u16) -> Result<(), Error> {
        let (dir, run) = (self.host_dir(i), self.host_run(i));
        let pidfile = dir.join("dockerd.spawn.pid");
        // A live engine slow to answer (a loaded machine) is waited for, not replaced: replacing it
        // restarts every container on it, under the feet of whoever uses the host.
        if sys::read_pid(&pidfile).is_some_and(sys::alive)
            && sys::wait_until(LIVE_DAEMON_GRACE, || self.engine_up(i))
        {
            return Ok(());
        }
        // Leftovers of an engine that died (its containerd, a stale socket) would block a new one.
        let stale = sys::find_pids(|cmd, _| {
            cmd.contains(&format!("{}/", run.join("exec").display()))
                || cmd.contains(&format!("{}/", dir.join("docker").display()))
        });
        sys::stop_pids(&stale, Duration::from_secs(5));
        let _ = fs::remove_file(self.docker_socket(i));
        sys::write_file(&dir.join("daemon.json"), "{}\n")?;
        let log = dir.join("dockerd.log");
        let inst = self.instance;
        let pid = sys::spawn_daemon(
            Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{}", inst.netns(i)))
                .arg("dockerd")
                .arg("--config-file")
                .arg(dir.join("daemon.json"))
                .arg("--data-root")
                .arg(dir.join("docker"))
                .arg("--exec-root")
                .arg(run.join("exec"))
                .arg("--pidfile")
                .arg(run.join("dockerd.pid"))
                .arg("-H")
                .arg(format!("unix://{}", self.docker_socket(i).display()))
                .args(["--bip", &inst.docker_bip(i)])
                .args(["--cgroup-parent", &inst.cgroup_parent(i)])
                .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
                .args(["--insecure-registry", "10.77.0.0/16"])
                .args(["--log-level", "warn"]),
            &log,
        )?;
        sys::write_file(&pidfile, pid.to_string())?;
        if !sys::wait_until(Duration::from_secs(90), || self.engine_up(i)) {
            return Err(Error::NotReady {
                what: format!("the engine of {}", inst.host_name(i)),
                seconds: 90,
                log,
            });
        }
        Ok(())
    }

    /// Stops host `i`'s Docker engine (its containers stop with it), as a crashed or stopped server would.
    pub fn stop_engine(&self, i: u16) {
        if let Some(pid) = sys::read_pid(&self.host_dir(i).join("dockerd.spawn.pid")) {
            sys::stop_pids(&[pid], Duration::from_secs(20));
        }
    }

    /// Starts host `i`'s sshd if it is not running (and waits until it accepts connections).
    pub fn start_sshd(&self, i: u16) -> Result<(), Error> {
        let inst = self.instance;
        let dir = self.host_dir(i);
        let addr = format!("{}:22", inst.host_address(i));
        let pidfile = dir.join("sshd.spawn.pid");
        if sys::read_pid(&pidfile).is_some_and(sys::alive) && sys::tcp_open(&addr) {
            return Ok(());
        }
        if let Some(pid) = sys::read_pid(&pidfile) {
            sys::stop_pids(&[pid], Duration::from_secs(2));
        }
        let hostkey = dir.join("ssh_host_ed25519_key");
        if !hostkey.exists() {
            sys::run(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
                    .arg(&hostkey),
            )?;
        }
        // `SetEnv SHLVL=1`: bash then counts itself a nested shell and does not source this machine's
        // `~/.bashrc` for commands run over SSH. The simulated hosts share root's home with the
        // machine they run on; its dotfiles are a developer's (here `pyenv init`, whose rehash lock,
        // left behind by a session killed mid-rehash as the sshd-cut tests do, stalled every later
        // command 60 s), not a server's.
        let config = dir.join("sshd_config");
        sys::write_file(
            &config,
            format!(
                "ListenAddress {address}\nPort 22\nHostKey {hostkey}\nAuthorizedKeysFile {keys}\nPidFile {pid}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nAllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n\
                 MaxStartups 100:30:200\nMaxSessions 100\nLogLevel INFO\nSubsystem sftp internal-sftp\n\
                 SetEnv SHLVL=1\n",
                address = inst.host_address(i),
                hostkey = hostkey.display(),
                keys = self.dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )?;
        let script = format!(
            "mount --bind {run} /run && exec /usr/sbin/sshd -D -e -f {config}",
            run = self.remote_run(i).display(),
            config = config.display()
        );
        let log = dir.join("sshd.log");
        let pid = sys::spawn_daemon(
            Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{}", inst.netns(i)))
                .args([
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &script,
                ]),
            &log,
        )?;
        sys::write_file(&pidfile, pid.to_string())?;
        if !sys::wait_until(Duration::from_secs(20), || sys::tcp_open(&addr)) {
            return Err(Error::NotReady {
                what: format!("sshd of {}", inst.host_name(i)),
                seconds: 20,
                log,
            });
        }
        Ok(())
    }

    /// Kills host `i`'s sshd (and with it every SSH connection to that host: OpenSSH renames its
    /// per-connection processes, so they are found as the listener's descendants).
    pub fn stop_sshd(&self, i: u16) {
        let inst = self.instance;
        let config = format!("{}", self.host_dir(i).join("sshd_config").display());
        let mut all = sys::find_pids(|cmd, _| cmd.contains(&config));
        all.extend(
            sys::read_pid(&self.host_dir(i).join("sshd.spawn.pid")).filter(|p| sys::alive(*p)),
        );
        let mut tree: Vec<u32> = all.iter().flat_map(|&p| sys::with_descendants(p)).collect();
        tree.sort_unstable();
        tree.dedup();
        for p in &tree {
            sys::kill(*p, "KILL");
        }
        sys::stop_pids(&tree, Duration::from_secs(2));
        let addr = format!("{}:22", inst.host_address(i));
        sys::wait_until(Duration::from_secs(5), || !sys::tcp_open(&addr));
    }

    /// Cuts SSH to host `i` for good: kills every `sshd` process in the host's network namespace
    /// (the listener and every connection's processes, however they were started), so established
    /// connections drop (the client sees its TCP connection closed) and new ones are refused until
    /// `start_sshd(i)`.
    pub fn cut_ssh(&self, i: u16) {
        let ns = self.instance.netns(i);
        let in_ns: Vec<u32> = sys::run(Command::new("ip").args(["netns", "pids", &ns]))
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .collect()
            })
            .unwrap_or_default();
        let sshd: Vec<u32> = in_ns
            .into_iter()
            .filter(|p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sshd")
            })
            .collect();
        for p in &sshd {
            sys::kill(*p, "KILL");
        }
        sys::stop_pids(&sshd, Duration::from_secs(2));
        self.stop_sshd(i);
    }

    fn remove_host(&self, i: u16) {
        let inst = self.instance;
        let ns = inst.netns(i);
        let (dir, run) = (self.host_dir(i), self.host_run(i));
        let cg = format!("/{}/", inst.cgroup_parent(i));
        let d = format!("{}/", dir.display());
        let r = format!("{}/", run.display());
        let mut pids = sys::find_pids(|cmd, cgroup| {
            cmd.contains(&d) || cmd.contains(&r) || cgroup.contains(&cg)
        });
        if let Ok(out) = sys::run(Command::new("ip").args(["netns", "pids", &ns])) {
            pids.extend(out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
        sys::stop_pids(&pids, Duration::from_secs(10));
        sys::unmount_below(&dir);
        sys::unmount_below(&run);
        sys::ip_quiet(&["netns", "del", &ns]);
        sys::ip_quiet(&["link", "del", &inst.veth(i)]);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&run);
    }

    fn write_known_hosts(&self, hosts: u16) -> Result<(), Error> {
        let mut text = String::new();
        for i in 1..=hosts {
            let pubkey = self.host_dir(i).join("ssh_host_ed25519_key.pub");
            let line = fs::read_to_string(&pubkey).map_err(io(&pubkey))?;
            let mut parts = line.split_whitespace();
            let (kind, key) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            text.push_str(&format!("{} {kind} {key}\n", self.instance.host_address(i)));
        }
        sys::write_file(&self.dir.join("known_hosts"), text)
    }

    fn info(&self, hosts: u16, registry: Option<String>) -> LabInfo {
        let inst = self.instance;
        LabInfo {
            hosts: (1..=hosts)
                .map(|i| HostInfo {
                    name: inst.host_name(i),
                    address: inst.host_address(i),
                    url: format!("ssh://root@{}:22", inst.host_address(i)),
                    netns: inst.netns(i),
                    docker_host: format!("unix://{}", self.docker_socket(i).display()),
                })
                .collect(),
            identity: self.dir.join("id_ed25519"),
            known_hosts: self.dir.join("known_hosts"),
            registry,
        }
    }

    fn ensure_registry_address(&self) -> Result<(), Error> {
        let ip = self.instance.registry_ip();
        let has = sys::ip(&["-o", "addr", "show", "dev", "lo"])?.contains(&format!("inet {ip}/"));
        if !has {
            sys::ip(&[
                "addr",
                "add",
                &format!("{ip}/32"),
                "dev",
                "lo",
                "label",
                plan::LO_LABEL,
            ])?;
        }
        Ok(())
    }

    fn drop_registry_address(&self) {
        let ip = self.instance.registry_ip();
        sys::ip_quiet(&["addr", "del", &format!("{ip}/32"), "dev", "lo"]);
    }

    /// Whether the registry answers.
    pub fn registry_up(&self) -> bool {
        image::http(&self.instance.registry_address(), "GET", "/v2/", &[], &[])
            .map(|r| r.0 == 200)
            .unwrap_or(false)
    }

    /// Starts the registry if it is not running (and waits until it answers).
    pub fn start_registry(&self) -> Result<(), Error> {
        self.ensure_registry_address()?;
        let dir = self.dir.join("registry");
        let pidfile = dir.join("registry.pid");
        if sys::read_pid(&pidfile).is_some_and(sys::alive)
            && sys::wait_until(LIVE_DAEMON_GRACE, || self.registry_up())
        {
            return Ok(());
        }
        self.stop_registry();
        sys::create_dir(&dir.join("data"))?;
        let config = dir.join("config.yml");
        sys::write_file(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                data = dir.join("data").display(),
                addr = self.instance.registry_address()
            ),
        )?;
        let log = dir.join("registry.log");
        let pid = sys::spawn_daemon(
            Command::new("docker-registry").arg("serve").arg(&config),
            &log,
        )?;
        sys::write_file(&pidfile, pid.to_string())?;
        if !sys::wait_until(Duration::from_secs(20), || self.registry_up()) {
            return Err(Error::NotReady {
                what: "the lab registry".into(),
                seconds: 20,
                log,
            });
        }
        Ok(())
    }

    fn ensure_registry(&self) -> Result<(), Error> {
        self.start_registry()
    }

    /// Stops the registry (its data stays, so a later start serves the same images).
    pub fn stop_registry(&self) {
        let config = format!("{}", self.dir.join("registry").join("config.yml").display());
        let pids = sys::find_pids(|cmd, _| cmd.contains(&config));
        sys::stop_pids(&pids, Duration::from_secs(5));
    }

    /// The demo image of `tag` (`v1`, `v2` or `broken`), from a static `davit-demo` binary.
    pub fn demo_image(binary: Vec<u8>, tag: &str) -> image::StaticImage {
        let mut env = vec!["PATH=/".to_string(), format!("DAVIT_DEMO_VERSION={tag}")];
        if tag == "broken" {
            env.push("DAVIT_DEMO_BROKEN=1".to_string());
        }
        image::StaticImage {
            name: "davit-demo".into(),
            binary,
            env,
            cmd: vec![],
            exposed: vec![DEMO_PORT],
            healthcheck: Some((vec!["CMD".into(), "/davit-demo".into(), "check".into()], 2)),
            creator: "davit-lab".into(),
        }
    }

    fn ensure_demo_images(&self) -> Result<(), Error> {
        let bin = static_binary("davit-demo")?;
        let binary = fs::read(&bin).map_err(io(&bin))?;
        for tag in DEMO_TAGS {
            image::push(
                &self.instance.registry_address(),
                "davit-demo",
                tag,
                &Lab::demo_image(binary.clone(), tag),
            )?;
        }
        Ok(())
    }
}

fn links_with_prefix(prefix: &str) -> Vec<String> {
    sys::ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix) && n[prefix.len()..].chars().all(|c| c.is_ascii_digit()))
        .collect()
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// For tests: the lab `instance` with `hosts` hosts and the registry, brought up once per process
/// (later calls reuse it). Panics with the lab's error, since a test cannot go on without it.
pub fn for_tests(instance: u8, hosts: u16) -> (Lab, LabInfo) {
    use std::sync::Mutex;
    static UP: Mutex<Vec<(u8, LabInfo)>> = Mutex::new(Vec::new());
    let mut up = UP.lock().unwrap_or_else(|e| e.into_inner());
    let opts = Options::new(instance, hosts, true);
    let lab = Lab::new(&opts.root, opts.instance);
    if let Some((_, info)) = up
        .iter()
        .find(|(i, info)| *i == instance && info.hosts.len() == usize::from(hosts))
    {
        return (lab, info.clone());
    }
    let info = Lab::up(&opts).unwrap_or_else(|e| {
        // CI keeps no file: the end of the daemon's log goes into the message.
        let tail = match &e {
            Error::NotReady { log, .. } => fs::read_to_string(log)
                .map(|t| {
                    let lines: Vec<&str> = t.lines().collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        panic!("lab instance {instance} did not come up: {e}\n{tail}")
    });
    up.push((instance, info.clone()));
    (lab, info)
}

#[cfg(test)]
mod tests;
