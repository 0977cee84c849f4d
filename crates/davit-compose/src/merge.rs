//! Merging files (`-f a -f b`), `extends` and `include`, per the Compose merge rules, on canonical
//! trees (short syntax already expanded by `normalize::canonical_file`).

use std::path::{Path, PathBuf};

use crate::loader::{Ctx, Env, absolutize, load_file};
use crate::yaml::{Map, Node, Pos, Tag, Value};

/// Merges `over` into `base` (both whole compose documents).
pub(crate) fn merge_into(base: &mut Node, over: Node, ctx: &mut Ctx<'_>) {
    let _ = ctx;
    merge_at(base, over, &[]);
}

fn is_replace(path: &[&str]) -> bool {
    matches!(
        path,
        ["services", _, "command" | "entrypoint"]
            | ["services", _, "healthcheck", "test"]
            | ["services", _, "ulimits", _]
            | ["services", _, "build", "dockerfile_inline"]
            | ["name"]
    )
}

/// The identity of a sequence item for paths whose items are unique; `None` = plain append.
fn seq_key(path: &[&str], item: &Node) -> Option<String> {
    let field = match path {
        ["services", _, f] => *f,
        [
            "services",
            _,
            "build",
            "tags" | "platforms" | "cache_from" | "cache_to" | "secrets",
        ]
        | ["services", _, "networks", _, "aliases" | "link_local_ips"] => {
            return Some(format!("{:?}", item.to_json()));
        }
        _ => return None,
    };
    let s = |k: &str| {
        item.get(k)
            .and_then(crate::loader::scalar_string)
            .unwrap_or_default()
    };
    match field {
        "ports" => Some(format!(
            "{}:{}:{}/{}:{}",
            s("host_ip"),
            s("published"),
            s("target"),
            s("protocol"),
            s("mode")
        )),
        "volumes" => Some(s("target")),
        "secrets" | "configs" => {
            let t = s("target");
            Some(if t.is_empty() { s("source") } else { t })
        }
        "env_file" | "label_file" => Some(s("path")),
        "devices" => Some(s("target")),
        "expose"
        | "extra_hosts"
        | "dns"
        | "dns_opt"
        | "dns_search"
        | "cap_add"
        | "cap_drop"
        | "links"
        | "profiles"
        | "tmpfs"
        | "external_links"
        | "security_opt"
        | "group_add"
        | "device_cgroup_rules"
        | "volumes_from" => Some(format!("{:?}", item.to_json())),
        _ => None,
    }
}

/// Removes duplicates from a sequence whose items are unique by key: a later item replaces the
/// earlier one in place (Compose's `EnforceUnicity`).
pub(crate) fn dedupe(path: &[&str], items: &mut Vec<Node>) {
    let mut out: Vec<Node> = Vec::with_capacity(items.len());
    let mut keys: Vec<Option<String>> = Vec::with_capacity(items.len());
    for it in items.drain(..) {
        let key = seq_key(path, &it);
        match key
            .as_ref()
            .and_then(|k| keys.iter().position(|x| x.as_ref() == Some(k)))
        {
            Some(i) => out[i] = it,
            None => {
                keys.push(key);
                out.push(it);
            }
        }
    }
    *items = out;
}

fn merge_at(base: &mut Node, over: Node, path: &[&str]) {
    if over.tag == Some(Tag::Override) || is_replace(path) {
        let mut o = over;
        o.tag = None;
        *base = o;
        return;
    }
    // `logging`: a different driver replaces the whole section.
    if let ["services", _, "logging"] = path {
        let bd = base.get("driver").and_then(Node::as_str).map(String::from);
        let od = over.get("driver").and_then(Node::as_str).map(String::from);
        if bd.is_some() && od.is_some() && bd != od {
            *base = over;
            return;
        }
    }
    match (&mut base.value, over.value) {
        (Value::Map(bm), Value::Map(om)) => {
            for (k, (kp, v)) in om {
                if v.tag == Some(Tag::Reset) {
                    bm.shift_remove(&k);
                    continue;
                }
                let mut sub: Vec<&str> = path.to_vec();
                sub.push(&k);
                match bm.get_mut(&k) {
                    Some((_, b)) => {
                        // networks: a null override keeps the base definition.
                        if matches!(v.value, Value::Null)
                            && matches!(path, ["services", _, "networks"])
                        {
                            continue;
                        }
                        merge_at(b, v, &sub);
                    }
                    None => {
                        let mut v = v;
                        strip_tags(&mut v);
                        bm.insert(k, (kp, v));
                    }
                }
            }
        }
        (Value::Seq(bs), Value::Seq(os)) => {
            for mut item in os {
                strip_tags(&mut item);
                match seq_key(path, &item) {
                    Some(key) => {
                        if let Some(i) = bs
                            .iter()
                            .position(|b| seq_key(path, b).as_deref() == Some(key.as_str()))
                        {
                            bs[i] = item;
                        } else {
                            bs.push(item);
                        }
                    }
                    None => bs.push(item),
                }
            }
        }
        (_, v) => {
            let mut n = Node {
                value: v,
                pos: over.pos,
                tag: None,
            };
            strip_tags(&mut n);
            *base = n;
        }
    }
}

pub(crate) fn strip_tags(n: &mut Node) {
    n.tag = None;
    match &mut n.value {
        Value::Map(m) => {
            m.retain(|_, (_, v)| v.tag != Some(Tag::Reset));
            for (_, v) in m.values_mut() {
                strip_tags(v);
            }
        }
        Value::Seq(s) => {
            s.retain(|v| v.tag != Some(Tag::Reset));
            for v in s {
                strip_tags(v);
            }
        }
        _ => {}
    }
}

/// Adds the resources of an included project; a resource defined on both sides is a conflict
/// unless both definitions are equal.
pub(crate) fn merge_include(node: &mut Node, inc: Node, ctx: &mut Ctx<'_>) {
    let Some(m) = node.as_map_mut() else { return };
    let Value::Map(im) = inc.value else { return };
    for (section, (kp, sv)) in im {
        if !matches!(
            section.as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs" | "models"
        ) {
            if section.starts_with("x-") && !m.contains_key(&section) {
                m.insert(section, (kp, sv));
            }
            continue;
        }
        let Value::Map(items) = sv.value else {
            continue;
        };
        let entry = m
            .entry(section.clone())
            .or_insert_with(|| (kp, Node::at(Value::Map(Map::new()), kp)));
        if matches!(entry.1.value, Value::Null) {
            entry.1.value = Value::Map(Map::new());
        }
        let Some(target) = entry.1.as_map_mut() else {
            continue;
        };
        for (name, (np, def)) in items {
            if let Some((_, existing)) = target.get(&name) {
                if existing.to_json() != def.to_json() {
                    ctx.error(
                        np,
                        format!("{section}.{name} conflicts with imported resource"),
                        Some("rename one of the two definitions, or drop the include"),
                    );
                }
                continue;
            }
            target.insert(name, (np, def));
        }
    }
}

/// Resolves `extends` in every service of `node` (a canonical document loaded from `file`).
pub(crate) fn apply_extends(
    ctx: &mut Ctx<'_>,
    node: &mut Node,
    file: &Path,
    project_dir: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
) {
    let Some(services) = node.get("services").and_then(Node::as_map).cloned() else {
        return;
    };
    let mut resolved = Map::new();
    for (name, (kp, _)) in &services {
        let mut chain = Vec::new();
        if let Some(s) = resolve_service(
            ctx,
            &services,
            name,
            file,
            project_dir,
            env,
            stack,
            &mut chain,
        ) {
            resolved.insert(name.clone(), (*kp, s));
        }
    }
    if let Some((_, s)) = node.as_map_mut().and_then(|m| m.get_mut("services")) {
        s.value = Value::Map(resolved);
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_service(
    ctx: &mut Ctx<'_>,
    services: &Map,
    name: &str,
    file: &Path,
    project_dir: &Path,
    env: &Env,
    stack: &mut Vec<PathBuf>,
    chain: &mut Vec<(PathBuf, String)>,
) -> Option<Node> {
    let (_, svc) = services.get(name)?;
    let mut svc = svc.clone();
    let Some(ext) = svc.as_map_mut().and_then(|m| m.shift_remove("extends")) else {
        return Some(svc);
    };
    let ext = ext.1;
    let (base_name, other_file) = match &ext.value {
        Value::Str(s) => (s.clone(), None),
        Value::Map(_) => (
            ext.get("service")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_owned(),
            ext.get("file").and_then(Node::as_str).map(String::from),
        ),
        _ => return Some(svc),
    };
    let key = (
        other_file
            .clone()
            .map_or_else(|| file.to_path_buf(), PathBuf::from),
        base_name.clone(),
    );
    if chain.contains(&key) {
        ctx.error(
            ext.pos,
            format!("circular reference with extends in service {name}"),
            Some("break the extends cycle"),
        );
        return None;
    }
    chain.push(key);
    let base = match other_file {
        None => {
            if !services.contains_key(&base_name) {
                ctx.error(
                    ext.pos,
                    format!("cannot extend service {name:?}: service {base_name:?} not found"),
                    Some("name a service defined in this file"),
                );
                return None;
            }
            resolve_service(
                ctx,
                services,
                &base_name,
                file,
                project_dir,
                env,
                stack,
                chain,
            )?
        }
        Some(f) => {
            let path = absolutize(project_dir, Path::new(&f));
            let other_dir = path
                .parent()
                .map_or_else(|| project_dir.to_path_buf(), Path::to_path_buf);
            let doc = load_file(ctx, &path, &other_dir, env, stack)?;
            let Some(s) = doc.get("services").and_then(|s| s.get(&base_name)).cloned() else {
                ctx.error(
                    ext.pos,
                    format!(
                        "cannot extend service {name:?}: service {base_name:?} not found in {f}"
                    ),
                    Some("name a service defined in that file"),
                );
                return None;
            };
            s
        }
    };
    let mut base = base;
    merge_service(&mut base, svc, ctx);
    svc = base;
    Some(svc)
}

/// Merges one service definition over another with the service-level rules.
pub(crate) fn merge_service(base: &mut Node, over: Node, ctx: &mut Ctx<'_>) {
    let mut b = Node::at(Value::Map(Map::new()), Pos::default());
    let mut o = Node::at(Value::Map(Map::new()), Pos::default());
    let mut bs = Map::new();
    bs.insert("x".into(), (Pos::default(), base.clone()));
    let mut os = Map::new();
    os.insert("x".into(), (Pos::default(), over));
    b.as_map_mut().unwrap_or(&mut Map::new()).insert(
        "services".into(),
        (Pos::default(), Node::new(Value::Map(bs))),
    );
    o.as_map_mut().unwrap_or(&mut Map::new()).insert(
        "services".into(),
        (Pos::default(), Node::new(Value::Map(os))),
    );
    merge_into(&mut b, o, ctx);
    if let Some(s) = b.get("services").and_then(|s| s.get("x")) {
        *base = s.clone();
    }
}
