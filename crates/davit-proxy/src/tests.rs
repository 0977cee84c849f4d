use crate::Error;
use crate::api::{RouteSpec, RouteStatus};

#[test]
fn minimal_route_spec_fills_defaults() {
    let spec: RouteSpec =
        serde_json::from_str(r#"{"listen":"0.0.0.0:80","targets":[{"addr":"172.30.1.5:8080"}]}"#)
            .unwrap();
    insta::assert_json_snapshot!(spec);
    assert_eq!(spec.targets[0].effective_id(), "172.30.1.5:8080");
}

#[test]
fn unknown_fields_are_refused() {
    let err =
        serde_json::from_str::<RouteSpec>(r#"{"listen":"0.0.0.0:80","target":[]}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `target`"), "{err}");
}

#[test]
fn api_error_display_names_the_call_and_status() {
    let e = Error::Api {
        what: "PUT /routes/web".into(),
        status: 409,
        message: "listen taken".into(),
    };
    assert_eq!(
        e.to_string(),
        "the proxy refused PUT /routes/web: 409 listen taken"
    );
}

#[test]
fn settled_means_desired_active_and_others_drained() {
    let status: RouteStatus = serde_json::from_str(
        r#"{"name":"web","spec":{"listen":"0.0.0.0:80","targets":[{"id":"b","addr":"10.0.0.2:80"}]},
            "targets":[{"id":"a","addr":"10.0.0.1:80","weight":100,"state":"draining","in_flight":1,"requests":5,"responses_5xx":0},
                       {"id":"b","addr":"10.0.0.2:80","weight":100,"state":"active","in_flight":0,"requests":1,"responses_5xx":0}]}"#,
    )
    .unwrap();
    assert!(!status.settled());
    let mut done = status.clone();
    done.targets[0].state = crate::api::TargetState::Drained;
    assert!(done.settled());
}

#[test]
fn health_spec_is_the_health_crate_policy() {
    use std::time::Duration;
    let spec: crate::api::HealthSpec = serde_json::from_str(
        r#"{"path":"/up","interval_ms":250,"timeout_ms":100,"success_threshold":2,"failure_threshold":4,"start_period_ms":5000}"#,
    )
    .unwrap();
    let policy = spec.policy();
    assert_eq!(
        policy,
        davit_health::Policy {
            start_period: Duration::from_secs(5),
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(100),
            success_threshold: 2,
            failure_threshold: 4,
            ..davit_health::Policy::default()
        }
    );
    assert_eq!(
        crate::api::HealthSpec::from_policy(Some("/up".into()), &policy),
        spec
    );
    // The engine's older specs (no start period) still parse, and serialize as before.
    let old: crate::api::HealthSpec = serde_json::from_str(r#"{"interval_ms":500}"#).unwrap();
    assert_eq!(old.start_period_ms, 0);
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"interval_ms":500,"timeout_ms":2000,"success_threshold":1,"failure_threshold":3}"#
    );
}

#[test]
fn the_gate_follows_the_monitor_thresholds_and_start_period() {
    use davit_health::{Monitor, Outcome, Status, Step};
    use std::time::{Duration, Instant};
    let spec = crate::api::HealthSpec {
        interval_ms: 100,
        success_threshold: 2,
        failure_threshold: 2,
        start_period_ms: 250,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut m = Monitor::new(spec.policy(), t0);
    let mut seen = Vec::new();
    // Checks every 100 ms; the first three start within the start period (failures not counted).
    for (i, ok) in [
        false, false, false, true, true, false, true, false, false, true, true,
    ]
    .into_iter()
    .enumerate()
    {
        let now = t0 + Duration::from_millis(100 * i as u64);
        let Step::Probe { attempt, .. } = m.poll(now) else {
            panic!("check {i} is due at {now:?}");
        };
        let outcome = if ok {
            Outcome::Success("200 OK".into())
        } else {
            Outcome::Failure("500 Internal Server Error".into())
        };
        m.record(attempt, now + Duration::from_millis(1), outcome);
        seen.push(m.status());
        assert!(matches!(
            m.poll(now + Duration::from_millis(2)),
            Step::Wait { .. }
        ));
    }
    use Status::{Healthy as H, Unhealthy as U, Unknown as P};
    assert_eq!(seen, [P, P, P, P, H, H, H, H, U, U, H]);
}

#[test]
fn metrics_render_in_prometheus_text_format() {
    use std::time::Duration;
    let stats = crate::metrics::TargetStats::default();
    for (i, ms) in [1, 20, 3000].into_iter().enumerate() {
        // Spread over the per-thread shards, as several worker threads would.
        crate::set_worker_index(i);
        stats.add_request();
        let shard = stats.enter();
        stats.leave(shard, Duration::from_millis(ms));
    }
    stats.add_5xx();
    let still = stats.enter();
    crate::set_worker_index(0);
    assert_eq!((stats.requests(), stats.in_flight()), (3, 1));
    stats.leave(still, Duration::from_millis(5));
    assert_eq!(stats.in_flight(), 0);
    let series = [crate::metrics::Series {
        route: "web",
        target: "app-\"1\"",
        state: "active",
        stats: &stats,
    }];
    insta::assert_snapshot!(crate::metrics::render(&series));
}

#[test]
fn cookies_are_found_among_others() {
    let mut h = http::HeaderMap::new();
    h.append("cookie", "a=1; davit_target=web-2".parse().unwrap());
    h.append("cookie", "b=2".parse().unwrap());
    assert_eq!(
        crate::forward::cookie_value(&h, "davit_target"),
        Some("web-2")
    );
    assert_eq!(crate::forward::cookie_value(&h, "b"), Some("2"));
    assert_eq!(crate::forward::cookie_value(&h, "c"), None);
}

#[test]
fn chunk_sizes_are_hex_with_optional_extensions() {
    use crate::upstream::parse_chunk_size;
    let cases: [(&[u8], Option<u64>); 7] = [
        (b"5", Some(5)),
        (b"1A", Some(26)),
        (b"ff;name=value", Some(255)),
        (b" 0 ", Some(0)),
        (b"", None),
        (b"g", None),
        (b"1234567890abcdef", None),
    ];
    for (line, want) in cases {
        assert_eq!(
            parse_chunk_size(line),
            want,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}
