//! A real nginx for end-to-end tests: one worker started as a child (`daemon
//! off`) from a temporary config with `worker_connections CAP` on a free
//! loopback port; every path Debian's nginx would write to (pid, logs, temp
//! dirs) points into the temp dir. Ended by pid (master, then workers) on
//! drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{TempDir, children_of};

pub const NGINX: &str = "/usr/sbin/nginx";
const WORKER_TITLE: &[u8] = b"nginx: worker process";

/// A running nginx, ended by pid and reaped, its temp dir removed, on drop.
pub struct Running {
    pub child: Child,
    /// The master: the pid to give c1m as `--pid` (its workers follow).
    pub pid: u32,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Running {
    /// The master's `nginx: worker process` children, by pid.
    pub fn workers(&self) -> Vec<u32> {
        children_of(self.pid)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(WORKER_TITLE))
            })
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM: the master ends its workers, then itself.
        let workers = self.workers();
        super::testing::stop(&mut self.child, Some(libc::SIGTERM), &workers);
    }
}

/// Start nginx with one worker and `worker_connections CAP`, and wait until
/// its worker runs and the port accepts. `None` (after saying "SKIPPED")
/// without nginx, unless `C1M_REQUIRE_KERNEL_TESTS=1`.
pub fn start(cap: u64) -> Option<Running> {
    if !Path::new(NGINX).exists() {
        super::skip(&format!(
            "{NGINX} is not installed (apt install nginx-light)"
        ));
        return None;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
    let dir = TempDir::new("nginx-e2e");
    let d = dir.0.display();
    let conf = dir.0.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log notice;\n\
             events {{\n    worker_connections {cap};\n}}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             \x20   server {{\n        listen {addr};\n        return 200 \"ok\\n\";\n    }}\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning nginx");
    let running = Running {
        pid: child.id(),
        child,
        addr,
        dir,
    };
    // The worker sets its title once its listeners are in its event loop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !running.workers().is_empty() && TcpStream::connect(addr).is_ok() {
            // Let nginx free the probe's slot before anyone counts.
            std::thread::sleep(Duration::from_millis(200));
            return Some(running);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(running.dir.0.join("error.log")).unwrap_or_default();
    panic!("nginx did not start a worker on {addr}: {log}");
}

/// Client connections the nginx `start` runs holds with `worker_connections
/// cap`, as measured and as the reader counts: its one worker gives a slot
/// to its listener and one to its channel to the master, so cap - 2 (198
/// for 200). Past it, a connection in the middle of a request is dropped
/// right after accept; idle ones (no request yet, or keep-alive) make nginx
/// close its oldest idle connections instead.
pub fn allowed(cap: u64) -> u64 {
    cap - 2
}

/// `count` clients in the middle of a request (its first line sent, the
/// headers not finished), as slow or busy HTTP clients are: nginx cannot
/// reuse their slots, so once they fill it, it drops new connections right
/// after accepting them. Paced, so nginx reads each one's request line
/// before the next arrives: near its cap nginx closes connections whose
/// request it has not read yet. Panics if nginx does not hold them all.
pub fn busy_clients(addr: SocketAddr, count: u64) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut clients: Vec<TcpStream> = Vec::new();
    while (clients.len() as u64) < count {
        assert!(
            Instant::now() < deadline,
            "nginx held only {} of {count} busy clients",
            clients.len()
        );
        for _ in clients.len() as u64..count {
            let mut stream = TcpStream::connect(addr).expect("connecting to nginx");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: c1m\r\n")
                .expect("sending a request line to nginx");
            clients.push(stream);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        clients.retain(still_held);
    }
    clients
}

/// Whether nginx still holds `stream`: no EOF, no reset, no answer.
fn still_held(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let held = matches!(
        stream.read(&mut [0u8; 256]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    held
}
