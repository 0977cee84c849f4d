use crate::known_hosts::{Verdict, check_text, host_pattern};
use crate::{Error, HostUrl};

#[test]
fn error_display_names_the_url() {
    let e = HostUrl::parse("ftp://x").unwrap_err();
    assert!(matches!(e, Error::InvalidUrl { .. }));
    assert!(e.to_string().contains("ftp://x"), "{e}");
}
