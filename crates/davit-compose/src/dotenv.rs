//! `.env` files with Compose's rules: `KEY=value`, `KEY: value`, `export KEY=value`, a bare `KEY`
//! inherited from the environment, `#` comments (inline only after a space on unquoted values),
//! single quotes (raw), double quotes (escapes, multi-line), and `${VAR}` substitution in unquoted
//! and double-quoted values (from the environment first, then earlier keys of the same file).

use indexmap::IndexMap;

use crate::interp::interpolate;

/// A dotenv syntax error, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_key_char(c: char) -> bool {
    matches!(c, '_' | '.' | '-' | '[' | ']') || c.is_alphanumeric()
}

/// Parses a dotenv document. `lookup` gives the environment (consulted before the file's own keys
/// for substitutions, and for bare inherited `KEY` lines).
///
/// # Errors
/// A bad key character, a key with a space, an unterminated quote or an invalid substitution.
pub fn parse_dotenv(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut out: IndexMap<String, String> = IndexMap::new();
    let mut rest = src;
    let line_of = |r: &str| src[..src.len() - r.len()].matches('\n').count() + 1;
    loop {
        // Statement start: skip whitespace and comment lines.
        rest = rest.trim_start_matches(char::is_whitespace);
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            match rest.find('\n') {
                Some(p) => {
                    rest = &rest[p..];
                    continue;
                }
                None => break,
            }
        }
        let line = line_of(rest);
        if let Some(after) = rest.strip_prefix("export")
            && after.starts_with(|c: char| c.is_whitespace())
        {
            rest = after.trim_start_matches(is_space);
        }
        // Key.
        let mut end = None;
        for (i, c) in rest.char_indices() {
            if is_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    end = Some((i, c));
                    break;
                }
                c if is_key_char(c) => {}
                c => {
                    return Err(DotenvError {
                        line,
                        message: format!(
                            "unexpected character {c:?} in variable name {:?}",
                            rest.split('\n').next().unwrap_or("")
                        ),
                    });
                }
            }
        }
        let Some((i, term)) = end else {
            // A last line without terminator: an inherited key.
            let key = rest.trim_end_matches(char::is_whitespace);
            if key.contains(' ') {
                return Err(DotenvError {
                    line,
                    message: "key cannot contain a space".into(),
                });
            }
            if let Some(v) = lookup(key) {
                out.insert(key.to_owned(), v);
            }
            break;
        };
        let key = rest[..i].trim_end_matches(char::is_whitespace).to_owned();
        if key.contains(' ') {
            return Err(DotenvError {
                line,
                message: "key cannot contain a space".into(),
            });
        }
        if key.is_empty() {
            return Err(DotenvError {
                line,
                message: "missing variable name".into(),
            });
        }
        rest = rest[i + 1..].trim_start_matches(is_space);
        if term == '\n' {
            if let Some(v) = lookup(&key) {
                out.insert(key, v);
            }
            continue;
        }
        let expand = |v: &str, out: &IndexMap<String, String>| {
            interpolate(v, &|k: &str| lookup(k).or_else(|| out.get(k).cloned())).map_err(|e| {
                DotenvError {
                    line,
                    message: e.message,
                }
            })
        };
        let value;
        match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let mut chars = String::new();
                let mut escaped = false;
                let mut close = None;
                for (j, c) in rest.char_indices().skip(1) {
                    if escaped {
                        escaped = false;
                        if c != q {
                            chars.push('\\');
                        }
                        chars.push(c);
                        continue;
                    }
                    if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        close = Some(j);
                        break;
                    } else {
                        chars.push(c);
                    }
                }
                let Some(j) = close else {
                    return Err(DotenvError {
                        line,
                        message: format!(
                            "unterminated quoted value {}",
                            rest.split('\n').next().unwrap_or("")
                        ),
                    });
                };
                rest = &rest[j + 1..];
                value = if q == '"' {
                    expand(&expand_escapes(&chars), &out)?
                } else {
                    chars
                };
                // Ignore what follows the closing quote on this line (a comment).
                if let Some(p) = rest.find('\n') {
                    rest = &rest[p..];
                } else {
                    rest = "";
                }
            }
            _ => {
                let (v, r) = rest.split_once('\n').unwrap_or((rest, ""));
                rest = r;
                let v = v.split_once(" #").map_or(v, |(a, _)| a);
                let v = v.trim_end_matches(char::is_whitespace);
                value = expand(v, &out)?;
            }
        }
        out.insert(key, value);
    }
    Ok(out)
}

fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some(e @ ('a' | 'b' | 'c' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\' | '$')) => {
                it.next();
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '$' => out.push_str("$$"),
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            Some('0') => {
                it.next();
                let mut digits = String::new();
                while digits.len() < 3 {
                    match it.peek() {
                        Some(d) if d.is_ascii_digit() => {
                            digits.push(*d);
                            it.next();
                        }
                        _ => break,
                    }
                }
                match u32::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|_| digits.len() == 3)
                    .and_then(char::from_u32)
                {
                    Some(ch) if u32::from(ch) < 256 => out.push(ch),
                    _ => {
                        out.push_str("\\0");
                        out.push_str(&digits);
                    }
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}
