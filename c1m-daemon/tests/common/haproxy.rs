//! A real haproxy for end-to-end tests: started in master-worker mode (as
//! Debian's systemd unit runs it) from a temporary config whose global
//! `maxconn` is the cap, serving `200 ok` to HTTP requests on a free
//! loopback port; its master, workers and directory go away on drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{TempDir, children_of};

pub const BINARY: &str = "/usr/sbin/haproxy";

pub struct Running {
    pub child: Child,
    /// The master's pid, to give c1m as `--pid` (the worker holding the
    /// connections is its child).
    pub pid: u32,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let workers = children_of(self.pid);
        super::testing::stop(&mut self.child, None, &workers);
    }
}

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
    let running = Running {
        pid: child.id(),
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers(&running.addr) {
        assert!(
            Instant::now() < deadline,
            "haproxy did not answer on {}",
            running.addr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(running)
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
