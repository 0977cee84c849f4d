use crate::Error;

#[test]
fn error_display_names_what_is_unsupported() {
    let e = Error::Unsupported("thing".into());
    assert_eq!(e.to_string(), "not yet supported: thing");
}
