//! A real haproxy for end-to-end tests: started in master-worker mode (as
//! Debian's systemd unit runs it) from a temporary config whose global
//! `maxconn` is the cap, serving `200 ok` to HTTP requests on a free
//! loopback port; its master, workers and directory go away on drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const BINARY: &str = "/usr/sbin/haproxy";

pub struct Running {
    pub child: Child,
    /// The master's pid, to give c1m as `--pid` (the worker holding the
    /// connections is its child).
    pub pid: u32,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        for pid in children_of(self.pid) {
            // SAFETY: signalling a worker this test started, by pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start haproxy with global `maxconn {cap}`; `None` (after saying
/// "SKIPPED") when it is not installed, unless C1M_REQUIRE_KERNEL_TESTS=1,
/// where that panics.
pub fn start(cap: u64) -> Option<Running> {
    if !std::path::Path::new(BINARY).exists() {
        let why = format!("haproxy: no {BINARY} (apt-get install haproxy)");
        if std::env::var("C1M_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
            panic!("{why}, and C1M_REQUIRE_KERNEL_TESTS=1 forbids skipping");
        }
        eprintln!("SKIPPED {why}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("c1m-haproxy-e2e-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("haproxy.cfg");
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

/// Pids whose parent is `parent`, from /proc/*/stat.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
