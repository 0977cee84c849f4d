//! The host figures `davit status` shows (CPU, memory, disk), read from what a Linux host prints:
//! the pure part. The binary runs [`SCRIPT`] on each host (over SSH, or locally) and hands its output
//! to [`parse`].

use serde::Serialize;

/// What to run on a host, with `{root}` replaced by the engine's data root (shell-quoted): two
/// samples of `/proc/stat` 250 ms apart, the load average, memory, and the disk holding the
/// engine's data. POSIX shell and coreutils/busybox only.
pub const SCRIPT: &str = "head -n1 /proc/stat; sleep 0.25; head -n1 /proc/stat; echo @@; \
cat /proc/loadavg; echo @@; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; echo @@; \
df -Pk {root} 2>/dev/null | tail -n1";

/// A host's CPU, memory and disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostMetrics {
    /// CPUs the engine sees.
    pub cpus: Option<u64>,
    /// Busy share of all CPUs over the sample, 0 to 100.
    pub cpu_percent: Option<f64>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    pub memory_total_bytes: Option<u64>,
    /// Total minus available.
    pub memory_used_bytes: Option<u64>,
    /// The file system holding the engine's data.
    pub disk_mount: Option<String>,
    pub disk_total_bytes: Option<u64>,
    pub disk_used_bytes: Option<u64>,
    pub disk_available_bytes: Option<u64>,
}

/// `root` quoted for a POSIX shell.
pub fn shell_quote(root: &str) -> String {
    format!("'{}'", root.replace('\'', r"'\''"))
}

/// [`SCRIPT`] for an engine whose data root is `root`.
pub fn script(root: &str) -> String {
    SCRIPT.replace("{root}", &shell_quote(root))
}

/// Reads the output of [`SCRIPT`]; what is missing or unreadable stays `None`.
pub fn parse(output: &str) -> HostMetrics {
    let parts: Vec<&str> = output.split("@@").collect();
    let mut m = HostMetrics::default();
    if let Some(stat) = parts.first() {
        let samples: Vec<Vec<u64>> = stat
            .lines()
            .filter(|l| l.starts_with("cpu "))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .collect();
        if let [a, b] = samples.as_slice()
            && a.len() >= 4
            && b.len() == a.len()
        {
            // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
            let idle = |v: &[u64]| v[3] + v.get(4).copied().unwrap_or(0);
            let total = |v: &[u64]| v.iter().take(8).sum::<u64>();
            let dt = total(b).saturating_sub(total(a));
            let di = idle(b).saturating_sub(idle(a));
            if dt > 0 {
                let busy = dt.saturating_sub(di) as f64 * 100.0 / dt as f64;
                m.cpu_percent = Some((busy * 10.0).round() / 10.0);
            }
        }
    }
    if let Some(load) = parts.get(1) {
        let v: Vec<f64> = load
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [a, b, c] = v.as_slice() {
            m.load = Some([*a, *b, *c]);
        }
    }
    if let Some(mem) = parts.get(2) {
        let kb = |key: &str| {
            mem.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        m.memory_total_bytes = kb("MemTotal:");
        if let (Some(t), Some(a)) = (m.memory_total_bytes, kb("MemAvailable:")) {
            m.memory_used_bytes = Some(t.saturating_sub(a));
        }
    }
    if let Some(df) = parts.get(3) {
        // Filesystem 1024-blocks Used Available Capacity Mounted-on
        let f: Vec<&str> = df.split_whitespace().collect();
        if f.len() >= 6 {
            let kb = |x: &str| x.parse::<u64>().ok().map(|k| k * 1024);
            m.disk_total_bytes = kb(f[1]);
            m.disk_used_bytes = kb(f[2]);
            m.disk_available_bytes = kb(f[3]);
            m.disk_mount = Some(f[5..].join(" "));
        }
    }
    m
}

/// `1.5 GiB`, `512 MiB`, `10 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `3d4h`, `2h5m`, `4m12s`, `9s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests;
