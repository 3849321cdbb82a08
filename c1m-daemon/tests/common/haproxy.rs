//! A real haproxy for end-to-end tests: started in master-worker mode (as
//! Debian's systemd unit runs it) from a temporary config whose global
//! `maxconn` is the cap, serving `200 ok` to HTTP requests on a free
//! loopback port; its master, workers and directory go away on drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use super::TempDir;

pub const BINARY: &str = "/usr/sbin/haproxy";

pub type Running = super::RealServer;

/// Start haproxy with global `maxconn {cap}`; `None` (after saying
/// "SKIPPED") when it is not installed, unless C1M_REQUIRE_KERNEL_TESTS=1,
/// where that panics.
pub fn start(cap: u64) -> Option<Running> {
    if !std::path::Path::new(BINARY).exists() {
        super::skip(&format!("haproxy: no {BINARY} (apt-get install haproxy)"));
        return None;
    }
    let port = super::free_port();
    let dir = TempDir::new("haproxy-e2e");
    let config = dir.0.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global
    maxconn {cap}
defaults
    mode http
    timeout client 120s
    timeout connect 5s
    timeout server 120s
frontend web
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string ok
"
        ),
    )
    .unwrap();
    let child = Command::new(BINARY)
        .arg("-W")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting haproxy");
    Some(super::RealServer::ready(
        "haproxy",
        child,
        port,
        dir,
        Duration::from_secs(10),
        None,
        answers,
    ))
}

/// Client connections haproxy accepts with global `maxconn {cap}` and one
/// frontend: exactly `cap` (measured by the reader's test against the real
/// server; the `stats socket` and server-side connections do not count).
pub fn allowed(cap: u64) -> u64 {
    cap
}

fn answers(addr: &SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET / HTTP/1.1\r\nHost: c1m\r\nConnection: close\r\n\r\n";
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.1 200")
}
