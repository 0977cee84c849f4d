use super::*;

#[test]
fn rfc3339_times_as_docker_and_users_write_them() {
    let cases = [
        ("1970-01-01T00:00:00Z", Some(0)),
        ("2026-11-24T01:02:03Z", Some(1_795_482_123)),
        ("2026-11-24T01:02:03.123456789Z", Some(1_795_482_123)),
        ("2026-11-24T02:02:03+01:00", Some(1_795_482_123)),
        ("2026-11-23T20:02:03-05:00", Some(1_795_482_123)),
        ("2000-02-29T12:00:00Z", Some(951_825_600)),
        ("2026-13-01T00:00:00Z", None),
        ("2026-11-24 01:02", None),
        ("10m", None),
        ("2026-11-24T01:02:03", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_rfc3339(text), want, "{text}");
    }
}

#[test]
fn rfc3339_agrees_with_the_release_clock() {
    for secs in [0u64, 86_399, 1_000_000_000, 1_795_482_123, 4_102_444_800] {
        assert_eq!(
            parse_rfc3339(&crate::release::rfc3339(secs)),
            Some(secs as i64)
        );
    }
}

#[test]
fn digests_of_pinned_references() {
    assert_eq!(
        digest_of("10.77.0.9:5000/davit-demo@sha256:abc").as_deref(),
        Some("sha256:abc")
    );
    assert_eq!(digest_of("davit-demo:v1"), None);
}
