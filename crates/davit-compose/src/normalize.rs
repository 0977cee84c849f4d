//! Interpolation over the tree, canonical (long) syntax per file, and the final normalisation into
//! the document `docker compose config --format json` prints.

use std::path::Path;

use serde_json::{Map as JMap, Value as J, json};

use crate::loader::{Ctx, Env, absolutize, go_float, scalar_string};
use crate::yaml::{Map, Node, Pos, Value};

// ---------------------------------------------------------------- interpolation

#[derive(Clone, Copy)]
enum Cast {
    Int,
    Float,
    Bool,
}

fn cast_for(path: &[&str]) -> Option<Cast> {
    use Cast::{Bool, Float, Int};
    Some(match path {
        ["services", _, rest @ ..] => match rest {
            ["configs" | "secrets", _, "mode"] => Int,
            [
                "cpu_count" | "cpu_period" | "cpu_quota" | "cpu_rt_period" | "cpu_rt_runtime"
                | "cpu_shares",
            ] => Int,
            ["cpu_percent" | "cpus"] => Float,
            ["init" | "oom_kill_disable" | "privileged" | "read_only" | "stdin_open" | "tty"] => {
                Bool
            }
            ["deploy", "replicas"] => Int,
            ["deploy", "update_config" | "rollback_config", "parallelism"] => Int,
            [
                "deploy",
                "update_config" | "rollback_config",
                "max_failure_ratio",
            ] => Float,
            ["deploy", "restart_policy", "max_attempts"] => Int,
            ["deploy", "placement", "max_replicas_per_node"] => Int,
            ["healthcheck", "retries"] => Int,
            ["healthcheck", "disable"] => Bool,
            ["oom_score_adj" | "pids_limit" | "scale"] => Int,
            ["ports", _, "target"] => Int,
            ["ulimits", _] | ["ulimits", _, "hard" | "soft"] => Int,
            ["volumes", _, "read_only"] | ["volumes", _, "volume", "nocopy"] => Bool,
            _ => return None,
        },
        [
            "networks",
            _,
            "external" | "internal" | "attachable" | "enable_ipv6",
        ] => Bool,
        ["volumes" | "secrets" | "configs", _, "external"] => Bool,
        _ => return None,
    })
}

fn apply_cast(s: &str, cast: Cast) -> Result<Value, String> {
    match cast {
        Cast::Int => s
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("{s:?} is not an integer")),
        Cast::Float => s
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("{s:?} is not a number")),
        Cast::Bool => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{s:?} is not a boolean")),
        },
    }
}

/// Interpolates every string value (never keys) of a document, then casts the values Compose
/// casts (ports, booleans, counts).
pub(crate) fn interpolate_tree(node: &mut Node, env: &Env, ctx: &mut Ctx<'_>) {
    let mut path = Vec::new();
    interp_rec(node, env, ctx, &mut path);
}

fn interp_rec(node: &mut Node, env: &Env, ctx: &mut Ctx<'_>, path: &mut Vec<String>) {
    match &mut node.value {
        Value::Str(s) => {
            let lookup = |k: &str| env.get(k).cloned();
            let mut unset = Vec::new();
            let result = crate::interp::interpolate_collecting(s, &lookup, &mut unset);
            for name in unset {
                ctx.warn(
                    node.pos,
                    format!("the {name:?} variable is not set, defaulting to a blank string"),
                    "set it in the environment or in .env, or give a default with ${VAR:-default}",
                );
            }
            match result {
                Ok(v) => {
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    if let Some(c) = cast_for(&p) {
                        match apply_cast(&v, c) {
                            Ok(val) => node.value = val,
                            Err(e) => ctx.error(
                                node.pos,
                                format!("{}: {e}", path.join(".")),
                                Some("use a value of the right type"),
                            ),
                        }
                    } else {
                        *s = v;
                    }
                }
                Err(e) => {
                    let hint = if e.variable.is_some() {
                        "set the variable in the environment or in .env"
                    } else {
                        "write $$ for a literal $"
                    };
                    ctx.error(
                        node.pos,
                        format!(
                            "error while interpolating {}: {}",
                            path.join("."),
                            e.message
                        ),
                        Some(hint),
                    );
                }
            }
        }
        Value::Seq(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interp_rec(it, env, ctx, path);
                path.pop();
            }
        }
        Value::Map(m) => {
            for (k, (_, v)) in m.iter_mut() {
                path.push(k.clone());
                interp_rec(v, env, ctx, path);
                path.pop();
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- helpers

fn s(v: Value) -> Node {
    Node::new(v)
}

fn str_node(x: impl Into<String>, pos: Pos) -> Node {
    Node::at(Value::Str(x.into()), pos)
}

fn map_node(m: Map, pos: Pos) -> Node {
    Node::at(Value::Map(m), pos)
}

fn put(m: &mut Map, k: &str, v: Node) {
    let p = v.pos;
    m.insert(k.to_owned(), (p, v));
}

/// Splits a command line as a POSIX shell would (quotes, backslashes), without expansion.
pub(crate) fn shell_split(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = it.next()
                    && n != '\n'
                {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return None,
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.peek().copied() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => {
                                it.next();
                                cur.push(n);
                            }
                            Some('\n') => {
                                it.next();
                            }
                            _ => cur.push('\\'),
                        },
                        Some(x) => cur.push(x),
                        None => return None,
                    }
                }
            }
            x => {
                in_word = true;
                cur.push(x);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// Parses a Compose duration (`1m30s`, `500ms`, `2h`, `1.5s`) into nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(i128::from(n) * 1_000_000_000);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mul: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            _ => return None,
        };
        total += num * mul;
    }
    let v = total.round() as i128;
    Some(if neg { -v } else { v })
}

/// Formats nanoseconds as Go's `time.Duration.String()`.
pub(crate) fn go_duration(ns: i128) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1u128)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        let rem = u % 3_600_000_000_000;
        let m = rem / 60_000_000_000;
        let sec = rem % 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h{m}m"));
        } else if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac(sec, 1_000_000_000));
        out.push('s');
    }
    if neg { format!("-{out}") } else { out }
}

fn frac(v: u128, div: u128) -> String {
    let whole = v / div;
    let f = v % div;
    if f == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let fs = format!("{f:0width$}");
    format!("{whole}.{}", fs.trim_end_matches('0'))
}

fn is_url_context(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.starts_with("github.com/")
}

fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

fn resolve_path(ctx: &Ctx<'_>, base: &Path, p: &str) -> String {
    if is_windows_abs(p) || p.starts_with("\\\\") {
        return p.to_owned();
    }
    if let Some(rest) = p.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(h) = &ctx.home
    {
        return format!("{h}{rest}");
    }
    absolutize(base, Path::new(p))
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------- canonical file

/// Expands short syntax into long syntax and resolves relative paths against `dir`.
pub(crate) fn canonical_file(node: &mut Node, dir: &Path, ctx: &mut Ctx<'_>) {
    let Some(m) = node.as_map_mut() else { return };
    if let Some((_, services)) = m.get_mut("services")
        && let Some(sm) = services.as_map_mut()
    {
        for (name, (_, svc)) in sm.iter_mut() {
            canonical_service(name, svc, dir, ctx);
            if let Some(fields) = svc.as_map_mut() {
                for (k, (_, v)) in fields.iter_mut() {
                    // Compose enforces unicity within a file, except for extra_hosts (only merged).
                    if let (Value::Seq(items), false) = (&mut v.value, k == "extra_hosts") {
                        crate::merge::dedupe(&["services", name, k], items);
                    }
                    if k == "build"
                        && let Some(bm) = v.as_map_mut()
                    {
                        for (bk, (_, bv)) in bm.iter_mut() {
                            if let Value::Seq(items) = &mut bv.value {
                                crate::merge::dedupe(&["services", name, "build", bk], items);
                            }
                        }
                    }
                }
            }
        }
    }
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some((_, sec)) = m.get_mut(section)
            && let Some(sm) = sec.as_map_mut()
        {
            for (_, (_, def)) in sm.iter_mut() {
                if matches!(def.value, Value::Null) {
                    def.value = Value::Map(Map::new());
                }
                if let Some(dm) = def.as_map_mut() {
                    if matches!(section, "secrets" | "configs")
                        && let Some((_, f)) = dm.get_mut("file")
                        && let Some(p) = f.as_str()
                    {
                        let r = resolve_path(ctx, dir, p);
                        f.value = Value::Str(r);
                    }
                    for key in ["labels", "driver_opts"] {
                        if let Some((_, l)) = dm.get_mut(key) {
                            to_string_map(l, key == "labels");
                        }
                    }
                    if section == "volumes" {
                        let bind = dm
                            .get("driver_opts")
                            .and_then(|(_, o)| o.get("o"))
                            .and_then(Node::as_str)
                            .is_some_and(|o| o.split(',').any(|x| x == "bind"));
                        if bind
                            && let Some((_, dev)) = dm
                                .get_mut("driver_opts")
                                .and_then(|(_, o)| o.as_map_mut())
                                .and_then(|o| o.get_mut("device"))
                            && let Some(d) = dev.as_str()
                        {
                            let r = resolve_path(ctx, dir, d);
                            dev.value = Value::Str(r);
                        }
                    }
                    if let Some((_, ext)) = dm.get_mut("external")
                        && let Value::Map(em) = &ext.value
                    {
                        // legacy `external: {name: x}`
                        let name = em.get("name").map(|(_, n)| n.clone());
                        ext.value = Value::Bool(true);
                        if let Some(n) = name {
                            put(dm, "name", n);
                        }
                    }
                }
            }
        }
    }
    if let Some((_, inc)) = m.get_mut("include")
        && let Value::Seq(items) = &mut inc.value
    {
        for it in items.iter_mut() {
            if let Value::Str(p) = &it.value {
                let mut im = Map::new();
                put(
                    &mut im,
                    "path",
                    Node::at(Value::Seq(vec![str_node(p.clone(), it.pos)]), it.pos),
                );
                it.value = Value::Map(im);
            }
        }
    }
}

fn to_string_map(n: &mut Node, null_as_empty: bool) {
    let mut out = Map::new();
    match &n.value {
        Value::Seq(items) => {
            for it in items {
                if let Some(sv) = scalar_string(it) {
                    let (k, v) = match sv.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Value::Str(v.to_owned())),
                        None => (
                            sv.clone(),
                            if null_as_empty {
                                Value::Str(String::new())
                            } else {
                                Value::Null
                            },
                        ),
                    };
                    out.insert(k, (it.pos, Node::at(v, it.pos)));
                }
            }
        }
        Value::Map(m) => {
            for (k, (kp, v)) in m {
                let val = match scalar_string(v) {
                    Some(x) => Value::Str(x),
                    None if null_as_empty => Value::Str(String::new()),
                    None => Value::Null,
                };
                // Keep `!reset`/`!override` on entries for the merge step.
                let mut n = Node::at(val, v.pos);
                n.tag = v.tag;
                out.insert(k.clone(), (*kp, n));
            }
        }
        _ => return,
    }
    n.value = Value::Map(out);
}

fn command_node(n: &mut Node) {
    match &n.value {
        Value::Str(st) => {
            let parts = shell_split(st).unwrap_or_else(|| vec![st.clone()]);
            n.value = Value::Seq(parts.into_iter().map(|p| str_node(p, n.pos)).collect());
        }
        Value::Seq(items) => {
            n.value = Value::Seq(
                items
                    .iter()
                    .map(|i| Node::at(scalar_string(i).map_or(Value::Null, Value::Str), i.pos))
                    .collect(),
            );
        }
        _ => {}
    }
}

fn string_list(n: &mut Node) {
    match &n.value {
        Value::Seq(items) => {
            n.value = Value::Seq(
                items
                    .iter()
                    .map(|i| Node::at(scalar_string(i).map_or(Value::Null, Value::Str), i.pos))
                    .collect(),
            );
        }
        Value::Null => {}
        _ => {
            if let Some(x) = scalar_string(n) {
                n.value = Value::Seq(vec![str_node(x, n.pos)]);
            }
        }
    }
}

fn canonical_service(name: &str, svc: &mut Node, dir: &Path, ctx: &mut Ctx<'_>) {
    let _ = name;
    if matches!(svc.value, Value::Null) {
        svc.value = Value::Map(Map::new());
    }
    let Some(m) = svc.as_map_mut() else { return };
    let pos_of = |m: &Map, k: &str| m.get(k).map(|(p, _)| *p).unwrap_or_default();
    // build
    if let Some((_, b)) = m.get_mut("build") {
        if let Some(c) = b.as_str().map(String::from) {
            let mut bm = Map::new();
            put(&mut bm, "context", str_node(c, b.pos));
            b.value = Value::Map(bm);
        }
        let bpos = b.pos;
        if let Some(bm) = b.as_map_mut() {
            let ctxv = bm
                .get("context")
                .and_then(|(_, n)| n.as_str())
                .unwrap_or(".")
                .to_owned();
            let resolved = if is_url_context(&ctxv) {
                ctxv
            } else {
                resolve_path(ctx, dir, &ctxv)
            };
            let p = bm.get("context").map(|(p, _)| *p).unwrap_or(bpos);
            bm.insert("context".into(), (p, str_node(resolved, p)));
            for key in ["args", "labels"] {
                if let Some((_, a)) = bm.get_mut(key) {
                    to_string_map(a, key == "labels");
                }
            }
            if let Some((_, a)) = bm.get_mut("additional_contexts") {
                to_string_map(a, false);
                if let Some(am) = a.as_map_mut() {
                    for (_, (_, v)) in am.iter_mut() {
                        if let Some(x) = v.as_str()
                            && !x.contains("://")
                            && !x.starts_with("service:")
                        {
                            let r = resolve_path(ctx, dir, x);
                            v.value = Value::Str(r);
                        }
                    }
                }
            }
            if let Some((_, sec)) = bm.get_mut("secrets") {
                mounts(sec);
            }
            for key in ["cache_from", "cache_to", "tags", "platforms"] {
                if let Some((_, a)) = bm.get_mut(key) {
                    string_list(a);
                }
            }
            if let Some((_, ssh)) = bm.get_mut("ssh")
                && let Value::Seq(items) = &ssh.value
            {
                let mut out = Map::new();
                for it in items {
                    if let Some(sv) = scalar_string(it) {
                        let (k, v) = sv
                            .split_once('=')
                            .map_or((sv.clone(), String::new()), |(a, b)| (a.into(), b.into()));
                        out.insert(k, (it.pos, str_node(v, it.pos)));
                    }
                }
                ssh.value = Value::Map(out);
            }
        }
    }
    for key in ["command", "entrypoint"] {
        if let Some((_, c)) = m.get_mut(key) {
            command_node(c);
        }
    }
    for key in ["environment"] {
        if let Some((_, e)) = m.get_mut(key) {
            to_string_map(e, false);
        }
    }
    for key in ["labels", "annotations"] {
        if let Some((_, e)) = m.get_mut(key) {
            to_string_map(e, true);
        }
    }
    if let Some((_, e)) = m.get_mut("sysctls") {
        to_string_map(e, false);
    }
    for key in [
        "dns",
        "dns_search",
        "tmpfs",
        "expose",
        "cap_add",
        "cap_drop",
        "profiles",
        "links",
        "external_links",
        "volumes_from",
        "security_opt",
        "dns_opt",
        "group_add",
    ] {
        if let Some((_, e)) = m.get_mut(key) {
            string_list(e);
        }
    }
    if let Some((_, ef)) = m.get_mut("env_file") {
        let items: Vec<Node> = match &ef.value {
            Value::Seq(v) => v.clone(),
            Value::Str(_) => vec![ef.clone()],
            _ => vec![],
        };
        let mut out = Vec::new();
        for it in items {
            let (path, required, format) = match &it.value {
                Value::Str(p) => (p.clone(), true, None),
                Value::Map(_) => (
                    it.get("path")
                        .and_then(Node::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    !matches!(
                        it.get("required").map(|n| &n.value),
                        Some(Value::Bool(false))
                    ),
                    it.get("format").and_then(Node::as_str).map(String::from),
                ),
                _ => continue,
            };
            let mut em = Map::new();
            put(
                &mut em,
                "path",
                str_node(resolve_path(ctx, dir, &path), it.pos),
            );
            put(&mut em, "required", Node::at(Value::Bool(required), it.pos));
            if let Some(f) = format {
                put(&mut em, "format", str_node(f, it.pos));
            }
            out.push(map_node(em, it.pos));
        }
        ef.value = Value::Seq(out);
    }
    if let Some((_, ports)) = m.get_mut("ports")
        && let Value::Seq(items) = &ports.value
    {
        let mut out = Vec::new();
        for it in items {
            match &it.value {
                Value::Map(pm) => {
                    let mut o = Map::new();
                    if let Some((_, n)) = pm.get("name") {
                        put(&mut o, "name", n.clone());
                    }
                    put(
                        &mut o,
                        "mode",
                        pm.get("mode")
                            .map_or_else(|| str_node("ingress", it.pos), |(_, n)| n.clone()),
                    );
                    if let Some((_, n)) = pm.get("host_ip") {
                        put(&mut o, "host_ip", n.clone());
                    }
                    if let Some((_, n)) = pm.get("target") {
                        let v = match &n.value {
                            Value::Str(x) => x.parse::<i64>().map_or(n.value.clone(), Value::Int),
                            v => v.clone(),
                        };
                        put(&mut o, "target", Node::at(v, n.pos));
                    }
                    if let Some((_, n)) = pm.get("published")
                        && let Some(x) = scalar_string(n).filter(|x| !x.is_empty())
                    {
                        put(&mut o, "published", str_node(x, n.pos));
                    }
                    put(
                        &mut o,
                        "protocol",
                        pm.get("protocol")
                            .map_or_else(|| str_node("tcp", it.pos), |(_, n)| n.clone()),
                    );
                    if let Some((_, n)) = pm.get("app_protocol") {
                        put(&mut o, "app_protocol", n.clone());
                    }
                    for (k, v) in pm {
                        if k.starts_with("x-") {
                            o.insert(k.clone(), v.clone());
                        }
                    }
                    out.push(map_node(o, it.pos));
                }
                _ => {
                    let Some(sv) = scalar_string(it) else {
                        continue;
                    };
                    match parse_port(&sv) {
                        Ok(list) => {
                            for p in list {
                                out.push(Node::from_json(&p, it.pos));
                            }
                        }
                        Err(e) => ctx.error(
                            it.pos,
                            e,
                            Some("use [HOST:]CONTAINER[/PROTOCOL], e.g. \"8080:80\""),
                        ),
                    }
                }
            }
        }
        ports.value = Value::Seq(out);
    }
    if let Some((_, vols)) = m.get_mut("volumes")
        && let Value::Seq(items) = &vols.value
    {
        let mut out = Vec::new();
        for it in items {
            match &it.value {
                Value::Str(sv) => match parse_volume(sv, dir, ctx) {
                    Ok(v) => out.push(Node::from_json(&v, it.pos)),
                    Err(e) => ctx.error(it.pos, e, Some("use SOURCE:TARGET[:MODE]")),
                },
                Value::Map(vm) => {
                    let mut o = vm.clone();
                    let ty = vm
                        .get("type")
                        .and_then(|(_, n)| n.as_str())
                        .unwrap_or("volume")
                        .to_owned();
                    if ty == "bind"
                        && let Some((_, src)) = o.get_mut("source")
                        && let Some(p) = src.as_str()
                    {
                        let r = resolve_path(ctx, dir, p);
                        src.value = Value::Str(r);
                    }
                    if ty == "volume" && !o.contains_key("volume") {
                        // Compose adds an empty `volume` section... only for short syntax.
                    }
                    out.push(map_node(o, it.pos));
                }
                _ => out.push(it.clone()),
            }
        }
        vols.value = Value::Seq(out);
    }
    if let Some((_, deps)) = m.get_mut("depends_on") {
        let mut out = Map::new();
        match &deps.value {
            Value::Seq(items) => {
                for it in items {
                    if let Some(n) = it.as_str() {
                        let mut d = Map::new();
                        put(&mut d, "condition", str_node("service_started", it.pos));
                        put(&mut d, "required", Node::at(Value::Bool(true), it.pos));
                        out.insert(n.to_owned(), (it.pos, map_node(d, it.pos)));
                    }
                }
            }
            Value::Map(dm) => {
                for (k, (kp, v)) in dm {
                    let mut d = Map::new();
                    put(
                        &mut d,
                        "condition",
                        v.get("condition")
                            .cloned()
                            .unwrap_or_else(|| str_node("service_started", v.pos)),
                    );
                    if let Some(r) = v.get("restart") {
                        put(&mut d, "restart", r.clone());
                    }
                    put(
                        &mut d,
                        "required",
                        v.get("required")
                            .cloned()
                            .unwrap_or_else(|| Node::at(Value::Bool(true), v.pos)),
                    );
                    let mut dn = map_node(d, v.pos);
                    dn.tag = v.tag;
                    out.insert(k.clone(), (*kp, dn));
                }
            }
            _ => {}
        }
        deps.value = Value::Map(out);
    }
    for key in ["networks", "models"] {
        if let Some((_, nets)) = m.get_mut(key)
            && let Value::Seq(items) = &nets.value
        {
            let mut out = Map::new();
            for it in items {
                if let Some(n) = it.as_str() {
                    out.insert(n.to_owned(), (it.pos, Node::at(Value::Null, it.pos)));
                }
            }
            nets.value = Value::Map(out);
        }
    }
    if let Some((_, secs)) = m.get_mut("secrets") {
        mounts(secs);
        if let Value::Seq(items) = &mut secs.value {
            for it in items.iter_mut() {
                if let Some(sm) = it.as_map_mut()
                    && !sm.contains_key("target")
                    && let Some(src) = sm
                        .get("source")
                        .and_then(|(_, n)| n.as_str())
                        .map(String::from)
                {
                    let p = sm.get("source").map(|(p, _)| *p).unwrap_or_default();
                    sm.insert(
                        "target".into(),
                        (p, str_node(format!("/run/secrets/{src}"), p)),
                    );
                }
            }
        }
    }
    if let Some((_, cfgs)) = m.get_mut("configs") {
        mounts(cfgs);
    }
    if let Some((_, hc)) = m.get_mut("healthcheck")
        && let Some(hm) = hc.as_map_mut()
    {
        if let Some((_, t)) = hm.get_mut("test")
            && let Some(x) = t.as_str()
        {
            t.value = Value::Seq(vec![str_node("CMD-SHELL", t.pos), str_node(x, t.pos)]);
        }
        for k in ["interval", "timeout", "start_period", "start_interval"] {
            if let Some((_, d)) = hm.get_mut(k)
                && let Some(ns) = scalar_string(d).and_then(|x| parse_duration(&x))
            {
                d.value = Value::Str(go_duration(ns));
            }
        }
    }
    if let Some((_, d)) = m.get_mut("stop_grace_period")
        && let Some(ns) = scalar_string(d).and_then(|x| parse_duration(&x))
    {
        d.value = Value::Str(go_duration(ns));
    }
    if let Some((_, eh)) = m.get_mut("extra_hosts") {
        extra_hosts(eh);
    }
    if let Some((_, eh)) = m
        .get_mut("build")
        .and_then(|(_, b)| b.as_map_mut())
        .and_then(|b| b.get_mut("extra_hosts"))
    {
        extra_hosts(eh);
    }
    if let Some(bm) = m.get_mut("build").and_then(|(_, b)| b.as_map_mut()) {
        for k in ["provenance", "sbom"] {
            if let Some((_, v)) = bm.get_mut(k)
                && let Some(x) = scalar_string(v)
            {
                v.value = Value::Str(x);
            }
        }
    }
    if let Some((_, devs)) = m.get_mut("devices")
        && let Value::Seq(items) = &mut devs.value
    {
        for it in items.iter_mut() {
            if let Some(x) = it.as_str().map(String::from) {
                let parts: Vec<&str> = x.split(':').collect();
                let (src, dst, perm) = match parts.as_slice() {
                    [a] => (*a, *a, "rwm"),
                    [a, b] => (*a, *b, "rwm"),
                    [a, b, c, ..] => (*a, *b, *c),
                    [] => continue,
                };
                let mut dm = Map::new();
                put(&mut dm, "source", str_node(src, it.pos));
                put(&mut dm, "target", str_node(dst, it.pos));
                put(&mut dm, "permissions", str_node(perm, it.pos));
                it.value = Value::Map(dm);
            }
        }
    }
    if let Some((_, dev)) = m.get_mut("develop")
        && let Some((_, w)) = dev.as_map_mut().and_then(|d| d.get_mut("watch"))
        && let Value::Seq(items) = &mut w.value
    {
        for it in items.iter_mut() {
            if let Some(wm) = it.as_map_mut() {
                wm.retain(|k, _| !k.starts_with("x-"));
                for k in ["include", "ignore"] {
                    if let Some((_, l)) = wm.get_mut(k) {
                        string_list(l);
                    }
                }
                let epos = wm.get("exec").map(|(p, _)| *p).unwrap_or_default();
                let exec = wm
                    .entry("exec".into())
                    .or_insert_with(|| (epos, map_node(Map::new(), epos)));
                if matches!(exec.1.value, Value::Null) {
                    exec.1.value = Value::Map(Map::new());
                }
                if let Some(em) = exec.1.as_map_mut() {
                    let cpos = em.get("command").map(|(p, _)| *p).unwrap_or_default();
                    let c = em
                        .entry("command".into())
                        .or_insert_with(|| (cpos, Node::at(Value::Null, cpos)));
                    command_node(&mut c.1);
                }
                if let Some((_, p)) = wm.get_mut("path")
                    && let Some(x) = p.as_str()
                {
                    let r = resolve_path(ctx, dir, x);
                    p.value = Value::Str(r);
                }
            }
        }
    }
    if let Some((_, lf)) = m.get_mut("label_file") {
        string_list(lf);
        if let Value::Seq(items) = &mut lf.value {
            for it in items.iter_mut() {
                if let Some(x) = it.as_str() {
                    let r = resolve_path(ctx, dir, x);
                    it.value = Value::Str(r);
                }
            }
        }
    }
    let _ = pos_of;
}

fn extra_hosts(eh: &mut Node) {
    let mut out = Map::new();
    match &eh.value {
        Value::Seq(items) => {
            for it in items {
                if let Some(sv) = scalar_string(it) {
                    let (k, v) = sv
                        .split_once('=')
                        .or_else(|| sv.split_once(':'))
                        .unwrap_or((&sv, ""));
                    let e = out
                        .entry(k.to_owned())
                        .or_insert_with(|| (it.pos, Node::at(Value::Seq(vec![]), it.pos)));
                    if let Value::Seq(l) = &mut e.1.value {
                        l.push(str_node(v, it.pos));
                    }
                }
            }
        }
        Value::Map(hm) => {
            for (k, (kp, v)) in hm {
                let vals: Vec<Node> = match &v.value {
                    Value::Seq(l) => l
                        .iter()
                        .filter_map(|x| scalar_string(x).map(|y| str_node(y, x.pos)))
                        .collect(),
                    _ => scalar_string(v)
                        .map(|y| vec![str_node(y, v.pos)])
                        .unwrap_or_default(),
                };
                out.insert(k.clone(), (*kp, Node::at(Value::Seq(vals), v.pos)));
            }
        }
        _ => {}
    }
    let mut list: Vec<String> = Vec::new();
    for (k, (_, v)) in &out {
        if let Value::Seq(vals) = &v.value {
            for x in vals {
                list.push(format!("{k}={}", x.as_str().unwrap_or_default()));
            }
        }
    }
    eh.value = Value::Seq(list.into_iter().map(|x| str_node(x, eh.pos)).collect());
}

fn mounts(n: &mut Node) {
    if let Value::Seq(items) = &mut n.value {
        for it in items.iter_mut() {
            if let Some(x) = it.as_str() {
                let mut m = Map::new();
                put(&mut m, "source", str_node(x, it.pos));
                it.value = Value::Map(m);
            }
        }
    }
}

fn split_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.parse().map_err(|_| format!("invalid port {s:?}"))?;
    let b: u32 = b.parse().map_err(|_| format!("invalid port {s:?}"))?;
    if b < a || b > 65535 {
        return Err(format!("invalid port range {s:?}"));
    }
    Ok((a, b))
}

/// Parses a short port specification into long entries (one per container port).
pub(crate) fn parse_port(spec: &str) -> Result<Vec<J>, String> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid IP in {spec:?}"))?;
        (Some(ip.to_owned()), r.strip_prefix(':').unwrap_or(r))
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0].to_owned()), &rest[parts[0].len() + 1..]),
            _ => {
                // IPv6 without brackets: the last two parts are ports.
                let n = parts.len();
                let ipl = parts[..n - 2].join(":");
                (Some(ipl.clone()), &rest[ipl.len() + 1..])
            }
        }
    };
    if let Some(ip) = ip.as_deref().filter(|ip| !ip.is_empty())
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (published, target) = match rest.rsplit_once(':') {
        Some((p, t)) => (Some(p), t),
        None => (None, rest),
    };
    if target.is_empty() {
        return Err(format!("no port specified: {spec}"));
    }
    let (t0, t1) = split_range(target)?;
    let pubr = match published {
        Some(p) if !p.is_empty() => Some((p, split_range(p)?)),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, t) in (t0..=t1).enumerate() {
        let mut o = JMap::new();
        o.insert("mode".into(), json!("ingress"));
        if let Some(ip) = &ip
            && !ip.is_empty()
        {
            o.insert("host_ip".into(), json!(ip));
        }
        o.insert("target".into(), json!(t));
        if let Some((raw, (p0, p1))) = &pubr {
            if t1 > t0 {
                if p1 - p0 != t1 - t0 && p1 != p0 {
                    return Err(format!(
                        "invalid port range {spec:?}: ranges differ in size"
                    ));
                }
                if p1 == p0 {
                    o.insert("published".into(), json!(raw));
                } else {
                    o.insert("published".into(), json!((p0 + i as u32).to_string()));
                }
            } else {
                o.insert("published".into(), json!(raw));
            }
        }
        o.insert("protocol".into(), json!(proto));
        out.push(J::Object(o));
    }
    Ok(out)
}

/// Parses a short volume specification as Compose does (`SOURCE:TARGET[:OPTIONS]`, with Windows
/// drive letters kept inside their section and unknown options ignored).
pub(crate) fn parse_volume(spec: &str, dir: &Path, ctx: &Ctx<'_>) -> Result<J, String> {
    let mut o = JMap::new();
    if spec.is_empty() {
        return Err("invalid empty volume spec".into());
    }
    if spec.chars().count() <= 2 {
        o.insert("type".into(), json!("volume"));
        o.insert("target".into(), json!(spec));
        return Ok(J::Object(o));
    }
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut read_only = false;
    let mut nocopy = false;
    let mut propagation: Option<String> = None;
    let mut selinux: Option<String> = None;
    let mut buffer = String::new();
    let mut field = |buf: &str, last: bool| -> Result<(), String> {
        if buf.is_empty() {
            return Err(format!(
                "invalid spec: {spec}: empty section between colons"
            ));
        }
        if source.is_none() && last {
            target = Some(buf.to_owned());
        } else if source.is_none() {
            source = Some(buf.to_owned());
        } else if target.is_none() {
            target = Some(buf.to_owned());
        } else if !last {
            return Err(format!("invalid spec: {spec}: too many colons"));
        } else {
            for opt in buf.split(',') {
                match opt {
                    "ro" => read_only = true,
                    "rw" => read_only = false,
                    "nocopy" => nocopy = true,
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                        propagation = Some(opt.to_owned());
                    }
                    "z" | "Z" => selinux = Some(opt.to_owned()),
                    _ => {}
                }
            }
        }
        Ok(())
    };
    for c in spec.chars() {
        let drive =
            c == ':' && buffer.chars().count() == 1 && buffer.chars().all(char::is_alphabetic);
        if drive {
            buffer.push(c);
        } else if c == ':' {
            field(&buffer, false)?;
            buffer.clear();
        } else {
            buffer.push(c);
        }
    }
    field(&buffer, true)?;
    let bind = source.as_deref().is_some_and(is_file_path);
    o.insert("type".into(), json!(if bind { "bind" } else { "volume" }));
    if let Some(src) = &source {
        let src = if bind {
            resolve_path(ctx, dir, src)
        } else {
            src.clone()
        };
        o.insert("source".into(), json!(src));
    }
    o.insert("target".into(), json!(target.unwrap_or_default()));
    if read_only {
        o.insert("read_only".into(), json!(true));
    }
    let mut b = JMap::new();
    if let Some(p) = propagation {
        b.insert("propagation".into(), json!(p));
    }
    if bind {
        b.insert("create_host_path".into(), json!(true));
    }
    if let Some(z) = selinux {
        b.insert("selinux".into(), json!(z));
    }
    if !b.is_empty() {
        o.insert("bind".into(), J::Object(b));
    }
    if nocopy {
        o.insert("volume".into(), json!({"nocopy": true}));
    } else if !bind {
        o.insert("volume".into(), json!({}));
    }
    Ok(J::Object(o))
}

fn is_file_path(s: &str) -> bool {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some('.' | '/' | '~'), _) => true,
        _ if s.starts_with("\\\\") => true,
        (Some(a), Some(':')) => a.is_alphabetic(),
        _ => false,
    }
}

// ---------------------------------------------------------------- project name

fn normalize_name(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-').then_some(c)
        })
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_owned()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The project name: `-p`, then `COMPOSE_PROJECT_NAME`, then `name:`, then the directory.
pub(crate) fn project_name(
    opt: Option<&str>,
    env: &Env,
    model: &Node,
    dir: &Path,
    ctx: &mut Ctx<'_>,
) -> String {
    if let Some(p) = opt {
        if !valid_name(p) {
            ctx.diags.push(crate::Diagnostic::error("", 0, 0, format!("invalid project name {p:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number")).with_hint("pass a name like my-app to -p"));
        }
        return p.to_owned();
    }
    if let Some(p) = env.get("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty()) {
        if !valid_name(p) {
            ctx.diags.push(
                crate::Diagnostic::error(
                    "",
                    0,
                    0,
                    format!("invalid project name {p:?} in COMPOSE_PROJECT_NAME"),
                )
                .with_hint("use lowercase letters, digits, - and _"),
            );
        }
        return p.clone();
    }
    if let Some(n) = model.get("name") {
        // The top-level `name:` is normalised like a directory name, not refused.
        if let Some(x) = scalar_string(n)
            .map(|x| normalize_name(&x))
            .filter(|x| !x.is_empty())
        {
            return x;
        }
    }
    let base = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    normalize_name(&base)
}

/// A blkio device entry as Compose's Go struct marshals it: `Path`, `Weight`, `Rate` (a byte size
/// as a number string).
fn blkio_go_fields(m: &JMap<String, J>) -> JMap<String, J> {
    let mut out = JMap::new();
    if let Some(p) = m.get("path") {
        out.insert("Path".into(), p.clone());
    }
    if let Some(w) = m.get("weight") {
        out.insert("Weight".into(), w.clone());
    }
    if let Some(r) = m.get("rate") {
        let b = json_scalar(r).and_then(|x| parse_bytes(&x));
        out.insert(
            "Rate".into(),
            b.map_or_else(|| r.clone(), |b| J::String(b.to_string())),
        );
    }
    out
}

// ---------------------------------------------------------------- finalize

/// Go struct field order of a service, as `docker compose config --format json` prints it.
pub(crate) const SERVICE_ORDER: &[&str] = &[
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
    "dockerfile",
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
    "log_driver",
    "log_opt",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "mac_address",
    "models",
    "net",
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

fn is_empty_json(v: &J) -> bool {
    match v {
        J::Null => true,
        J::Bool(b) => !b,
        J::Number(n) => n.as_f64() == Some(0.0),
        J::String(s) => s.is_empty(),
        J::Array(a) => a.is_empty(),
        J::Object(o) => o.is_empty(),
    }
}

/// Applies profiles, defaults, env files and naming; validates references; returns the document.
pub(crate) fn finalize(
    model: Node,
    name: &str,
    profiles: &[String],
    dir: &Path,
    env: &Env,
    ctx: &mut Ctx<'_>,
) -> Option<J> {
    let mut doc = model;
    crate::merge::strip_tags(&mut doc);
    let services_node = doc
        .get("services")
        .cloned()
        .unwrap_or_else(|| Node::new(Value::Map(Map::new())));
    let all: Map = services_node.as_map().cloned().unwrap_or_default();
    // Profiles: a service is enabled when it has no profiles, or one of them is active ("*" = all).
    let active = |svc: &Node| -> bool {
        let ps = svc
            .get("profiles")
            .map(crate::loader::strings)
            .unwrap_or_default();
        ps.is_empty() || profiles.iter().any(|p| p == "*" || ps.contains(p))
    };
    let mut enabled: Vec<String> = all
        .iter()
        .filter(|(_, (_, s))| active(s))
        .map(|(k, _)| k.clone())
        .collect();
    // Services needed by enabled services are enabled too (when required).
    let mut i = 0;
    while i < enabled.len() {
        let n = enabled[i].clone();
        if let Some((_, s)) = all.get(&n)
            && let Some(Value::Map(deps)) = s.get("depends_on").map(|d| &d.value)
        {
            for (d, (dp, dv)) in deps {
                if !enabled.contains(d) {
                    if all.contains_key(d) {
                        {
                            // Compose enables a dependency only if it is not profile-gated away.
                            if active(&all[d].1) {
                                enabled.push(d.clone());
                            } else if !matches!(
                                dv.get("required").map(|r| &r.value),
                                Some(Value::Bool(false))
                            ) {
                                ctx.error(*dp, format!("service {n:?} depends on undefined service {d:?}: invalid compose project"), Some("enable the profile of that service or remove the dependency"));
                            }
                        }
                    } else {
                        // Undefined is an error even for `required: false` (only disabled is fine).
                        let _ = dv;
                        ctx.error(*dp, format!("service {n:?} depends on undefined service {d:?}: invalid compose project"), Some("define that service or remove it from depends_on"));
                    }
                }
            }
        }
        i += 1;
    }
    let mut services = JMap::new();
    let mut env_files = JMap::new();
    let mut uses_default = false;
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    for sname in names {
        if !enabled.contains(sname) {
            continue;
        }
        let (spos, svc) = &all[sname];
        let j = svc.to_json();
        let J::Object(mut o) = j else {
            ctx.error(
                *spos,
                format!("services.{sname} must be a mapping"),
                Some("give the service a mapping of options"),
            );
            continue;
        };
        implicit_dependencies(&mut o);
        if o.get("gpus").and_then(J::as_str) == Some("all") {
            o.insert("gpus".into(), json!([{"count": -1}]));
        }
        if let Some(models) = o.get("models") {
            let names: Vec<String> = match models {
                J::Array(a) => a.iter().filter_map(J::as_str).map(String::from).collect(),
                J::Object(m) => m.keys().cloned().collect(),
                _ => vec![],
            };
            let defined = top_models(&doc);
            for m in names {
                if !defined.contains(&m) {
                    ctx.error(svc.get("models").map_or(*spos, |n| n.pos), format!("service {sname:?} refers to undefined model {m}: invalid compose project"), Some("define it under the top-level `models:`"));
                }
            }
        }
        if let Some(J::Array(files)) = o.remove("label_file") {
            let mut labels = JMap::new();
            for f in files.iter().filter_map(J::as_str) {
                match ctx.fs.read(Path::new(f)) {
                    Ok(src) => match crate::dotenv::parse_dotenv(&src, &|_| None) {
                        Ok(vars) => {
                            for (k, v) in vars {
                                labels.insert(k, J::String(v));
                            }
                        }
                        Err(e) => {
                            let id = ctx.file_id(Path::new(f));
                            ctx.error(
                                Pos {
                                    file: id,
                                    line: e.line as u32,
                                    col: 1,
                                },
                                e.message,
                                Some("fix the label file syntax"),
                            );
                        }
                    },
                    Err(_) => ctx.error(
                        svc.get("label_file").map_or(*spos, |n| n.pos),
                        format!("label file {f} not found"),
                        Some("create the file or fix the path"),
                    ),
                }
            }
            if let Some(J::Object(l)) = o.get("labels") {
                for (k, v) in l {
                    labels.insert(k.clone(), v.clone());
                }
            }
            if !labels.is_empty() {
                labels.sort_keys();
                o.insert("labels".into(), J::Object(labels));
            }
        }
        if o.get("image").is_none_or(is_empty_json) && o.get("build").is_none_or(J::is_null) {
            ctx.error(*spos, format!("service {sname:?} has neither an image nor a build context specified: invalid compose project"), Some("add `image:` or `build:`"));
        }
        if let (Some(J::String(pf)), Some(J::Array(bp))) = (
            o.get("platform"),
            o.get("build").and_then(|b| b.get("platforms")),
        ) && !bp.is_empty()
            && !bp.iter().any(|x| x.as_str() == Some(pf))
        {
            ctx.error(svc.get("platform").map_or(*spos, |n| n.pos), format!("service.build.platforms MUST include service.platform {pf:?}: invalid compose project"), Some("add the platform to build.platforms"));
        }
        if let Some(J::Object(d)) = o.get_mut("deploy") {
            d.entry("resources").or_insert_with(|| json!({}));
            d.entry("placement").or_insert_with(|| json!({}));
        }
        if let Some(J::Object(b)) = o.get_mut("build") {
            if let Some(J::Object(args)) = b.get_mut("args") {
                let keys: Vec<String> = args.keys().cloned().collect();
                for k in keys {
                    if args[&k].is_null() {
                        match env.get(&k) {
                            Some(v) => {
                                args.insert(k, J::String(v.clone()));
                            }
                            None => {
                                args.remove(&k);
                            }
                        }
                    }
                }
            }
            if !b.contains_key("dockerfile") && !b.contains_key("dockerfile_inline") {
                b.insert("dockerfile".into(), json!("Dockerfile"));
            }
            b.retain(|_, v| !is_empty_json(v));
        }
        // environment: env_file first, then environment; bare keys resolved from env.
        let mut envmap: JMap<String, J> = JMap::new();
        if let Some(J::Array(files)) = o.get("env_file") {
            for f in files {
                let path = f
                    .get("path")
                    .and_then(J::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let required = f.get("required").and_then(J::as_bool).unwrap_or(true);
                let raw = f.get("format").and_then(J::as_str) == Some("raw");
                match ctx.fs.read(Path::new(&path)) {
                    Ok(src) if raw => {
                        for line in src.lines() {
                            let t = line.trim_start();
                            if t.is_empty() || t.starts_with('#') {
                                continue;
                            }
                            match t.split_once('=') {
                                Some((k, v)) => {
                                    envmap.insert(
                                        k.trim().to_owned(),
                                        J::String(v.trim_end_matches('\r').to_owned()),
                                    );
                                }
                                None => {
                                    if let Some(v) = env.get(t.trim()) {
                                        envmap.insert(t.trim().to_owned(), J::String(v.clone()));
                                    }
                                }
                            }
                        }
                    }
                    Ok(src) => {
                        let lookup = |k: &str| env.get(k).cloned();
                        for (k, v) in ctx.parse_env_file(Path::new(&path), &src, &lookup) {
                            envmap.insert(k, J::String(v));
                        }
                    }
                    Err(_) if !required => {}
                    Err(_) => {
                        let p = svc.get("env_file").map_or(*spos, |n| n.pos);
                        ctx.error(
                            p,
                            format!("env file {path} not found"),
                            Some("create the file, or mark it `required: false`"),
                        );
                    }
                }
            }
        }
        if let Some(J::Object(e)) = o.get("environment") {
            for (k, v) in e {
                let v = match v {
                    J::Null => env.get(k).map_or(J::Null, |x| J::String(x.clone())),
                    other => other.clone(),
                };
                envmap.insert(k.clone(), v);
            }
        }
        if !envmap.is_empty() {
            envmap.sort_keys();
            o.insert("environment".into(), J::Object(envmap));
        }
        // networks
        if o.get("network_mode").is_some_and(|v| !is_empty_json(v))
            && o.get("networks").is_some_and(|v| !is_empty_json(v))
        {
            ctx.error(
                svc.get("network_mode").map_or(*spos, |n| n.pos),
                format!("service {sname} declares mutually exclusive `network_mode` and `networks`: invalid compose project"),
                Some("keep one of the two"),
            );
        }
        let has_mode =
            o.get("network_mode").is_some_and(|v| !is_empty_json(v)) || o.contains_key("provider");
        if !has_mode && !o.contains_key("networks") {
            o.insert("networks".into(), json!({"default": null}));
        }
        if let Some(J::Object(n)) = o.get("networks")
            && n.contains_key("default")
        {
            uses_default = true;
        }
        for k in ["command", "entrypoint"] {
            if !o.contains_key(k) {
                o.insert(k.into(), J::Null);
            }
        }
        let mut side = JMap::new();
        if let Some(ef) = o.remove("env_file") {
            side.insert("env_file".into(), ef);
        }
        if let Some(x) = o.get("x-davit") {
            side.insert("x-davit".into(), x.clone());
        }
        if !side.is_empty() {
            env_files.insert(sname.clone(), J::Object(side));
        }
        let mut tpath = Vec::new();
        fix_types(&mut tpath, &mut o, ctx, svc, sname);
        consistency(sname, &o, svc, *spos, ctx);
        // x-* extensions kept; omit empty values like Go's omitempty.
        let mut out = JMap::new();
        for k in SERVICE_ORDER {
            if let Some(v) = o.remove(*k) {
                let pointer = matches!(
                    *k,
                    "attach"
                        | "init"
                        | "scale"
                        | "build"
                        | "develop"
                        | "blkio_config"
                        | "credential_spec"
                        | "deploy"
                        | "healthcheck"
                        | "logging"
                        | "provider"
                        | "stop_grace_period"
                ) && !v.is_null();
                if *k == "command"
                    || *k == "entrypoint"
                    || pointer
                    || !is_empty_json(&v)
                    || matches!(*k, "networks")
                {
                    out.insert((*k).to_owned(), v);
                }
            }
        }
        services.insert(sname.clone(), J::Object(out));
    }
    // Implicit dependencies (links, volumes_from, service: namespaces) on undefined services.
    for (sname, s) in &services {
        let explicit: Vec<String> = all
            .get(sname)
            .and_then(|(_, n)| n.get("depends_on"))
            .and_then(Node::as_map)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(J::Object(deps)) = s.get("depends_on") {
            for d in deps.keys() {
                if !all.contains_key(d) && !explicit.contains(d) {
                    let p = all.get(sname).map(|(p, _)| *p).unwrap_or_default();
                    ctx.error(p, format!("service {sname:?} depends on undefined service {d:?}: invalid compose project"), Some("define that service, or fix links/volumes_from/network_mode"));
                }
            }
        }
    }
    // cycles
    check_cycles(&services, &all, ctx);

    let mut root = JMap::new();
    root.insert("name".into(), json!(name));
    let top = doc.as_map().cloned().unwrap_or_default();
    // networks
    let used = used_resources(&services);
    for (kind, res) in &used {
        let declared = top
            .get(*kind)
            .and_then(|(_, n)| n.as_map())
            .is_some_and(|m| m.contains_key(res));
        if !(declared || *kind == "networks" && res == "default") {
            let singular = kind.trim_end_matches('s');
            let who = services
                .iter()
                .find(|(_, s)| service_refers(s, kind, res))
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let p = all.get(&who).map(|(p, _)| *p).unwrap_or_default();
            ctx.error(
                p,
                format!(
                    "service {who:?} refers to undefined {singular} {res}: invalid compose project"
                ),
                Some(&format!("declare it under the top-level `{kind}:`")),
            );
        }
    }
    let mut networks = JMap::new();
    if let Some((_, n)) = top.get("networks")
        && let J::Object(nm) = n.to_json()
    {
        for (k, v) in nm {
            if used.contains(&("networks", k.clone())) {
                networks.insert(k.clone(), resource(name, &k, v, true));
            }
        }
    }
    if uses_default && !networks.contains_key("default") {
        networks.insert(
            "default".into(),
            json!({"name": format!("{name}_default"), "ipam": {}}),
        );
    }
    if !networks.is_empty() {
        root.insert("networks".into(), J::Object(sorted(networks)));
    }
    root.insert("services".into(), J::Object(services));
    for section in ["volumes", "secrets", "configs"] {
        if let Some((_, n)) = top.get(section)
            && let J::Object(nm) = n.to_json()
        {
            let mut m = JMap::new();
            for (k, v) in nm {
                if used.contains(&(section, k.clone())) {
                    m.insert(k.clone(), resource(name, &k, v, false));
                }
            }
            if !m.is_empty() {
                root.insert(section.into(), J::Object(sorted(m)));
            }
        }
    }
    let mut xs: Vec<(String, J)> = top
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, (_, v))| (k.clone(), v.to_json()))
        .collect();
    xs.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in xs {
        root.insert(k, v);
    }
    let _ = dir;
    if !env_files.is_empty() {
        root.insert(ENV_FILES_KEY.into(), J::Object(env_files));
    }
    // Compose prints the top level as a map: keys in alphabetical order.
    Some(J::Object(sorted(root)))
}

fn sorted(m: JMap<String, J>) -> JMap<String, J> {
    let mut v: Vec<(String, J)> = m.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().collect()
}

/// Go's JSON forms of typed fields: durations, byte sizes, floats, file modes; drops `x-*`.
fn node_pos(svc: &Node, path: &[String]) -> Pos {
    let mut cur = svc;
    for seg in path {
        let next = match &cur.value {
            Value::Map(m) => m.get(seg).map(|(_, n)| n),
            Value::Seq(v) => seg.parse::<usize>().ok().and_then(|i| v.get(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur.pos
}

fn fix_types(
    path: &mut Vec<String>,
    o: &mut JMap<String, J>,
    ctx: &mut Ctx<'_>,
    svc: &Node,
    sname: &str,
) {
    o.retain(|k, _| !k.starts_with("x-"));
    let keys: Vec<String> = o.keys().cloned().collect();
    for k in keys {
        path.push(k.clone());
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let kind = type_of(&p);
        if let Some(v) = o.get_mut(&k) {
            match kind {
                Some(Typed::Duration) => match json_scalar(v).map(|x| parse_duration(&x)) {
                    Some(Some(ns)) => *v = J::String(go_duration(ns)),
                    Some(None) => ctx.error(
                        node_pos(svc, path),
                        format!("services.{sname}.{}: invalid duration {v}", path.join(".")),
                        Some("use a duration like 10s, 1m30s or 500ms"),
                    ),
                    None => {}
                },
                Some(Typed::Bytes) => match json_scalar(v).map(|x| parse_bytes(&x)) {
                    Some(Some(b)) => *v = J::String(b.to_string()),
                    Some(None) => ctx.error(
                        node_pos(svc, path),
                        format!("services.{sname}.{}: invalid size {v}", path.join(".")),
                        Some("use a size like 512m or 1g"),
                    ),
                    None => {}
                },
                Some(Typed::Float) => {
                    if let Some(f) = json_scalar(v).and_then(|x| x.parse::<f64>().ok()) {
                        *v = go_json_float(f);
                    }
                }
                Some(Typed::Blkio) => {
                    if let J::Object(m) = v {
                        *m = blkio_go_fields(m);
                    }
                }
                Some(Typed::Mode) => {
                    if let Some(m) = v.as_i64() {
                        *v = J::String(format!("0{m:o}"));
                    } else if let Some(m) = v
                        .as_str()
                        .and_then(|x| i64::from_str_radix(x.trim_start_matches("0o"), 8).ok())
                    {
                        *v = J::String(format!("0{m:o}"));
                    }
                }
                Some(Typed::Count) => {
                    if v.as_str() == Some("all") {
                        *v = json!(-1);
                    } else if let Some(n) = v.as_str().and_then(|x| x.parse::<i64>().ok()) {
                        *v = json!(n);
                    }
                }
                Some(Typed::Command) => {
                    if let Some(x) = v.as_str() {
                        *v = J::Array(
                            shell_split(x)
                                .unwrap_or_else(|| vec![x.to_owned()])
                                .into_iter()
                                .map(J::String)
                                .collect(),
                        );
                    }
                }
                Some(Typed::DropFalse) if *v == J::Bool(false) => {
                    o.remove(&k);
                    path.pop();
                    continue;
                }
                Some(Typed::DropEmpty) if v.as_array().is_some_and(Vec::is_empty) => {
                    o.remove(&k);
                    path.pop();
                    continue;
                }
                Some(Typed::DropFalse | Typed::DropEmpty) | None => {}
                Some(Typed::Strings) => {
                    if let J::Object(m) = v {
                        for x in m.values_mut() {
                            if let Some(sv) = json_scalar(x) {
                                *x = J::String(sv);
                            }
                        }
                    }
                }
                Some(Typed::StrMap) => {
                    if let J::Array(items) = v {
                        let mut m = JMap::new();
                        for it in items.iter().filter_map(J::as_str) {
                            let (a, b) = it.split_once('=').unwrap_or((it, ""));
                            m.insert(a.to_owned(), J::String(b.to_owned()));
                        }
                        *v = J::Object(m);
                    }
                }
            }
            match v {
                J::Object(m) => fix_types(path, m, ctx, svc, sname),
                J::Array(items) => {
                    for (i, it) in items.iter_mut().enumerate() {
                        path.push(i.to_string());
                        let ip: Vec<&str> = path.iter().map(String::as_str).collect();
                        if matches!(type_of(&ip), Some(Typed::Blkio)) {
                            if let J::Object(m) = it {
                                *m = blkio_go_fields(m);
                            }
                        } else if let J::Object(m) = it {
                            fix_types(path, m, ctx, svc, sname);
                        }
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        path.pop();
    }
}

enum Typed {
    Duration,
    Bytes,
    Float,
    Mode,
    StrMap,
    DropFalse,
    Strings,
    Count,
    Command,
    DropEmpty,
    Blkio,
}

/// A float as Go's encoder writes it: whole numbers without a fraction.
fn go_json_float(f: f64) -> J {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        json!(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
    }
}

fn type_of(p: &[&str]) -> Option<Typed> {
    Some(match p {
        [
            "healthcheck",
            "interval" | "timeout" | "start_period" | "start_interval",
        ]
        | ["stop_grace_period"]
        | [
            "deploy",
            "update_config" | "rollback_config",
            "delay" | "monitor",
        ]
        | ["deploy", "restart_policy", "delay" | "window"] => Typed::Duration,
        ["mem_limit" | "mem_reservation" | "memswap_limit" | "shm_size" | "mem_swappiness"]
        | ["deploy", "resources", "limits" | "reservations", "memory"]
        | ["volumes", _, "tmpfs", "size"]
        | ["build", "shm_size"] => Typed::Bytes,
        ["cpus" | "cpu_percent"] | ["deploy", "resources", "limits" | "reservations", "cpus"] => {
            Typed::Float
        }
        ["configs" | "secrets", _, "mode"] | ["build", "secrets", _, "mode"] => Typed::Mode,
        ["deploy", "labels"] => Typed::StrMap,
        ["healthcheck", "test"] => Typed::DropEmpty,
        [
            "blkio_config",
            "weight_device" | "device_read_bps" | "device_write_bps" | "device_read_iops"
            | "device_write_iops",
            _,
        ] => Typed::Blkio,
        ["deploy", "resources", "reservations", "devices", _, "count"] | ["gpus", _, "count"] => {
            Typed::Count
        }
        ["post_start" | "pre_stop", _, "command"] => Typed::Command,
        ["healthcheck", "disable"]
        | ["volumes", _, "read_only"]
        | ["volumes", _, "bind", "create_host_path"]
        | ["volumes", _, "volume", "nocopy"]
        | ["depends_on", _, "restart"]
        | ["build", "privileged" | "no_cache" | "pull"] => Typed::DropFalse,
        ["logging", "options"] | ["log_opt" | "storage_opt"] => Typed::Strings,
        _ => return None,
    })
}

fn json_scalar(v: &J) -> Option<String> {
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a byte size as Docker does (`RAMInBytes`: 1024-based `b`, `k`, `m`, `g`, `t`, `p`).
pub(crate) fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let lower = s.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let num: f64 = lower[..num_end].parse().ok()?;
    let unit = lower[num_end..].trim();
    let mul: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    Some((num * mul) as i64)
}

fn top_models(doc: &Node) -> Vec<String> {
    doc.get("models")
        .and_then(Node::as_map)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn num(v: Option<&J>) -> Option<f64> {
    match v? {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Cross-field rules Compose enforces on a service.
fn consistency(name: &str, o: &JMap<String, J>, svc: &Node, spos: Pos, ctx: &mut Ctx<'_>) {
    let at = |k: &str| svc.get(k).map_or(spos, |n| n.pos);
    let limits = o
        .get("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("limits"));
    let pairs = [
        ("cpus", "cpus"),
        ("mem_limit", "memory"),
        ("pids_limit", "pids"),
    ];
    for (field, limit) in pairs {
        let a = num(o.get(field)).filter(|x| *x != 0.0);
        let b = num(limits.and_then(|l| l.get(limit))).filter(|x| *x != 0.0);
        if let (Some(a), Some(b)) = (a, b)
            && (a - b).abs() > f64::EPSILON
        {
            ctx.error(at(field), format!("services.{name}: can't set distinct values on '{field}' and 'deploy.resources.limits.{limit}': invalid compose project"), Some("set only one of the two"));
        }
    }
    let scale = num(o.get("scale"));
    let replicas = num(o.get("deploy").and_then(|d| d.get("replicas")));
    if let (Some(a), Some(b)) = (scale, replicas)
        && (a - b).abs() > f64::EPSILON
    {
        ctx.error(at("scale"), format!("services.{name}: can't set distinct values on 'scale' and 'deploy.replicas': invalid compose project"), Some("set only one of the two"));
    }
    if o.get("container_name").is_some_and(|c| !is_empty_json(c))
        && scale.or(replicas).is_some_and(|n| n > 1.0)
    {
        ctx.error(at("container_name"), format!("services.{name}: can't set container_name and scale/replicas > 1, as container names must be unique: invalid compose project"), Some("drop container_name or run one replica"));
    }
}

/// Internal key carrying each service's `env_file` list to the typed model (not printed).
pub(crate) const ENV_FILES_KEY: &str = "\u{0}env_files";

fn service_refers(s: &J, kind: &str, res: &str) -> bool {
    let mut one = JMap::new();
    one.insert("x".into(), s.clone());
    used_resources(&one).contains(&(kind_static(kind), res.to_owned()))
}

fn kind_static(kind: &str) -> &'static str {
    match kind {
        "networks" => "networks",
        "volumes" => "volumes",
        "secrets" => "secrets",
        _ => "configs",
    }
}

fn used_resources(services: &JMap<String, J>) -> std::collections::HashSet<(&'static str, String)> {
    let mut used = std::collections::HashSet::new();
    for s in services.values() {
        if let Some(J::Object(n)) = s.get("networks") {
            for k in n.keys() {
                used.insert(("networks", k.clone()));
            }
        }
        if let Some(J::Array(v)) = s.get("volumes") {
            for m in v {
                if m.get("type").and_then(J::as_str) == Some("volume")
                    && let Some(src) = m.get("source").and_then(J::as_str)
                {
                    used.insert(("volumes", src.to_owned()));
                }
            }
        }
        for (sec, list) in [
            ("secrets", s.get("secrets")),
            ("configs", s.get("configs")),
            ("secrets", s.get("build").and_then(|b| b.get("secrets"))),
        ] {
            if let Some(J::Array(v)) = list {
                for m in v {
                    let src = m.get("source").and_then(J::as_str).or_else(|| m.as_str());
                    if let Some(src) = src {
                        used.insert((sec, src.to_owned()));
                    }
                }
            }
        }
    }
    used
}

fn implicit_dependencies(o: &mut JMap<String, J>) {
    let mut add: Vec<(String, bool)> = Vec::new();
    if let Some(J::Array(links)) = o.get("links") {
        for l in links.iter().filter_map(J::as_str) {
            add.push((l.split(':').next().unwrap_or(l).to_owned(), true));
        }
    }
    for k in ["network_mode", "ipc", "pid", "uts", "cgroup"] {
        if let Some(x) = o
            .get(k)
            .and_then(J::as_str)
            .and_then(|x| x.strip_prefix("service:"))
        {
            add.push((x.to_owned(), true));
        }
    }
    if let Some(J::Array(vf)) = o.get("volumes_from") {
        for v in vf.iter().filter_map(J::as_str) {
            if !v.starts_with("container:") {
                add.push((v.split(':').next().unwrap_or(v).to_owned(), false));
            }
        }
    }
    if add.is_empty() {
        return;
    }
    let deps = o.entry("depends_on").or_insert_with(|| json!({}));
    if let J::Object(d) = deps {
        for (n, restart) in add {
            if !d.contains_key(&n) {
                let v = if restart {
                    json!({"condition": "service_started", "restart": true, "required": true})
                } else {
                    json!({"condition": "service_started", "required": true})
                };
                d.insert(n, v);
            }
        }
    }
}

fn resource(project: &str, key: &str, v: J, ipam: bool) -> J {
    let mut o = match v {
        J::Object(o) => o,
        _ => JMap::new(),
    };
    o.retain(|k, _| !k.starts_with("x-"));
    let external = o.get("external").and_then(J::as_bool).unwrap_or(false);
    if !o.contains_key("name") {
        let n = if external {
            key.to_owned()
        } else {
            format!("{project}_{key}")
        };
        o.insert("name".into(), json!(n));
    }
    let mut out = JMap::new();
    if let Some(n) = o.remove("name") {
        out.insert("name".into(), n);
    }
    if ipam && !o.contains_key("ipam") {
        o.insert("ipam".into(), json!({}));
    }
    for (k, v) in o {
        if !is_empty_json(&v)
            || k == "ipam"
            || (matches!(k.as_str(), "enable_ipv6" | "enable_ipv4") && v.is_boolean())
        {
            out.insert(k, v);
        }
    }
    J::Object(out)
}

fn check_cycles(services: &JMap<String, J>, all: &Map, ctx: &mut Ctx<'_>) {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        New,
        Visiting,
        Done,
    }
    let names: Vec<&String> = services.keys().collect();
    let mut st: std::collections::HashMap<&str, St> =
        names.iter().map(|n| (n.as_str(), St::New)).collect();
    fn deps(services: &JMap<String, J>, n: &str) -> Vec<String> {
        let mut d: Vec<String> = services
            .get(n)
            .and_then(|s| s.get("depends_on"))
            .and_then(J::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        d.sort();
        d
    }
    for start in &names {
        if st[start.as_str()] != St::New {
            continue;
        }
        let mut stack: Vec<(String, Vec<String>, usize)> =
            vec![((*start).clone(), deps(services, start), 0)];
        st.insert(start.as_str(), St::Visiting);
        while let Some(top) = stack.last_mut() {
            if top.2 >= top.1.len() {
                let n = top.0.clone();
                stack.pop();
                if let Some(k) = names.iter().find(|x| **x == &n) {
                    st.insert(k.as_str(), St::Done);
                }
                continue;
            }
            let d = top.1[top.2].clone();
            top.2 += 1;
            let Some(k) = names.iter().find(|x| ***x == d) else {
                continue;
            };
            match st[k.as_str()] {
                St::Visiting => {
                    let idx = stack.iter().position(|f| f.0 == d).unwrap_or(0);
                    let mut cyc: Vec<String> = stack[idx..].iter().map(|f| f.0.clone()).collect();
                    cyc.push(d.clone());
                    let from = stack.last().map(|f| f.0.clone()).unwrap_or_default();
                    let pos = all
                        .get(&from)
                        .and_then(|(_, s)| s.get("depends_on"))
                        .and_then(|dn| dn.as_map().and_then(|m| m.get(&d)).map(|(p, _)| *p))
                        .unwrap_or_default();
                    ctx.error(
                        pos,
                        format!("dependency cycle detected: {}", cyc.join(" -> ")),
                        Some("remove one of the depends_on entries in the cycle"),
                    );
                    return;
                }
                St::New => {
                    st.insert(k.as_str(), St::Visiting);
                    let dd = deps(services, &d);
                    stack.push((d, dd, 0));
                }
                St::Done => {}
            }
        }
    }
}

#[allow(dead_code)]
fn unused(_: Node) -> Node {
    s(Value::Null)
}

#[allow(dead_code)]
fn unused2(f: f64) -> String {
    go_float(f)
}

// ---------------------------------------------------------------- --no-interpolate

/// The few canonical forms Compose applies to uninterpolated files: long volume and depends_on
/// syntax, list networks as a map. Everything else stays as written.
pub(crate) fn canonical_raw(node: &mut Node) {
    let Some(services) = node
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(|(_, s)| s.as_map_mut())
    else {
        return;
    };
    for (_, (_, svc)) in services.iter_mut() {
        if matches!(svc.value, Value::Null) {
            svc.value = Value::Map(Map::new());
        }
        let Some(m) = svc.as_map_mut() else { continue };
        if let Some((_, vols)) = m.get_mut("volumes")
            && let Value::Seq(items) = &mut vols.value
        {
            for it in items.iter_mut() {
                if let Some(spec) = it.as_str().map(String::from)
                    && let Ok(v) = parse_volume_raw(&spec)
                {
                    *it = Node::from_json(&v, it.pos);
                }
            }
        }
        if let Some((_, deps)) = m.get_mut("depends_on") {
            let mut out = Map::new();
            match &deps.value {
                Value::Seq(items) => {
                    for it in items {
                        if let Some(n) = it.as_str() {
                            let d = json!({"condition": "service_started", "required": true});
                            out.insert(n.to_owned(), (it.pos, Node::from_json(&d, it.pos)));
                        }
                    }
                }
                Value::Map(dm) => {
                    for (k, (kp, v)) in dm {
                        let mut d = v.as_map().cloned().unwrap_or_default();
                        d.entry("condition".into())
                            .or_insert_with(|| (v.pos, str_node("service_started", v.pos)));
                        d.entry("required".into())
                            .or_insert_with(|| (v.pos, Node::at(Value::Bool(true), v.pos)));
                        out.insert(k.clone(), (*kp, map_node(d, v.pos)));
                    }
                }
                _ => {}
            }
            deps.value = Value::Map(out);
        }
        if let Some((_, nets)) = m.get_mut("networks")
            && let Value::Seq(items) = &nets.value
        {
            let mut out = Map::new();
            for it in items {
                if let Some(n) = it.as_str() {
                    out.insert(n.to_owned(), (it.pos, Node::at(Value::Null, it.pos)));
                }
            }
            nets.value = Value::Map(out);
        }
    }
}

fn parse_volume_raw(spec: &str) -> Result<J, String> {
    // Colons inside `${...}` are not separators: hide them while parsing.
    let mut hidden = String::with_capacity(spec.len());
    let mut depth = 0usize;
    let mut prev = ' ';
    for c in spec.chars() {
        if c == '{' && prev == '$' {
            depth += 1;
        } else if c == '}' && depth > 0 {
            depth -= 1;
        }
        hidden.push(if c == ':' && depth > 0 { '\u{1}' } else { c });
        prev = c;
    }
    let loader = crate::FsLoader;
    let ctx = Ctx {
        fs: &loader,
        files: Vec::new(),
        diags: crate::Diagnostics::default(),
        interpolate: false,
        home: None,
    };
    let mut v = parse_volume(&hidden, Path::new("/"), &ctx)?;
    let first = hidden.split(':').next().unwrap_or_default().to_owned();
    if v.get("type").and_then(J::as_str) == Some("bind") && v.get("source").is_some() {
        v["source"] = J::String(first);
    }
    restore(&mut v);
    Ok(v)
}

fn restore(v: &mut J) {
    match v {
        J::String(s) => *s = s.replace('\u{1}', ":"),
        J::Object(o) => o.values_mut().for_each(restore),
        J::Array(a) => a.iter_mut().for_each(restore),
        _ => {}
    }
}

fn sort_deep(v: J) -> J {
    match v {
        J::Object(o) => {
            let mut items: Vec<(String, J)> =
                o.into_iter().map(|(k, v)| (k, sort_deep(v))).collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(items.into_iter().collect())
        }
        J::Array(a) => J::Array(a.into_iter().map(sort_deep).collect()),
        other => other,
    }
}

/// The document `docker compose config --no-interpolate` prints: merged, profiles applied, default
/// network added, values as written, keys sorted.
pub(crate) fn finalize_raw(model: Node, name: &str, profiles: &[String]) -> J {
    let mut doc = model;
    crate::merge::strip_tags(&mut doc);
    let J::Object(mut root) = doc.to_json() else {
        return json!({"name": name});
    };
    root.remove("version");
    root.insert("name".into(), json!(name));
    let mut uses_default = false;
    if let Some(J::Object(services)) = root.get_mut("services") {
        services.retain(|_, s| {
            let ps: Vec<String> = s
                .get("profiles")
                .and_then(J::as_array)
                .map(|a| a.iter().filter_map(J::as_str).map(String::from).collect())
                .unwrap_or_default();
            ps.is_empty() || profiles.iter().any(|p| p == "*" || ps.contains(p))
        });
        for s in services.values_mut() {
            if let J::Object(o) = s {
                let has_mode = o.get("network_mode").is_some_and(|v| !is_empty_json(v));
                if !has_mode && !o.contains_key("networks") {
                    o.insert("networks".into(), json!({"default": null}));
                }
                if o.get("networks")
                    .and_then(J::as_object)
                    .is_some_and(|n| n.contains_key("default"))
                {
                    uses_default = true;
                }
            }
        }
    }
    let nets = root.entry("networks").or_insert_with(|| json!({}));
    if let J::Object(n) = nets {
        if uses_default && !n.contains_key("default") {
            n.insert("default".into(), json!({"name": format!("{name}_default")}));
        }
        if n.is_empty() {
            root.remove("networks");
        }
    }
    sort_deep(J::Object(root))
}
