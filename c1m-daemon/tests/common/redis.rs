//! A real redis for end-to-end tests: started as a child on a free loopback
//! port with `--maxclients CAP` and no persistence, its working directory
//! (and log) in a temp dir, ended by pid on drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use super::TempDir;

pub const REDIS: &str = "/usr/bin/redis-server";

pub type Running = super::RealServer;

/// Start `redis-server --port PORT --bind 127.0.0.1 --maxclients CAP --save
/// "" --appendonly no --dir TMP`, and wait until it answers PING. `None`
/// (after saying "SKIPPED") without redis, unless
/// `C1M_REQUIRE_KERNEL_TESTS=1`.
pub fn start(cap: u64) -> Option<Running> {
    if !Path::new(REDIS).exists() {
        super::skip(&format!(
            "{REDIS} is not installed (apt install redis-server)"
        ));
        return None;
    }
    let port = super::free_port();
    let dir = TempDir::new("redis-e2e");
    let child = Command::new(REDIS)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--maxclients", &cap.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir.0)
        .arg("--logfile")
        .arg(dir.0.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning redis-server");
    Some(super::RealServer::ready(
        "redis",
        child,
        port,
        dir,
        Duration::from_secs(5),
        Some("redis.log"),
        answers,
    ))
}

fn answers(addr: &SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 8];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
}

/// Clients redis serves with `--maxclients cap`: exactly cap, measured
/// (redis 7.0.15: the 51st connection with `--maxclients 50` gets `-ERR max
/// number of clients reached` and is closed). It counts every connection
/// from its accept, silent ones included, and no fds of its own: those are
/// the 32 it keeps beyond maxclients in its fd limit.
pub fn allowed(cap: u64) -> u64 {
    cap
}
