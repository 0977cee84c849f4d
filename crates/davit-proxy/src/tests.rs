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
