//! The demo app, as a real process on a real port.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the demo on a port the kernel picks (no race with another test for a "free" port) and
/// returns it with the port, once it listens.
fn start(envs: &[(&str, &str)]) -> (Child, u16) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davit-demo"));
    cmd.args(["--listen", "127.0.0.1:0"]).stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the demo exited before it listened")
            .unwrap();
        if let Some((_, addr)) = line.split_once(" listening on ") {
            break addr.parse::<std::net::SocketAddr>().unwrap().port();
        }
    };
    // Keep draining its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn term(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn answers_version_and_health() {
    let (mut child, port) = start(&[("DAVIT_DEMO_VERSION", "v7")]);
    assert_eq!(
        get(port, "/").unwrap(),
        (200, "davit-demo v7\n".to_string())
    );
    assert_eq!(get(port, "/health").unwrap().0, 200);
    assert_eq!(get(port, "/nope").unwrap().0, 404);
    let ok = Command::new(env!("CARGO_BIN_EXE_davit-demo"))
        .args(["check", &format!("http://127.0.0.1:{port}/health")])
        .status()
        .unwrap();
    assert!(ok.success());
    term(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn broken_build_fails_its_health_check() {
    let (mut child, port) = start(&[("DAVIT_DEMO_VERSION", "broken"), ("DAVIT_DEMO_BROKEN", "1")]);
    assert_eq!(get(port, "/health").unwrap().0, 500);
    assert_eq!(get(port, "/").unwrap().0, 200);
    let check = Command::new(env!("CARGO_BIN_EXE_davit-demo"))
        .args(["check", &format!("http://127.0.0.1:{port}/health")])
        .status()
        .unwrap();
    assert_eq!(check.code(), Some(1));
    term(&child);
    child.wait().unwrap();
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits() {
    let (mut child, port) = start(&[("DAVIT_DEMO_VERSION", "v1")]);
    let slow = std::thread::spawn(move || get(port, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    term(&child);
    // It stops accepting promptly...
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...but the request in flight completes.
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("slow 1500ms"), "{body}");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn check_fails_when_nothing_listens() {
    let port = free_port();
    let st = Command::new(env!("CARGO_BIN_EXE_davit-demo"))
        .args(["check", &format!("http://127.0.0.1:{port}/health")])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
}
