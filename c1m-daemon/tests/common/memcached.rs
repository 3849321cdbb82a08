//! A real memcached for end-to-end tests: started as a child on a free
//! loopback port with `-c CAP`, ended by pid on drop. memcached has no
//! config file; the temp dir holds its stderr, shown if it fails to start.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use super::TempDir;

pub const MEMCACHED: &str = "/usr/bin/memcached";
/// Worker threads (`-t`): each keeps 4 fds (an eventfd, an epoll fd, a pipe).
pub const THREADS: u64 = 4;

pub type Running = super::RealServer;

/// Start `memcached -l 127.0.0.1 -p PORT -U 0 -c CAP -t 4 -u root`, and
/// wait until it answers. `None` (after saying "SKIPPED") without
/// memcached, unless `C1M_REQUIRE_KERNEL_TESTS=1`.
pub fn start(cap: u64) -> Option<Running> {
    if !Path::new(MEMCACHED).exists() {
        super::skip(&format!(
            "{MEMCACHED} is not installed (apt install memcached)"
        ));
        return None;
    }
    let port = super::free_port();
    let dir = TempDir::new("memcached-e2e");
    let log = std::fs::File::create(dir.0.join("memcached.log")).unwrap();
    let mut command = Command::new(MEMCACHED);
    command
        .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
        .args([
            "-c",
            &cap.to_string(),
            "-t",
            &THREADS.to_string(),
            "-u",
            "root",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // Fds the test harness inherited (cargo's jobserver pipe...) would
    // take memcached's fd slots and make `allowed` wrong.
    // SAFETY: only fcntl, which is async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("spawning memcached");
    let running = super::RealServer::ready(
        "memcached",
        child,
        port,
        dir,
        Duration::from_secs(5),
        Some("memcached.log"),
        answers,
    );
    // Let memcached close the probe's fd before anyone counts.
    std::thread::sleep(Duration::from_millis(200));
    Some(running)
}

fn answers(addr: &SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 8];
    stream.write_all(b"version\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"VERSION"))
}

/// Clients the memcached `start` runs (1.6.18, `-t 4`, one listener, no
/// inherited fds) serves with `-c cap`: it keeps 23 fds for itself (3
/// stdio, an epoll fd and a pipe for its main loop, an eventfd, an epoll fd
/// and a pipe per thread, 1 listener) and answers `ERROR Too many open
/// connections` to the connection that gets fd cap - 1, as measured and as
/// the reader counts: cap - 1 - 23 (176 for `-c 200`).
pub fn allowed(cap: u64) -> u64 {
    cap - 1 - (3 + 3 + 4 * THREADS + 1)
}
