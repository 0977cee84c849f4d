//! Named environments: `x-davit.environments.NAME` chosen with `--env NAME`.
//!
//! ```yaml
//! x-davit:
//!   environments:
//!     production:
//!       hosts: [ssh://deploy@web1.example.com, ssh://deploy@web2.example.com]
//!       variables: {VERSION: "1.4.2", REPLICAS: 3}
//!       notify: [{url: "https://hooks.slack.com/services/…", format: slack}]
//! ```
//!
//! The resolver is pure: it takes the top-level `x-davit` map already parsed into JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::notify::{Target, targets_from_x_davit};

/// A resolved environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// Its name.
    pub name: String,
    /// Host URLs, in the order written.
    pub hosts: Vec<String>,
    /// Variables for interpolation (numbers and booleans written as strings, as Compose does).
    pub variables: BTreeMap<String, String>,
    /// Webhooks for this environment (in addition to the top-level `x-davit.notify`).
    #[serde(skip)]
    pub notify: Vec<Target>,
}

/// Why `--env NAME` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// The project defines no environments at all.
    #[error(
        "--env {name}: the project defines no environments; add `x-davit: {{environments: {{{name}: {{hosts: [...]}}}}}}` at the top level of the compose file, or pass --host instead"
    )]
    NoEnvironments { name: String },
    /// No environment has that name.
    #[error("--env {name}: unknown environment; valid environments: {}", valid.join(", "))]
    Unknown { name: String, valid: Vec<String> },
    /// `x-davit.environments` is not a map.
    #[error(
        "x-davit.environments must be a map of environment names, e.g. {{production: {{hosts: [ssh://user@host]}}}}"
    )]
    NotAMap,
    /// The environment is written wrongly.
    #[error("x-davit.environments.{name}{field}: {reason}")]
    Invalid {
        name: String,
        field: String,
        reason: String,
    },
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} hosts)", self.name, self.hosts.len())
    }
}

/// The names of the environments defined in `x-davit` (sorted).
pub fn environment_names(x_davit: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = x_davit
        .get("environments")
        .and_then(serde_json::Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Resolves environment `name` from the top-level `x-davit` value (`None` or `null` when the compose file
/// has no `x-davit`).
pub fn resolve_environment(
    x_davit: Option<&serde_json::Value>,
    name: &str,
) -> Result<Environment, EnvironmentError> {
    let invalid = |field: &str, reason: &str| EnvironmentError::Invalid {
        name: name.to_owned(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    let envs = match x_davit.and_then(|x| x.get("environments")) {
        None | Some(serde_json::Value::Null) => {
            return Err(EnvironmentError::NoEnvironments {
                name: name.to_owned(),
            });
        }
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => return Err(EnvironmentError::NotAMap),
    };
    let Some(env) = envs.get(name) else {
        let mut valid: Vec<String> = envs.keys().cloned().collect();
        valid.sort();
        return Err(EnvironmentError::Unknown {
            name: name.to_owned(),
            valid,
        });
    };
    let env = match env {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => &serde_json::Map::new(),
        _ => return Err(invalid("", "must be a map with `hosts` and `variables`")),
    };
    if let Some(k) = env
        .keys()
        .find(|k| !matches!(k.as_str(), "hosts" | "variables" | "notify") && !k.starts_with("x-"))
    {
        return Err(invalid(
            &format!(".{k}"),
            "unknown key (known: hosts, variables, notify)",
        ));
    }
    let hosts = match env.get("hosts") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(h)) => vec![h.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        invalid(
                            &format!(".hosts[{i}]"),
                            "must be a host URL such as ssh://user@host",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(".hosts", "must be a list of host URLs")),
    };
    let mut variables = BTreeMap::new();
    match env.get("variables") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => {
            for (k, v) in m {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Null => String::new(),
                    _ => {
                        return Err(invalid(
                            &format!(".variables.{k}"),
                            "must be a string, number or boolean",
                        ));
                    }
                };
                variables.insert(k.clone(), value);
            }
        }
        Some(_) => return Err(invalid(".variables", "must be a map of NAME: value")),
    }
    let notify = match env.get("notify") {
        None => Vec::new(),
        Some(n) => {
            targets_from_x_davit(&serde_json::json!({ "notify": n })).map_err(|e| match e {
                crate::Error::NotifyConfig { what, reason } => invalid(
                    &format!(
                        ".notify{}",
                        what.strip_prefix("x-davit.notify").unwrap_or("")
                    ),
                    &reason,
                ),
                other => invalid(".notify", &other.to_string()),
            })?
        }
    };
    Ok(Environment {
        name: name.to_owned(),
        hosts,
        variables,
        notify,
    })
}

#[cfg(test)]
mod tests;
