//! Why a ramp stopped short: the errno the connects failed with, read
//! together with what the kernel counted and what the server process holds,
//! turned into the limit behind it and the side it is on.

use std::collections::BTreeMap;

use crate::loadgen::protocol::{Side, Verdict};

/// The server process (and its children) as seen at the end of the ramp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFds {
    pub pid: u32,
    pub open_fds: u64,
    pub nofile_soft: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub failures: BTreeMap<String, u64>,
    /// Connections that went nowhere for the stall timeout, without errors.
    pub stalled: bool,
    pub client_nofile: u64,
    pub ports_per_ip: u64,
    pub source_ips: usize,
    /// Processes of the server at (or within a few fds of) their fd limit.
    pub servers_at_fd_limit: Vec<ServerFds>,
    /// Movement of `TcpExt.ListenOverflows` + `ListenDrops` during the run.
    pub listen_overflows: u64,
}

pub fn diagnose(e: &Evidence) -> Option<Verdict> {
    if let Some(server) = e.servers_at_fd_limit.first() {
        return Some(Verdict {
            side: Side::Server,
            errno: Some("EMFILE".into()),
            limit: "nofile".into(),
            explanation: format!(
                "the server (pid {}) holds {} fds of its limit of {} (RLIMIT_NOFILE): it \
                 cannot accept more (accept() fails with EMFILE), so new connections wait in \
                 its accept queue until they time out",
                server.pid, server.open_fds, server.nofile_soft
            ),
        });
    }
    let top = e
        .failures
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(name, _)| name.as_str());
    let verdict = |side, errno: &str, limit: &str, explanation: String| Verdict {
        side,
        errno: Some(errno.to_owned()),
        limit: limit.to_owned(),
        explanation,
    };
    let verdict = match top {
        Some("EMFILE") => verdict(
            Side::Client,
            "EMFILE",
            "nofile",
            format!(
                "the load process hit its fd limit ({}, RLIMIT_NOFILE); run more load \
                 processes (--processes) or raise the limit",
                e.client_nofile
            ),
        ),
        Some("ENFILE") => verdict(
            Side::Box,
            "ENFILE",
            "file_max",
            "the box ran out of file handles (fs.file-max)".into(),
        ),
        Some("EADDRNOTAVAIL") => verdict(
            Side::Client,
            "EADDRNOTAVAIL",
            "ephemeral_ports",
            format!(
                "no ephemeral port left: {} ports per (source IP, destination) x {} source \
                 IP(s); add source IPs (--source-ips) or widen net.ipv4.ip_local_port_range",
                e.ports_per_ip,
                e.source_ips.max(1)
            ),
        ),
        Some(errno @ ("ENOMEM" | "ENOBUFS")) => verdict(
            Side::Box,
            errno,
            "memory",
            "the kernel could not allocate socket memory (MemAvailable or net.ipv4.tcp_mem)".into(),
        ),
        Some("ECONNREFUSED") if e.listen_overflows > 0 => verdict(
            Side::Server,
            "ECONNREFUSED",
            "accept_backlog",
            format!(
                "the server's accept queue overflowed ({} ListenOverflows/ListenDrops) and the \
                 kernel refused connections",
                e.listen_overflows
            ),
        ),
        Some("ECONNREFUSED") => verdict(
            Side::Server,
            "ECONNREFUSED",
            "listener",
            "nothing listens on the target address (or it stopped listening)".into(),
        ),
        Some("ETIMEDOUT") | None if e.listen_overflows > 0 => verdict(
            Side::Server,
            top.unwrap_or("ETIMEDOUT"),
            "accept_backlog",
            format!(
                "the server is not accepting fast enough: its accept queue overflowed \
                 ({} ListenOverflows/ListenDrops), so handshakes were dropped",
                e.listen_overflows
            ),
        ),
        Some("ECONNRESET") => verdict(
            Side::Server,
            "ECONNRESET",
            "server_reset",
            "the server reset connections".into(),
        ),
        Some(other) => verdict(
            Side::Client,
            other,
            "unknown",
            format!("connects failed with {other}"),
        ),
        None if e.stalled => Verdict {
            side: Side::Server,
            errno: None,
            limit: "unknown".into(),
            explanation: "connections stopped completing without an error".into(),
        },
        None => return None,
    };
    Some(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_failure(errno: &str) -> Evidence {
        Evidence {
            failures: [(errno.to_owned(), 10)].into_iter().collect(),
            client_nofile: 20000,
            ports_per_ip: 28232,
            source_ips: 1,
            ..Evidence::default()
        }
    }

    #[test]
    fn each_errno_names_its_limit_and_side() {
        let cases = [
            ("EMFILE", Side::Client, "nofile"),
            ("ENFILE", Side::Box, "file_max"),
            ("EADDRNOTAVAIL", Side::Client, "ephemeral_ports"),
            ("ENOBUFS", Side::Box, "memory"),
            ("ECONNREFUSED", Side::Server, "listener"),
            ("ECONNRESET", Side::Server, "server_reset"),
        ];
        for (errno, side, limit) in cases {
            let v = diagnose(&with_failure(errno)).unwrap();
            assert_eq!((v.side, v.limit.as_str()), (side, limit), "{errno}");
            assert_eq!(v.errno.as_deref(), Some(errno));
        }
    }

    #[test]
    fn a_server_at_its_fd_limit_wins_over_client_symptoms() {
        let mut e = with_failure("ETIMEDOUT");
        e.servers_at_fd_limit.push(ServerFds {
            pid: 42,
            open_fds: 1000,
            nofile_soft: 1000,
        });
        let v = diagnose(&e).unwrap();
        assert_eq!((v.side, v.limit.as_str()), (Side::Server, "nofile"));
        assert!(v.explanation.contains("pid 42"));
        assert!(v.explanation.contains("EMFILE"));
    }

    #[test]
    fn timeouts_with_overflows_are_the_accept_backlog() {
        let mut e = with_failure("ETIMEDOUT");
        e.listen_overflows = 500;
        assert_eq!(diagnose(&e).unwrap().limit, "accept_backlog");
        let quiet = Evidence::default();
        assert_eq!(diagnose(&quiet), None);
    }
}
