//! Application limits: the caps real servers put on their own connection
//! count, read where each server really gets them. Every real server caps
//! itself (nginx `worker_connections`, redis `maxclients`, haproxy
//! `maxconn`, memcached `-c`, PostgreSQL/MySQL `max_connections`) before
//! any kernel limit, so without these the ceiling is right only for c1m's
//! own echo server.
//!
//! A server is identified by its executable (`/proc/PID/exe`), never by its
//! process name (which servers rewrite: `nginx: worker process`,
//! `redis-server *:6379`). Each reader gets the target's processes of its
//! kind and returns the limits it found, or says why it could not read
//! them (the analysis then shows the limit as unknown, never as absent).

pub mod haproxy;
pub mod memcached;
pub mod mysql;
pub mod nginx;
pub mod postgresql;
pub mod redis;
#[cfg(test)]
mod testing;

use std::{net::SocketAddr, path::PathBuf};

use serde::Serialize;

/// One target process, as the readers need it.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    pub pid: u32,
    /// Parent pid: tells nginx's master from its workers, PostgreSQL's
    /// postmaster from its backends.
    pub ppid: u32,
    /// `/proc/PID/exe`, resolved.
    pub exe: PathBuf,
    /// `/proc/PID/cmdline`, split on NUL (servers may have rewritten it:
    /// nginx shows `nginx: master process /usr/sbin/nginx -c FILE`).
    pub cmdline: Vec<String>,
    /// `/proc/PID/cwd`, for relative paths in the command line.
    pub cwd: Option<PathBuf>,
    /// Addresses the whole target listens on (TCP), e.g. to ask redis
    /// `CONFIG GET maxclients` on its own port.
    pub listening: Vec<SocketAddr>,
}

/// A limit a server puts on its own connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppLimit {
    /// Stable name: `nginx.worker_connections`, `redis.maxclients`,
    /// `haproxy.maxconn`, `haproxy.frontend_maxconn`,
    /// `memcached.conn_limit`, `postgresql.max_connections`,
    /// `mysql.max_connections`.
    pub name: &'static str,
    /// The setting as the server applies it (e.g. worker_connections 3000).
    pub setting: u64,
    /// Client connections the server accepts under it, as exactly as the
    /// server counts (e.g. nginx: 3000 x 2 workers minus the connection
    /// slots its listeners take in each worker).
    pub max_connections: u64,
    /// Where it is set, precisely: `/etc/nginx/nginx.conf:12`,
    /// `command line -c 1200`, `CONFIG GET maxclients on 127.0.0.1:6379`,
    /// `compiled-in default`.
    pub source: String,
    /// One sentence for a user: what the server counts against it, e.g.
    /// "worker_connections 3000 x 2 workers; nginx counts listeners and
    /// upstream connections against it too".
    pub explanation: String,
    /// The exact change: "set `worker_connections 6000;` at
    /// /etc/nginx/nginx.conf:12, then `nginx -s reload`".
    pub remedy: String,
}

/// A server c1m knows, found among the target's processes, whose limit
/// could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{server} (pid {pid}): cannot read its connection limit: {why}")]
pub struct AppLimitError {
    pub server: &'static str,
    pub pid: u32,
    /// What failed and what to do, e.g. "cannot read /etc/nginx/nginx.conf:
    /// permission denied; run c1m-daemon as root".
    pub why: String,
}

/// What the readers found for the target: limits, and servers whose limit
/// could not be read (each shown as unknown in the ceiling).
#[derive(Debug, Default)]
pub struct AppLimits {
    pub limits: Vec<AppLimit>,
    pub unreadable: Vec<AppLimitError>,
}

/// Every known server among `processes`, each read once.
pub fn read_app_limits(processes: &[ServerProcess]) -> AppLimits {
    let mut found = AppLimits::default();
    let readers: [(&'static str, Reader); 6] = [
        ("nginx", nginx::read),
        ("redis", redis::read),
        ("haproxy", haproxy::read),
        ("memcached", memcached::read),
        ("postgresql", postgresql::read),
        ("mysql", mysql::read),
    ];
    for (server, read) in readers {
        let mine: Vec<&ServerProcess> = processes
            .iter()
            .filter(|p| server_of(&p.exe) == Some(server))
            .collect();
        if mine.is_empty() {
            continue;
        }
        match read(&mine) {
            Ok(limits) => found.limits.extend(limits),
            Err(err) => found.unreadable.push(err),
        }
    }
    found
}

type Reader = fn(&[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError>;

/// Which known server an executable is, by its file name.
pub fn server_of(exe: &std::path::Path) -> Option<&'static str> {
    let name = exe.file_name()?.to_str()?;
    // A deleted (upgraded in place) binary reads "nginx (deleted)".
    let name = name.trim_end_matches(" (deleted)");
    match name {
        "nginx" => Some("nginx"),
        // Debian's /usr/bin/redis-server is a symlink to redis-check-rdb
        // (one binary that acts by the name it was started as).
        "redis-server" | "redis-check-rdb" | "valkey-server" => Some("redis"),
        "haproxy" => Some("haproxy"),
        "memcached" => Some("memcached"),
        "postgres" | "postmaster" => Some("postgresql"),
        "mysqld" | "mariadbd" => Some("mysql"),
        _ => None,
    }
}

/// The target's processes as the readers need them; processes that
/// vanished meanwhile are left out.
pub fn server_processes(pids: &[u32], listening: &[SocketAddr]) -> Vec<ServerProcess> {
    pids.iter()
        .filter_map(|&pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()?
                .split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let ppid = crate::system::process::read_stat(pid).ok()?.ppid.max(0) as u32;
            Some(ServerProcess {
                pid,
                ppid,
                exe,
                cmdline,
                cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
                listening: listening.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_known_by_their_executable() {
        assert_eq!(server_of("/usr/sbin/nginx".as_ref()), Some("nginx"));
        assert_eq!(
            server_of("/usr/lib/postgresql/15/bin/postgres".as_ref()),
            Some("postgresql")
        );
        assert_eq!(server_of("/usr/bin/redis-server".as_ref()), Some("redis"));
        assert_eq!(
            server_of("/usr/bin/redis-check-rdb".as_ref()),
            Some("redis")
        );
        assert_eq!(
            server_of("/usr/sbin/nginx (deleted)".as_ref()),
            Some("nginx")
        );
        assert_eq!(server_of("/usr/bin/redis-cli".as_ref()), None);
    }
}
