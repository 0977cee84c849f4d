//! Integration tests of `davit-ssh`: one binary per crate.

#[test]
fn error_is_std_error() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<davit_ssh::Error>();
}
