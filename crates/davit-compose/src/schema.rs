//! Structural validation of one file against the Compose specification: unknown keys and wrong
//! types, each reported at its own position. Every problem is reported, not only the first.

use crate::loader::Ctx;
use crate::normalize::SERVICE_ORDER;
use crate::yaml::{Node, Value};

const TOP: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

/// The keys a service may have: the fields of Compose's Go struct ([`SERVICE_ORDER`]), less the
/// legacy ones its schema refuses.
pub(crate) static SERVICE_KEYS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        const NOT_IN_SCHEMA: [&str; 5] = [
            "dockerfile",
            "log_driver",
            "log_opt",
            "net",
            "volume_driver",
        ];
        SERVICE_ORDER
            .iter()
            .copied()
            .filter(|k| !NOT_IN_SCHEMA.contains(k))
            .collect()
    });

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

fn timestamps(ctx: &mut Ctx<'_>, n: &Node, path: &mut Vec<String>) {
    match &n.value {
        Value::Timestamp(_) => ctx.error(
            n.pos,
            format!("{}: invalid jsonType time.Time", path.join(".")),
            Some("quote the value to make it a string"),
        ),
        Value::Map(m) => {
            for (k, (_, v)) in m {
                if !k.starts_with("x-") {
                    path.push(k.clone());
                    timestamps(ctx, v, path);
                    path.pop();
                }
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                timestamps(ctx, v, path);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Validates one (interpolated) file.
pub(crate) fn validate(doc: &Node, ctx: &mut Ctx<'_>) {
    timestamps(ctx, doc, &mut Vec::new());
    unknown(ctx, doc, TOP, "the top level");
    if let Some(s) = doc.get("services")
        && expect_map_or_null(ctx, s, "services")
    {
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
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some(s) = doc.get(section)
            && expect_map_or_null(ctx, s, section)
        {
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

fn valid_pull_policy(p: &str) -> bool {
    if matches!(
        p,
        "always"
            | "never"
            | "build"
            | "if_not_present"
            | "missing"
            | "refresh"
            | "daily"
            | "weekly"
    ) {
        return true;
    }
    // every_([0-9]+[wdhms])+ ; the schema pattern is not anchored, so a match anywhere counts.
    p.match_indices("every_").any(|(i, _)| {
        let rest = &p[i + 6..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        digits > 0 && rest[digits..].starts_with(['w', 'd', 'h', 'm', 's'])
    }) || [
        "always",
        "never",
        "build",
        "if_not_present",
        "missing",
        "refresh",
        "daily",
        "weekly",
    ]
    .iter()
    .any(|w| p.contains(w))
}

fn valid_resource_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Allowed keys of the nested objects of a service, by path below the service.
fn nested_keys(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        ["build"] => &[
            "context",
            "dockerfile",
            "dockerfile_inline",
            "entitlements",
            "args",
            "ssh",
            "labels",
            "cache_from",
            "cache_to",
            "no_cache",
            "additional_contexts",
            "network",
            "provenance",
            "sbom",
            "pull",
            "target",
            "shm_size",
            "extra_hosts",
            "isolation",
            "privileged",
            "secrets",
            "tags",
            "ulimits",
            "platforms",
        ],
        ["deploy"] => &[
            "mode",
            "endpoint_mode",
            "replicas",
            "labels",
            "rollback_config",
            "update_config",
            "resources",
            "restart_policy",
            "placement",
        ],
        ["deploy", "update_config" | "rollback_config"] => &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
        ["deploy", "resources"] => &["limits", "reservations"],
        ["deploy", "resources", "limits"] => &["cpus", "memory", "pids"],
        ["deploy", "resources", "reservations"] => {
            &["cpus", "memory", "generic_resources", "devices"]
        }
        ["deploy", "restart_policy"] => &["condition", "delay", "max_attempts", "window"],
        ["deploy", "placement"] => &["constraints", "preferences", "max_replicas_per_node"],
        ["healthcheck"] => &[
            "disable",
            "interval",
            "retries",
            "test",
            "timeout",
            "start_period",
            "start_interval",
        ],
        ["logging"] => &["driver", "options"],
        ["depends_on", _] => &["condition", "restart", "required"],
        ["ports", _] => &[
            "name",
            "mode",
            "host_ip",
            "target",
            "published",
            "protocol",
            "app_protocol",
        ],
        ["volumes", _] => &[
            "type",
            "source",
            "target",
            "read_only",
            "consistency",
            "bind",
            "volume",
            "tmpfs",
            "image",
        ],
        ["volumes", _, "bind"] => &["propagation", "create_host_path", "recursive", "selinux"],
        ["volumes", _, "volume"] => &["nocopy", "subpath"],
        ["volumes", _, "tmpfs"] => &["size", "mode"],
        ["volumes", _, "image"] => &["subpath"],
        ["networks", _] => &[
            "aliases",
            "interface_name",
            "ipv4_address",
            "ipv6_address",
            "link_local_ips",
            "mac_address",
            "driver_opts",
            "priority",
            "gw_priority",
        ],
        ["secrets" | "configs", _] => &["source", "target", "uid", "gid", "mode"],
        ["env_file", _] => &["path", "format", "required"],
        ["extends"] => &["service", "file"],
        ["develop"] => &["watch"],
        ["develop", "watch", _] => &[
            "path",
            "action",
            "target",
            "ignore",
            "include",
            "exec",
            "initial_sync",
        ],
        ["ulimits", _] => &["hard", "soft"],
        ["credential_spec"] => &["config", "file", "registry"],
        _ => return None,
    })
}

/// Paths (below a service) whose value must be a string (durations are strings in the schema).
fn must_be_string(path: &[&str]) -> bool {
    matches!(
        path,
        [
            "healthcheck",
            "interval" | "timeout" | "start_period" | "start_interval"
        ] | ["stop_grace_period"]
            | [
                "deploy",
                "update_config" | "rollback_config",
                "delay" | "monitor"
            ]
            | ["deploy", "restart_policy", "delay" | "window"]
    )
}

fn enum_values(path: &[&str]) -> Option<&'static [&'static str]> {
    Some(match path {
        ["volumes", _, "type"] => &["bind", "volume", "tmpfs", "cluster", "npipe", "image"],
        ["depends_on", _, "condition"] => &[
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        ],
        ["develop", "watch", _, "action"] => {
            &["rebuild", "sync", "restart", "sync+restart", "sync+exec"]
        }
        ["deploy", "update_config" | "rollback_config", "order"] => &["start-first", "stop-first"],
        _ => return None,
    })
}

fn walk(ctx: &mut Ctx<'_>, n: &Node, path: &mut Vec<String>, what: &str) {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    if let Some(keys) = nested_keys(&p)
        && matches!(n.value, Value::Map(_))
    {
        unknown(ctx, n, keys, &format!("{what}.{}", path.join(".")));
    }
    if must_be_string(&p) && !matches!(n.value, Value::Str(_) | Value::Null) {
        ctx.error(
            n.pos,
            format!("{what}.{} must be a string", path.join(".")),
            Some("write a duration like \"30s\""),
        );
    }
    if let (Some(vals), Value::Str(s)) = (enum_values(&p), &n.value)
        && !vals.contains(&s.as_str())
    {
        ctx.error(
            n.pos,
            format!(
                "{what}.{}: value must be one of {}",
                path.join("."),
                vals.iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("use one of the listed values"),
        );
    }
    match &n.value {
        Value::Map(m) => {
            for (k, (_, v)) in m {
                if k.starts_with("x-") {
                    continue;
                }
                path.push(k.clone());
                walk(ctx, v, path, what);
                path.pop();
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(ctx, v, path, what);
                path.pop();
            }
        }
        _ => {}
    }
}

fn validate_service(ctx: &mut Ctx<'_>, svc: &Node, what: &str) {
    unknown(ctx, svc, &SERVICE_KEYS, what);
    if let Some(m) = svc.as_map() {
        for (k, (_, v)) in m {
            if k.starts_with("x-") {
                continue;
            }
            let mut path = vec![k.clone()];
            walk(ctx, v, &mut path, what);
        }
    }
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
    for key in [
        "command",
        "entrypoint",
        "cap_add",
        "cap_drop",
        "dns",
        "dns_search",
        "dns_opt",
        "security_opt",
        "tmpfs",
        "profiles",
        "links",
        "external_links",
        "volumes_from",
        "group_add",
        "device_cgroup_rules",
    ] {
        if let Some(Value::Seq(items)) = svc.get(key).map(|n| &n.value) {
            for (i, it) in items.iter().enumerate() {
                if !matches!(it.value, Value::Str(_)) {
                    ctx.error(
                        it.pos,
                        format!("{what}.{key}.{i} must be a string"),
                        Some("quote the value"),
                    );
                }
            }
        }
    }
    if let Some(Value::Seq(items)) = svc
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .map(|n| &n.value)
    {
        for (i, it) in items.iter().enumerate() {
            if !matches!(it.value, Value::Str(_)) {
                ctx.error(
                    it.pos,
                    format!("{what}.healthcheck.test.{i} must be a string"),
                    Some("quote the value"),
                );
            }
        }
    }
    if let Some(pp) = svc.get("pull_policy").and_then(Node::as_str)
        && !valid_pull_policy(pp)
    {
        ctx.error(
                svc.get("pull_policy").map_or(svc.pos, |n| n.pos),
                format!("{what}.pull_policy {pp:?} is not valid"),
                Some("use always, never, build, if_not_present, missing, refresh, daily, weekly or every_<duration>"),
            );
    }
    if let Some(Value::Seq(items)) = svc.get("expose").map(|n| &n.value) {
        for (i, it) in items.iter().enumerate() {
            if !matches!(it.value, Value::Str(_) | Value::Int(_)) {
                ctx.error(
                    it.pos,
                    format!("{what}.expose.{i}: unsupported expose value"),
                    Some("use a port number or \"PORT/PROTOCOL\""),
                );
            }
        }
    }
    if let Some(p) = svc.get("ports")
        && let Value::Seq(items) = &p.value
    {
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
