//! A lossless reader of `.env` files: every byte of the input is kept (comments, blank lines, `export`,
//! quoting, BOM, CRLF line ends), and each assignment knows its key, its value and, when the value is
//! empty, where a value can be inserted without changing anything else on the line.
//!
//! The syntax follows the dotenv dialect Docker Compose reads: `KEY=value`, `KEY = value`, `KEY: value`,
//! `export KEY=value`, single- and double-quoted values (which may span lines), and inline comments
//! after whitespace on unquoted values (`KEY=value # note`).

/// One logical item of an env file: a line, or several lines for a multi-line quoted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The item's text exactly as in the file, including its line end(s).
    pub text: String,
    /// 1-based line number where the item starts.
    pub line: usize,
    /// What the item is.
    pub kind: Kind,
}

/// What an [`Item`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A blank line, a comment, or a line that is not an assignment (kept verbatim).
    Other,
    /// `KEY=…` (or `KEY: …`, `export KEY=…`).
    Assign(Assign),
}

/// An assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// The variable name.
    pub key: String,
    /// The value as a program reading the file sees it (quotes removed, escapes applied, inline comment
    /// cut). Empty for `KEY=`, `KEY=""`, `KEY=''`, `KEY= # comment`.
    pub value: String,
    /// For an empty value: the byte offset in [`Item::text`] where a value goes (after `=`, or inside
    /// the empty quotes). `None` when the value is set.
    pub insert_at: Option<usize>,
}

impl Assign {
    /// True for `KEY=`, `KEY=""`, `KEY=''` and `KEY= # comment`.
    pub fn is_empty(&self) -> bool {
        self.insert_at.is_some()
    }
}

impl Item {
    /// The assignment, if this item is one.
    pub fn assign(&self) -> Option<&Assign> {
        match &self.kind {
            Kind::Assign(a) => Some(a),
            Kind::Other => None,
        }
    }

    /// The item's text with `value` inserted at the empty value's place. Only for empty assignments.
    pub fn filled(&self, value: &str) -> Option<String> {
        let at = self.assign()?.insert_at?;
        let mut out = String::with_capacity(self.text.len() + value.len());
        out.push_str(&self.text[..at]);
        out.push_str(value);
        out.push_str(&self.text[at..]);
        Some(out)
    }
}

/// Splits `text` into lines, each keeping its line end (`\n` or `\r\n`).
fn lines_with_ends(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                out.push(&rest[..=i]);
                rest = &rest[i + 1..];
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

/// The line without its line end.
fn body(line: &str) -> &str {
    line.strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

/// Parses an env file losslessly: concatenating every item's `text` gives back `text`.
pub fn parse(text: &str) -> Vec<Item> {
    let lines = lines_with_ends(text);
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i];
        i += 1;
        let Some(head) = parse_head(body(line)) else {
            items.push(Item {
                text: line.to_owned(),
                line: line_no,
                kind: Kind::Other,
            });
            continue;
        };
        let rest = &body(line)[head.value_start..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let lead = rest.len() - trimmed.len();
        let value_at = head.value_start + lead;
        let quote = trimmed.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (value, insert_at, text) = match quote {
            None => {
                let value = unquoted_value(trimmed, lead > 0);
                let insert_at = value.is_empty().then_some(if trimmed.is_empty() {
                    value_at
                } else {
                    head.value_start
                });
                (value, insert_at, line.to_owned())
            }
            Some(q) => {
                // The value may continue on the following lines until its closing quote.
                let mut joined = body(line)[value_at + 1..].to_owned();
                let mut text = line.to_owned();
                let mut close = find_close(&joined, q);
                while close.is_none() && i < lines.len() {
                    joined.push('\n');
                    joined.push_str(body(lines[i]));
                    text.push_str(lines[i]);
                    i += 1;
                    close = find_close(&joined, q);
                }
                match close {
                    Some(end) => {
                        let raw = &joined[..end];
                        let value = if q == '"' {
                            unescape_double(raw)
                        } else {
                            raw.replace("\\'", "'")
                        };
                        let insert_at = raw.is_empty().then_some(value_at + 1);
                        (value, insert_at, text)
                    }
                    // No closing quote: a set value as far as we are concerned; keep it verbatim.
                    None => (joined, None, text),
                }
            }
        };
        items.push(Item {
            text,
            line: line_no,
            kind: Kind::Assign(Assign {
                key: head.key,
                value,
                insert_at,
            }),
        });
    }
    items
}

struct Head {
    key: String,
    /// Byte offset (in the line body) just after the `=` or `:`.
    value_start: usize,
}

/// `[BOM][ws][export ws]KEY[ws](=|:)`.
fn parse_head(line: &str) -> Option<Head> {
    let start = line
        .strip_prefix('\u{feff}')
        .map_or(0, |_| '\u{feff}'.len_utf8());
    let s = &line[start..];
    let trimmed = s.trim_start_matches([' ', '\t']);
    let mut pos = start + (s.len() - trimmed.len());
    let mut rest = trimmed;
    if let Some(after) = rest
        .strip_prefix("export")
        .filter(|a| a.starts_with([' ', '\t']))
    {
        let t = after.trim_start_matches([' ', '\t']);
        pos += rest.len() - t.len();
        rest = t;
    }
    let key_len = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
    if key_len == 0 {
        return None;
    }
    let key = rest[..key_len].to_owned();
    let after_key = &rest[key_len..];
    let t = after_key.trim_start_matches([' ', '\t']);
    pos += key_len + (after_key.len() - t.len());
    let sep = t.chars().next()?;
    if sep != '=' && sep != ':' {
        return None;
    }
    Some(Head {
        key,
        value_start: pos + 1,
    })
}

/// The value of an unquoted `rest` (already left-trimmed; `spaced` when whitespace preceded it): cut at
/// an inline comment (a `#` after whitespace), right-trimmed.
fn unquoted_value(rest: &str, spaced: bool) -> String {
    if spaced && rest.starts_with('#') {
        // `KEY= # comment`: nothing before the comment. (`KEY=#x` is the value `#x`.)
        return String::new();
    }
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            end = i;
            break;
        }
    }
    rest[..end].trim_end().to_owned()
}

/// Index of the closing quote `q` in `s` (which starts just after the opening quote), skipping
/// backslash-escaped quotes.
fn find_close(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape_double(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The key/value pairs of an env file, in order (later duplicates win when collected into a map).
pub fn pairs(text: &str) -> Vec<(String, String)> {
    parse(text)
        .into_iter()
        .filter_map(|i| i.assign().map(|a| (a.key.clone(), a.value.clone())))
        .collect()
}

/// The line end the file mostly uses (`\r\n` when any line ends that way, else `\n`).
pub fn line_end(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

#[cfg(test)]
mod tests;
