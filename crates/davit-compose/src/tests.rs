use crate::interpolate;

fn env(k: &str) -> Option<String> {
    match k {
        "A" => Some("a".into()),
        "E" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn interpolation_forms() {
    let cases = [
        ("$A", "a"),
        ("${A}", "a"),
        ("${U:-d}", "d"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
        ("${A:+r}", "r"),
        ("${E:+r}", ""),
        ("${E+r}", "r"),
        ("$$A", "$A"),
        ("${U:-${A}x}", "ax"),
        ("x${A}y$A", "xaya"),
    ];
    for (t, want) in cases {
        assert_eq!(interpolate(t, &env).unwrap(), want, "{t}");
    }
    assert!(
        interpolate("${U:?boom}", &env)
            .unwrap_err()
            .message
            .contains("boom")
    );
    assert!(interpolate("$1", &env).is_err());
    assert!(interpolate("${A", &env).is_err());
}
