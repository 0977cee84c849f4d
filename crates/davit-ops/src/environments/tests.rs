use super::*;

fn x_davit() -> serde_json::Value {
    serde_json::json!({
        "environments": {
            "production": {
                "hosts": ["ssh://deploy@web1", "ssh://deploy@web2"],
                "variables": { "VERSION": "1.4.2", "REPLICAS": 3, "DEBUG": false },
                "notify": [{ "url": "https://hooks.slack.com/services/T/B/X" }]
            },
            "staging": { "hosts": "ssh://deploy@staging" },
            "empty": null
        }
    })
}

#[test]
fn resolves_hosts_variables_and_notify() {
    let env = resolve_environment(Some(&x_davit()), "production").unwrap();
    insta::assert_json_snapshot!(env);
    assert_eq!(env.notify.len(), 1);
    assert_eq!(env.notify[0].format(), crate::Format::Slack);
}

#[test]
fn a_single_host_string_and_a_null_environment() {
    assert_eq!(
        resolve_environment(Some(&x_davit()), "staging")
            .unwrap()
            .hosts,
        vec!["ssh://deploy@staging"]
    );
    let empty = resolve_environment(Some(&x_davit()), "empty").unwrap();
    assert!(empty.hosts.is_empty() && empty.variables.is_empty());
}

#[test]
fn errors_list_valid_names_and_say_what_to_do() {
    let cases = [
        (Some(x_davit()), "prod"),
        (None, "production"),
        (
            Some(serde_json::json!({ "environments": [] })),
            "production",
        ),
        (
            Some(serde_json::json!({ "environments": { "p": { "hosts": [1] } } })),
            "p",
        ),
        (
            Some(serde_json::json!({ "environments": { "p": { "host": [] } } })),
            "p",
        ),
        (
            Some(serde_json::json!({ "environments": { "p": { "variables": { "A": [1] } } } })),
            "p",
        ),
        (
            Some(
                serde_json::json!({ "environments": { "p": { "notify": [{ "url": "ftp://x" }] } } }),
            ),
            "p",
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(x, name)| {
            resolve_environment(x.as_ref(), name)
                .unwrap_err()
                .to_string()
        })
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

#[test]
fn names_are_sorted() {
    assert_eq!(
        environment_names(&x_davit()),
        vec!["empty", "production", "staging"]
    );
}
