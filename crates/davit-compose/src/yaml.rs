//! A positioned YAML node tree built from `saphyr-parser` events.
//!
//! Scalars are resolved as Go's YAML library resolves them when Compose decodes into untyped maps
//! (YAML 1.2 core schema plus Go's integer forms). Anchors, aliases and merge keys (`<<`) are
//! expanded here, with a budget on alias expansion against "billion laughs" documents. The tags
//! `!reset` and `!override` are kept on the node for the merge step.

use std::collections::HashMap;

use indexmap::IndexMap;
use saphyr_parser::{Event, Parser, ScalarStyle};

/// Maximum number of nodes produced by alias expansion in one document.
pub const ALIAS_BUDGET: usize = 1_000_000;

/// A position: file index (into the loader's file table), 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Index of the file in the load's file table.
    pub file: u32,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub col: u32,
}

/// A tag Compose gives meaning to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: drop the value inherited from earlier files.
    Reset,
    /// `!override`: replace, do not merge, the value inherited from earlier files.
    Override,
}

/// A node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub pos: Pos,
    /// `!reset` / `!override`, if tagged.
    pub tag: Option<Tag>,
}

/// A map with string keys in document order; each key keeps its own position.
pub type Map = IndexMap<String, (Pos, Node)>;

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A plain scalar Go's YAML library reads as a timestamp, kept in RFC 3339 form. Compose
    /// accepts it only inside `x-` extensions.
    Timestamp(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping.
    Map(Map),
}

impl Node {
    /// A node without position.
    #[must_use]
    pub fn new(value: Value) -> Self {
        Self {
            value,
            pos: Pos::default(),
            tag: None,
        }
    }

    /// A node at `pos`.
    #[must_use]
    pub fn at(value: Value, pos: Pos) -> Self {
        Self {
            value,
            pos,
            tag: None,
        }
    }

    /// The string, if this is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The map, if this is a map.
    #[must_use]
    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The map, mutably.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key`, if this is a map holding it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key)).map(|(_, n)| n)
    }

    /// Converts to JSON (positions and tags dropped).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) | Value::Timestamp(s) => J::String(s.clone()),
            Value::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, (_, v))| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts from JSON, every node at `pos`.
    #[must_use]
    pub fn from_json(j: &serde_json::Value, pos: Pos) -> Self {
        use serde_json::Value as J;
        let value = match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0)), Value::Int),
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Seq(a.iter().map(|x| Self::from_json(x, pos)).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), (pos, Self::from_json(v, pos))))
                    .collect(),
            ),
        };
        Self::at(value, pos)
    }

    /// A short name of the value's type, for messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Timestamp(_) => "timestamp",
            Value::Seq(_) => "array",
            Value::Map(_) => "mapping",
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Resolves a plain scalar as Go's YAML library does for untyped targets.
#[must_use]
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::Str(s.to_owned());
    }
    if let Some(ts) = timestamp(s) {
        return Value::Timestamp(ts);
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    if let Some(i) = parse_go_int(&plain) {
        return Value::Int(i);
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(s.to_owned())
}

/// A YAML timestamp (`2001-12-14`, `2001-12-14T21:59:43.10-05:00`), in Go's RFC 3339 form.
fn timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 8 || !digits(0..4) || b[4] != b'-' {
        return None;
    }
    let rest = &s[5..];
    let (m, rest) = rest.split_once('-')?;
    let day_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (d, tail) = rest.split_at(day_len);
    if m.is_empty()
        || m.len() > 2
        || d.is_empty()
        || d.len() > 2
        || !m.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let (mo, da): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let date = format!("{}-{mo:02}-{da:02}", &s[..4]);
    if tail.is_empty() {
        return Some(format!("{date}T00:00:00Z"));
    }
    if tail.starts_with(['T', 't', ' ']) && tail.len() > 5 && tail[1..].contains(':') {
        return Some(format!("{date}T{}", &tail[1..]));
    }
    None
}

/// `strconv.ParseInt(s, 0, 64)`: sign, then `0x`, `0o`, `0b`, leading-`0` octal or decimal.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - st
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
        tag: Option<Tag>,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Pos,
        anchor: usize,
        tag: Option<Tag>,
    },
}

/// Parses the first document of `src`. An empty stream gives `None`.
///
/// # Errors
/// A syntax error, an unknown alias, a non-scalar key, or alias expansion over budget.
pub fn parse(src: &str, file: u32) -> Result<Option<Node>, SyntaxError> {
    Ok(parse_all(src, file)?.into_iter().next())
}

/// Parses every document of `src` (Compose merges the documents of a file in order). Anchors are
/// per document.
///
/// # Errors
/// As [`parse`].
pub fn parse_all(src: &str, file: u32) -> Result<Vec<Node>, SyntaxError> {
    let mut docs_out: Vec<Node> = Vec::new();
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut budget = ALIAS_BUDGET;
    let mut docs = 0;
    let mk = |m: &saphyr_parser::Marker| Pos {
        file,
        line: m.line() as u32,
        col: m.col() as u32 + 1,
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| SyntaxError {
            pos: mk(e.marker()),
            message: e.info().to_owned(),
        })?;
        let pos = mk(&span.start);
        let done: Option<Node> = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                docs += 1;
                anchors.clear();
                None
            }
            Event::Alias(id) => {
                let n = anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    pos,
                    message: "unknown anchor".into(),
                })?;
                let size = count(&n);
                if size > budget {
                    return Err(SyntaxError {
                        pos,
                        message: "document is too large after alias expansion (possible YAML bomb)"
                            .into(),
                    });
                }
                budget -= size;
                Some(n)
            }
            Event::Scalar(v, style, anchor, tag) => {
                let t = tag.as_deref().and_then(compose_tag);
                let core = tag
                    .as_deref()
                    .filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!");
                let value = match (style, core.map(|t| t.suffix.as_str())) {
                    (_, Some("str")) => Value::Str(v.to_string()),
                    (ScalarStyle::Plain, _) => {
                        if v.is_empty() && t.is_some() {
                            Value::Null
                        } else {
                            resolve_plain(&v)
                        }
                    }
                    _ => Value::Str(v.to_string()),
                };
                let n = Node { value, pos, tag: t };
                if anchor != 0 {
                    anchors.insert(anchor, n.clone());
                }
                Some(n)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = tag.as_deref().and_then(compose_tag);
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                    tag,
                });
                None
            }
            Event::MappingStart(anchor, tag) => {
                let tag = tag.as_deref().and_then(compose_tag);
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    pos,
                    anchor,
                    tag,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    pos,
                    anchor,
                    tag,
                }) => {
                    let n = Node {
                        value: Value::Seq(items),
                        pos,
                        tag,
                    };
                    if anchor != 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    Some(n)
                }
                _ => {
                    return Err(SyntaxError {
                        pos,
                        message: "unbalanced sequence".into(),
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    pos,
                    anchor,
                    tag,
                    ..
                }) => {
                    let n = Node {
                        value: Value::Map(build_map(entries)?),
                        pos,
                        tag,
                    };
                    if anchor != 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    Some(n)
                }
                _ => {
                    return Err(SyntaxError {
                        pos,
                        message: "unbalanced mapping".into(),
                    });
                }
            },
        };
        if let Some(n) = done {
            match stack.last_mut() {
                None => docs_out.push(n),
                Some(Frame::Seq { items, .. }) => items.push(n),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
                    None => *key = Some(n),
                    Some(k) => entries.push((k, n)),
                },
            }
        }
    }
    let _ = docs;
    Ok(docs_out)
}

fn compose_tag(t: &saphyr_parser::Tag) -> Option<Tag> {
    match (t.handle.as_str(), t.suffix.as_str()) {
        ("!", "reset") => Some(Tag::Reset),
        ("!", "override") => Some(Tag::Override),
        _ => None,
    }
}

fn count(n: &Node) -> usize {
    match &n.value {
        Value::Seq(v) => 1 + v.iter().map(count).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(|(_, v)| count(v)).sum::<usize>(),
        _ => 1,
    }
}

fn key_string(k: &Node) -> Result<String, SyntaxError> {
    Ok(match &k.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) | Value::Timestamp(s) => s.clone(),
        Value::Seq(_) | Value::Map(_) => {
            return Err(SyntaxError {
                pos: k.pos,
                message: "invalid map key: a key must be a scalar".into(),
            });
        }
    })
}

fn build_map(entries: Vec<(Node, Node)>) -> Result<Map, SyntaxError> {
    let mut explicit = Map::new();
    let mut merged: Vec<Map> = Vec::new();
    for (k, v) in entries {
        if matches!(&k.value, Value::Str(s) if s == "<<") && k.tag.is_none() {
            match v.value {
                Value::Map(m) => merged.push(m),
                Value::Seq(items) => {
                    for it in items {
                        match it.value {
                            Value::Map(m) => merged.push(m),
                            _ => {
                                return Err(SyntaxError {
                                    pos: it.pos,
                                    message:
                                        "map merge requires map or sequence of maps as the value"
                                            .into(),
                                });
                            }
                        }
                    }
                }
                _ => {
                    return Err(SyntaxError {
                        pos: v.pos,
                        message: "map merge requires map or sequence of maps as the value".into(),
                    });
                }
            }
            continue;
        }
        if !matches!(k.value, Value::Str(_)) && k.tag.is_none() {
            let text = key_string(&k)?;
            return Err(SyntaxError {
                pos: k.pos,
                message: format!("non-string key {text}: quote it to make it a string"),
            });
        }
        let ks = key_string(&k)?;
        if explicit.contains_key(&ks) {
            return Err(SyntaxError {
                pos: k.pos,
                message: format!("mapping key {ks:?} already defined"),
            });
        }
        explicit.insert(ks, (k.pos, v));
    }
    if merged.is_empty() {
        return Ok(explicit);
    }
    // Earlier merged maps take precedence over later ones; explicit keys over all.
    let mut out = Map::new();
    for m in merged {
        for (k, v) in m {
            out.entry(k).or_insert(v);
        }
    }
    for (k, v) in explicit {
        out.insert(k, v);
    }
    Ok(out)
}

/// Serialises JSON as block YAML the way Compose prints `--format yaml` (2-space indent).
#[must_use]
pub fn to_yaml_string(v: &serde_json::Value) -> String {
    let mut out = String::new();
    emit(v, 0, &mut out, true);
    out
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => quote(s),
        J::Array(a) if a.is_empty() => "[]".into(),
        J::Object(o) if o.is_empty() => "{}".into(),
        _ => return None,
    })
}

fn quote(s: &str) -> String {
    let needs = s.is_empty()
        || !matches!(resolve_plain(s), Value::Str(_))
        || s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c))
        || s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
        || matches!(
            s,
            "y" | "Y"
                | "n"
                | "N"
                | "yes"
                | "no"
                | "Yes"
                | "No"
                | "YES"
                | "NO"
                | "on"
                | "off"
                | "On"
                | "Off"
                | "ON"
                | "OFF"
        );
    if !needs {
        return s.to_owned();
    }
    serde_json::to_string(s).unwrap_or_default()
}

fn emit(v: &serde_json::Value, indent: usize, out: &mut String, top: bool) {
    use serde_json::Value as J;
    let pad = " ".repeat(indent);
    match v {
        J::Object(o) if !o.is_empty() => {
            for (i, (k, val)) in o.iter().enumerate() {
                if i != 0 || top {
                    out.push_str(&pad);
                }
                out.push_str(&quote(k));
                out.push(':');
                match scalar(val) {
                    Some(s) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        emit(val, indent + 2, out, true);
                    }
                }
            }
        }
        J::Array(a) if !a.is_empty() => {
            for val in a {
                out.push_str(&pad);
                out.push_str("- ");
                match scalar(val) {
                    Some(s) => {
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => emit(val, indent + 2, out, false),
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}
