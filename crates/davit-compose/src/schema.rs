//! Structural validation of one file against the Compose specification: unknown keys and wrong
//! types, each reported at its own position. Every problem is reported, not only the first.

use crate::loader::Ctx;
use crate::yaml::{Node, Value};

const TOP: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "profiles",
    "annotations",
    "attach",
    "build",
    "develop",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroup",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "cpu_shares",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "provider",
    "environment",
    "env_file",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "group_add",
    "gpus",
    "hostname",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "label_file",
    "links",
    "logging",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "mac_address",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volume_driver",
    "volumes",
    "volumes_from",
    "working_dir",
    "post_start",
    "pre_stop",
];

fn unknown(ctx: &mut Ctx<'_>, n: &Node, allowed: &[&str], what: &str) {
    let Some(m) = n.as_map() else { return };
    for (k, (kp, _)) in m {
        if k.starts_with("x-") || allowed.contains(&k.as_str()) {
            continue;
        }
        let close = allowed.iter().find(|a| edit_distance(a, k) <= 2);
        let hint = match close {
            Some(c) => format!("did you mean `{c}`?"),
            None => {
                format!("remove it, or prefix it with `x-` to keep it as an extension of {what}")
            }
        };
        ctx.error(
            *kp,
            format!("{what}: additional property {k:?} is not allowed"),
            Some(&hint),
        );
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let c = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + c);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn expect_map_or_null(ctx: &mut Ctx<'_>, n: &Node, what: &str) -> bool {
    match n.value {
        Value::Map(_) => true,
        Value::Null => false,
        _ => {
            ctx.error(
                n.pos,
                format!("{what} must be a mapping, not {}", n.type_name()),
                Some("write it as `key: value` lines"),
            );
            false
        }
    }
}

/// Validates one (interpolated) file.
pub(crate) fn validate(doc: &Node, ctx: &mut Ctx<'_>) {
    unknown(ctx, doc, TOP, "the top level");
    if let Some(s) = doc.get("services") {
        if expect_map_or_null(ctx, s, "services") {
            for (name, (kp, svc)) in s.as_map().into_iter().flatten() {
                let what = format!("services.{name}");
                if !valid_resource_name(name) {
                    ctx.error(
                        *kp,
                        format!("{what}: invalid service name"),
                        Some("use letters, digits, `.`, `_` and `-`"),
                    );
                }
                match &svc.value {
                    Value::Map(_) => validate_service(ctx, svc, &what),
                    _ => ctx.error(
                        svc.pos,
                        format!("{what} must be a mapping"),
                        Some("give the service at least an `image:`"),
                    ),
                }
            }
        }
    }
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some(s) = doc.get(section) {
            if expect_map_or_null(ctx, s, section) {
                for (name, (_, def)) in s.as_map().into_iter().flatten() {
                    if !matches!(def.value, Value::Map(_) | Value::Null) {
                        ctx.error(
                            def.pos,
                            format!("{section}.{name} must be a mapping"),
                            Some("use `{}` for the defaults"),
                        );
                    }
                }
            }
        }
    }
}

fn valid_resource_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn validate_service(ctx: &mut Ctx<'_>, svc: &Node, what: &str) {
    unknown(ctx, svc, SERVICE_KEYS, what);
    let Some(m) = svc.as_map() else { return };
    for (k, (_, v)) in m {
        let bad =
            match k.as_str() {
                "image" | "container_name" | "hostname" | "user" | "working_dir" | "restart"
                | "platform" | "network_mode" | "pid" | "ipc" | "stop_signal" | "pull_policy"
                | "domainname" | "runtime" | "cgroup_parent" | "userns_mode" | "uts"
                | "isolation" | "mac_address" => !matches!(v.value, Value::Str(_) | Value::Null),
                "ports" | "volumes" | "secrets" | "configs" | "devices" | "cap_add"
                | "cap_drop" | "profiles" | "links" | "external_links" | "volumes_from"
                | "security_opt" => !matches!(v.value, Value::Seq(_) | Value::Null),
                "environment" | "labels" | "depends_on" | "extra_hosts" | "annotations"
                | "sysctls" => !matches!(v.value, Value::Seq(_) | Value::Map(_) | Value::Null),
                "build" | "extends" => !matches!(v.value, Value::Str(_) | Value::Map(_)),
                "healthcheck" | "deploy" | "logging" | "develop" | "ulimits" | "blkio_config" => {
                    !matches!(v.value, Value::Map(_) | Value::Null)
                }
                "command" | "entrypoint" | "env_file" | "dns" | "dns_search" | "tmpfs" => {
                    !matches!(v.value, Value::Str(_) | Value::Seq(_) | Value::Null)
                }
                "init" | "privileged" | "read_only" | "stdin_open" | "tty" | "oom_kill_disable"
                | "attach" => !matches!(v.value, Value::Bool(_) | Value::Null),
                _ => false,
            };
        if bad {
            ctx.error(
                v.pos,
                format!("{what}.{k}: invalid type {}", v.type_name()),
                Some("see the Compose specification for this option's syntax"),
            );
        }
    }
    if let Some(p) = svc.get("ports") {
        if let Value::Seq(items) = &p.value {
            for it in items {
                if !matches!(it.value, Value::Str(_) | Value::Int(_) | Value::Map(_)) {
                    ctx.error(
                        it.pos,
                        format!("{what}.ports: invalid port {}", it.type_name()),
                        Some("write \"HOST:CONTAINER\" or a mapping with `target:`"),
                    );
                }
            }
        }
    }
}
