use super::*;

fn event(outcome: Outcome) -> Event {
    Event {
        outcome,
        project: "shop".into(),
        environment: Some("production".into()),
        release: Some("r42".into()),
        hosts: vec![
            "ssh://root@10.0.0.1:22".into(),
            "ssh://root@10.0.0.2:22".into(),
        ],
        message: "2 services healthy".into(),
    }
}

#[test]
fn payload_shapes() {
    let e = event(Outcome::Succeeded);
    insta::assert_json_snapshot!("slack", Format::Slack.payload(&e));
    insta::assert_json_snapshot!("discord", Format::Discord.payload(&e));
    insta::assert_json_snapshot!("generic", Format::Generic.payload(&e));
}

#[test]
fn summaries_for_every_outcome() {
    let mut lines = Vec::new();
    for o in [
        Outcome::Started,
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::RolledBack,
    ] {
        lines.push(event(o).summary());
    }
    let bare = Event {
        outcome: Outcome::Failed,
        project: "p".into(),
        environment: None,
        release: None,
        hosts: (1..=7).map(|i| format!("h{i}")).collect(),
        message: String::new(),
    };
    lines.push(bare.summary());
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn discord_content_is_capped() {
    let mut e = event(Outcome::Failed);
    e.message = "x".repeat(5000);
    let v = Format::Discord.payload(&e);
    assert_eq!(v["content"].as_str().unwrap().chars().count(), 2000);
}

#[test]
fn formats_are_inferred_from_urls() {
    let f = |u: &str| Target::parse(u).unwrap().format();
    assert_eq!(
        f("https://hooks.slack.com/services/T0/B0/XYZ"),
        Format::Slack
    );
    assert_eq!(f("https://discord.com/api/webhooks/1/abc"), Format::Discord);
    assert_eq!(f("https://example.com/hook"), Format::Generic);
    assert_eq!(f("discord=http://127.0.0.1:9/x"), Format::Discord);
    assert_eq!(f("slack=http://127.0.0.1:9/x"), Format::Slack);
    assert_eq!(f("json=http://127.0.0.1:9/x"), Format::Generic);
}

#[test]
fn display_hides_the_token_in_the_path() {
    let t = Target::parse("https://hooks.slack.com/services/T0/B0/XYZSECRET").unwrap();
    assert_eq!(t.display(), "https://hooks.slack.com/…");
    assert_eq!(
        Target::parse("http://127.0.0.1:8080").unwrap().display(),
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        Target::parse("https://bot:pa55@example.com:8443/h")
            .unwrap()
            .display(),
        "https://example.com:8443/…"
    );
}

#[test]
fn a_user_in_the_url_becomes_basic_auth() {
    let url = Url::parse("https://bot:p%40ss@example.com/h").unwrap();
    // base64("bot:p@ss")
    assert_eq!(basic_auth(&url).as_deref(), Some("Basic Ym90OnBAc3M="));
    assert_eq!(
        basic_auth(&Url::parse("https://example.com/h").unwrap()),
        None
    );
}

#[test]
fn bad_targets_are_refused() {
    let errors: Vec<String> = ["ftp://x/y", "not a url", "http://", "discord=mailto:a@b"]
        .iter()
        .map(|u| Target::parse(u).unwrap_err().to_string())
        .collect();
    insta::assert_snapshot!(errors.join("\n"));
}

#[test]
fn x_davit_notify_forms() {
    let x = serde_json::json!({ "notify": [
        "https://hooks.slack.com/services/a",
        { "url": "https://example.com/h", "format": "discord" },
        { "url": "https://example.com/g" }
    ]});
    let t = targets_from_x_davit(&x).unwrap();
    assert_eq!(
        t.iter().map(Target::format).collect::<Vec<_>>(),
        vec![Format::Slack, Format::Discord, Format::Generic]
    );
    assert!(
        targets_from_x_davit(&serde_json::json!({}))
            .unwrap()
            .is_empty()
    );
    let errors: Vec<String> = [
        serde_json::json!({ "notify": 3 }),
        serde_json::json!({ "notify": [{ "format": "slack" }] }),
        serde_json::json!({ "notify": [{ "url": "https://e/h", "format": "teams" }] }),
        serde_json::json!({ "notify": [{ "url": "https://e/h", "channel": "#x" }] }),
        serde_json::json!({ "notify": [{ "url": "gopher://e/h" }] }),
    ]
    .iter()
    .map(|x| targets_from_x_davit(x).unwrap_err().to_string())
    .collect();
    insta::assert_snapshot!(errors.join("\n"));
}

#[test]
fn config_merges_compose_and_flags_without_duplicates() {
    let x = serde_json::json!({ "notify": [{ "url": "https://example.com/h" }] });
    let n = Notifier::from_config(
        Some(&x),
        &[
            "https://example.com/h".into(),
            "discord=https://example.com/d".into(),
            " ".into(),
        ],
    )
    .unwrap();
    assert_eq!(n.targets().len(), 2);
    assert_eq!(n.targets()[1].format(), Format::Discord);
}
