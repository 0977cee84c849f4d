//! Variable interpolation as Compose does it: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+replacement}`, `${VAR+replacement}`, nesting in the
//! default part, and `$$` for a literal `$` (a `$` followed by anything else is kept as is). Only
//! values are interpolated, never keys.

use std::fmt;

/// An invalid template or a missing required variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// What is wrong, as Compose words it.
    pub message: String,
    /// The variable that is required, when that is the problem.
    pub variable: Option<String>,
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InterpolationError {}

fn invalid(template: &str) -> InterpolationError {
    InterpolationError {
        message: format!("invalid template: {template:?}"),
        variable: None,
    }
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Interpolates `template`, looking variables up with `lookup` (`None` = unset).
///
/// # Errors
/// An invalid template (a `$` not followed by a name, `{` or `$`; an unterminated `${`), or a
/// required variable (`:?`, `?`) that is missing.
pub fn interpolate(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    interpolate_depth(template, lookup, 0, &mut Vec::new())
}

/// Like [`interpolate`], also collecting the variables used without a default that are unset
/// (Compose warns about them and uses an empty string).
///
/// # Errors
/// As [`interpolate`].
pub fn interpolate_collecting(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    interpolate_depth(template, lookup, 0, unset)
}

fn interpolate_depth(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    if depth > 64 {
        return Err(InterpolationError {
            message: "template nested too deeply".into(),
            variable: None,
        });
    }
    let b = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&template[lit..i]);
        let Some(&next) = b.get(i + 1) else {
            // A `$` at the end stays a literal `$`, as in Compose.
            out.push('$');
            i += 1;
            lit = i;
            continue;
        };
        if next == b'$' {
            out.push('$');
            i += 2;
        } else if is_name_start(next) {
            let mut j = i + 1;
            while j < b.len() && is_name_char(b[j]) {
                j += 1;
            }
            let name = &template[i + 1..j];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => unset.push(name.to_owned()),
            }
            i = j;
        } else if next == b'{' {
            // Find the closing brace, counting nested `${`.
            let mut open = 0usize;
            let mut j = i;
            let mut close = None;
            while j < b.len() {
                if b[j] == b'}' {
                    open = open.saturating_sub(1);
                    if open == 0 {
                        close = Some(j);
                        break;
                    }
                }
                if b[j] == b'$' && b.get(j + 1) == Some(&b'{') {
                    open += 1;
                    j += 1;
                }
                j += 1;
            }
            let Some(close) = close else {
                return Err(invalid(template));
            };
            let inner = &template[i + 2..close];
            out.push_str(&braced(inner, template, lookup, depth, unset)?);
            i = close + 1;
        } else {
            // `$` not followed by a name, `{` or `$` stays a literal `$`, as in Compose.
            out.push('$');
            i += 1;
        }
        lit = i;
    }
    out.push_str(&template[lit..]);
    Ok(out)
}

fn braced(
    inner: &str,
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    let b = inner.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) {
        return Err(invalid(template));
    }
    let mut j = 1;
    while j < b.len() && is_name_char(b[j]) {
        j += 1;
    }
    let name = &inner[..j];
    if j == b.len() {
        return Ok(lookup(name).unwrap_or_else(|| {
            unset.push(name.to_owned());
            String::new()
        }));
    }
    let (colon, op, arg) = match (b[j], b.get(j + 1)) {
        (b':', Some(&c)) if matches!(c, b'-' | b'+' | b'?') => (true, c, &inner[j + 2..]),
        (c, _) if matches!(c, b'-' | b'+' | b'?') => (false, c, &inner[j + 1..]),
        _ => return Err(invalid(template)),
    };
    let arg = interpolate_depth(arg, lookup, depth + 1, unset)?;
    let value = lookup(name);
    let set_for_op = |v: &Option<String>| match v {
        None => false,
        Some(s) => !colon || !s.is_empty(),
    };
    Ok(match op {
        b'-' => {
            if set_for_op(&value) {
                value.unwrap_or_default()
            } else {
                arg
            }
        }
        b'+' => {
            if set_for_op(&value) {
                arg
            } else {
                value.unwrap_or_default()
            }
        }
        _ => {
            if set_for_op(&value) {
                value.unwrap_or_default()
            } else {
                return Err(InterpolationError {
                    message: format!("required variable {name} is missing a value: {arg}"),
                    variable: Some(name.to_owned()),
                });
            }
        }
    })
}
