use crate::plan::Instance;
use crate::{Error, Lab};

#[test]
fn instance_zero_matches_the_contract() {
    let i = Instance(0);
    assert_eq!(i.host_address(1), "10.77.1.2");
    assert_eq!(i.gateway_address(1), "10.77.1.1");
    assert_eq!(i.host_address(64), "10.77.64.2");
    assert_eq!(i.registry_address(), "10.77.0.1:5000");
    assert_eq!(i.netns(3), "davit-h3");
    assert!(i.check(64).is_ok());
    assert!(matches!(i.check(65), Err(Error::Invalid(_))));
}

#[test]
fn side_instances_never_overlap() {
    let mut seen = std::collections::HashSet::new();
    for inst in 0..=crate::MAX_INSTANCE {
        let i = Instance(inst);
        for h in 1..=i.max_hosts() {
            let octet = i.octet(h);
            assert!(
                (1..=255).contains(&octet),
                "instance {inst} host {h} octet {octet}"
            );
            assert!(seen.insert(octet), "octet {octet} used twice");
            assert!(
                i.veth(h).len() <= 15,
                "{} too long for an interface name",
                i.veth(h)
            );
            assert!(i.veth_peer(h).len() <= 15);
        }
    }
    assert!(Instance(crate::MAX_INSTANCE + 1).check(1).is_err());
    assert!(Instance(1).check(9).is_err());
    assert_ne!(Instance(1).netns(2), Instance(12).netns(2));
    assert!(
        !Instance(12)
            .netns(2)
            .starts_with(&Instance(1).netns_prefix())
    );
}

#[test]
fn images_are_deterministic_and_differ_by_version() {
    let a = Lab::demo_image(b"bin".to_vec(), "v1").registry_image();
    let b = Lab::demo_image(b"bin".to_vec(), "v1").registry_image();
    let c = Lab::demo_image(b"bin".to_vec(), "v2").registry_image();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.layer_digest, c.layer_digest, "versions share their layer");
    assert_ne!(a.config_digest, c.config_digest);
    assert_eq!(a.manifest_digest, davit_image::sha256_digest(&a.manifest));
    let config: serde_json::Value = serde_json::from_slice(&c.config).unwrap();
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "DAVIT_DEMO_VERSION=v2")
    );
    let broken: serde_json::Value = serde_json::from_slice(
        &Lab::demo_image(b"bin".to_vec(), "broken")
            .registry_image()
            .config,
    )
    .unwrap();
    assert!(
        broken["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "DAVIT_DEMO_BROKEN=1")
    );
}

#[test]
fn dynamic_executables_are_not_static() {
    let me = std::env::current_exe().unwrap();
    assert!(!crate::is_static_elf(&me), "test binaries link dynamically");
    assert!(!crate::is_static_elf(std::path::Path::new("/etc/hostname")));
}

#[test]
fn status_lines_parse() {
    assert_eq!(crate::sys::parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
    assert_eq!(
        crate::sys::parse_status(b"HTTP/1.0 404 Not Found\r\n"),
        Some(404)
    );
    assert_eq!(crate::sys::parse_status(b"garbage"), None);
}

#[test]
fn the_proxy_binary_comes_from_its_own_package() {
    assert_eq!(crate::bins::package_of("davit-proxy"), "davit-proxy-bin");
    assert_eq!(crate::bins::package_of("davit-demo"), "davit-demo");
}

#[test]
fn diagnose_lists_the_ports_a_process_listens_on() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports = crate::diagnose::listening_ports(std::process::id());
    assert!(
        ports.split(',').any(|p| p == port.to_string()),
        "{port} not in {ports}"
    );
    drop(l);
    let ports = crate::diagnose::listening_ports(std::process::id());
    assert!(!ports.split(',').any(|p| p == port.to_string()), "{ports}");
}
