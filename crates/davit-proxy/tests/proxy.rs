//! Integration tests of `davit-proxy`: real upstreams (the `davit-demo` binary from `$DAVIT_DEMO_BIN`
//! on loopback ports, and small hyper servers written here), real HTTP through the proxy, the admin API
//! driven through the typed client as the engine drives it.

#[path = "proxy/lab.rs"]
mod lab;
#[path = "proxy/support.rs"]
mod support;
#[path = "proxy/tls.rs"]
mod tls;
#[path = "proxy/traffic.rs"]
mod traffic;
