//! The host overview (`c1m-daemon top`, `GET /api/v1/overview`): from one
//! walk of every process's socket fds and of the namespace's ownerless
//! sockets, and what `/proc` says of each process, the rows: per process
//! its connections by state, listening ports, the TIME_WAIT its listeners
//! leave, kernel buffer bytes, fds against RLIMIT_NOFILE and the nearest
//! limit. Pure: unit-tested with plain data.
//!
//! Attribution of sockets no process holds an fd for (timewait, request
//! sockets, connections in an accept queue, orphans): by local port to the
//! process that listens on it (the server side of an accepted connection;
//! when several processes hold listeners on the port, the lowest pid).
//! The rest, on ports nobody listens on (the remains of dialled
//! connections, or of a listener now gone), go to the `host` row.

use std::collections::{BTreeMap, BTreeSet};

use c1m_common::{
    TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_TIME_WAIT,
    tcp_state_name,
};
use serde::Serialize;

/// A TCP socket a process holds an fd for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSeen {
    pub pid: u32,
    /// TCP state (`tcp_states.h` numbering).
    pub state: u32,
    pub local_port: u16,
    /// Network namespace inode number (0: unknown).
    pub netns: u32,
    /// Receive allocated + send queued + forward alloc.
    pub buffer_bytes: u64,
}

/// A socket of this namespace no process holds an fd for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerlessSeen {
    pub state: u32,
    pub local_port: u16,
}

/// One walk's findings.
#[derive(Debug, Clone, Default)]
pub struct OverviewWalk {
    pub sockets: Vec<SocketSeen>,
    /// Open files per process (every process with at least one).
    pub files: BTreeMap<u32, u64>,
    pub ownerless: Vec<OwnerlessSeen>,
}

/// What `/proc` says of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub comm: String,
    /// File name of `/proc/PID/exe` (`None`: unreadable).
    pub exe: Option<String>,
    /// Its cgroup path, `None` in the root cgroup.
    pub cgroup: Option<String>,
    /// RLIMIT_NOFILE soft limit (`None`: unreadable; u64::MAX: unlimited).
    pub nofile: Option<u64>,
}

/// The overview document (`top --json`, `GET /api/v1/overview`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// Inode number of the network namespace shown.
    pub netns: Option<u32>,
    /// Processes with TCP sockets in it, most connections first.
    pub processes: Vec<ProcessRow>,
    /// Sockets no process holds and no listener explains.
    pub host: HostRow,
    pub totals: Totals,
    /// Processes whose sockets are all in other network namespaces
    /// (containers with their own): left out.
    pub other_namespaces: OtherNamespaces,
    /// How sockets without an owner are attributed.
    pub attribution: &'static str,
    /// How long the walk and the `/proc` reads took, and c1m's own usage.
    pub daemon: OverviewDaemon,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    /// Sockets carrying a connection: every state but LISTEN, CLOSE,
    /// TIME_WAIT and SYN_RECV (a handshake not yet complete); those in its
    /// listeners' accept queues count.
    pub connections: u64,
    /// Sockets by TCP state: its fds' sockets, and those attributed to it
    /// by its listening ports (TIME_WAIT, SYN_RECV, accept queue, orphans).
    /// LISTEN is in `listening`.
    pub by_state: BTreeMap<String, u64>,
    /// Connections on a port some process listens on (accepted).
    pub accepted: u64,
    /// Connections from other local ports (dialled out).
    pub dialled: u64,
    /// Ports it listens on (IPv4 and IPv6 together).
    pub listening: Vec<u16>,
    /// Connections waiting in its listeners' accept queues.
    pub accept_queue: u64,
    /// TIME_WAIT sockets on its listening ports (it closed first).
    pub time_wait: u64,
    /// Socket buffer bytes of its fds' sockets (receive allocated + send
    /// queued + forward alloc).
    pub kernel_buffer_bytes: u64,
    /// Open files, and its RLIMIT_NOFILE soft limit.
    pub fds: u64,
    pub nofile: Option<u64>,
    /// The per-process limit that would stop its next connections first.
    pub nearest_limit: Option<NearestLimit>,
    /// The command that watches it.
    pub watch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearestLimit {
    /// A limit name as in the report's `ceiling.limits` (`nofile`).
    pub name: &'static str,
    pub source: String,
    pub value: u64,
    pub used: u64,
    /// More connections it allows (each takes one fd).
    pub headroom: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostRow {
    pub by_state: BTreeMap<String, u64>,
    pub time_wait: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub processes: u64,
    pub connections: u64,
    pub time_wait: u64,
    /// TCP sockets seen: fds' sockets (a socket shared by N processes
    /// counts N times) plus ownerless ones.
    pub sockets: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OtherNamespaces {
    pub processes: u64,
    pub sockets: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OverviewDaemon {
    pub refresh_ms: f64,
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

pub const ATTRIBUTION: &str = "Sockets no process holds (TIME_WAIT, SYN_RECV, connections in an \
    accept queue, orphans) count for the process listening on their local port (the lowest pid \
    when several do); the rest are the host's.";

/// The rows of one walk. `netns`: the namespace shown (`None`: all);
/// `info`: what `/proc` says of each pid (a pid missing from it exited
/// since the walk and is left out).
pub fn build(
    walk: &OverviewWalk,
    netns: Option<u32>,
    info: &BTreeMap<u32, ProcessInfo>,
) -> Overview {
    let in_view = |s: &SocketSeen| netns.is_none_or(|ns| s.netns == 0 || s.netns == ns);
    let mut rows: BTreeMap<u32, ProcessRow> = BTreeMap::new();
    let mut other: BTreeMap<u32, u64> = BTreeMap::new();
    for socket in &walk.sockets {
        if !in_view(socket) {
            *other.entry(socket.pid).or_default() += 1;
            continue;
        }
        if !info.contains_key(&socket.pid) {
            continue;
        }
        let row = rows.entry(socket.pid).or_default();
        if socket.state == TCP_LISTEN {
            row.listening.push(socket.local_port);
        }
    }
    let mut listening_ports: BTreeMap<u16, u32> = BTreeMap::new();
    for (pid, row) in &mut rows {
        row.listening.sort_unstable();
        row.listening.dedup();
        for port in &row.listening {
            // Ascending pids: the first is the lowest.
            listening_ports.entry(*port).or_insert(*pid);
        }
    }
    let mut totals = Totals::default();
    for socket in walk.sockets.iter().filter(|s| in_view(s)) {
        let Some(row) = rows.get_mut(&socket.pid) else {
            continue;
        };
        totals.sockets += 1;
        row.kernel_buffer_bytes += socket.buffer_bytes;
        if socket.state == TCP_LISTEN {
            continue;
        }
        *row.by_state.entry(state_name(socket.state)).or_default() += 1;
        if carries_connection(socket.state) {
            if listening_ports.contains_key(&socket.local_port) {
                row.accepted += 1;
            } else {
                row.dialled += 1;
            }
        }
    }
    let mut host = HostRow::default();
    for socket in &walk.ownerless {
        totals.sockets += 1;
        let name = state_name(socket.state);
        let owner = listening_ports
            .get(&socket.local_port)
            .and_then(|pid| rows.get_mut(pid));
        match owner {
            Some(row) => {
                *row.by_state.entry(name).or_default() += 1;
                if socket.state == TCP_TIME_WAIT {
                    row.time_wait += 1;
                } else if socket.state == TCP_ESTABLISHED {
                    row.accept_queue += 1;
                    row.accepted += 1;
                } else if carries_connection(socket.state) {
                    row.accepted += 1;
                }
            }
            None => {
                *host.by_state.entry(name).or_default() += 1;
                if socket.state == TCP_TIME_WAIT {
                    host.time_wait += 1;
                }
            }
        }
    }
    let mut processes: Vec<ProcessRow> = rows
        .into_iter()
        .map(|(pid, mut row)| {
            let known = &info[&pid];
            row.pid = pid;
            row.comm = known.comm.clone();
            row.exe = known.exe.clone();
            row.cgroup = known.cgroup.clone();
            row.connections = row
                .by_state
                .iter()
                .filter(|(name, _)| carries_connection_name(name))
                .map(|(_, n)| n)
                .sum();
            row.fds = walk.files.get(&pid).copied().unwrap_or(0);
            row.nofile = known.nofile;
            row.nearest_limit = nearest_limit(pid, row.fds, known.nofile);
            row.watch = format!("c1m-daemon run --pid {pid}");
            totals.connections += row.connections;
            totals.time_wait += row.time_wait;
            row
        })
        .collect();
    processes.sort_by(|a, b| {
        (b.connections, b.time_wait, a.pid).cmp(&(a.connections, a.time_wait, b.pid))
    });
    totals.processes = processes.len() as u64;
    totals.time_wait += host.time_wait;
    let shown: BTreeSet<u32> = processes.iter().map(|p| p.pid).collect();
    let other_namespaces = OtherNamespaces {
        processes: other.keys().filter(|pid| !shown.contains(pid)).count() as u64,
        sockets: other.values().sum(),
    };
    Overview {
        netns,
        processes,
        host,
        totals,
        other_namespaces,
        attribution: ATTRIBUTION,
        daemon: OverviewDaemon::default(),
    }
}

/// The kernel's name, but request sockets (NEW_SYN_RECV) are the
/// SYN_RECV of `ss` and of most readers.
fn state_name(state: u32) -> String {
    if state == TCP_NEW_SYN_RECV {
        tcp_state_name(TCP_SYN_RECV).to_owned()
    } else {
        tcp_state_name(state).to_owned()
    }
}

fn carries_connection(state: u32) -> bool {
    !matches!(
        state,
        TCP_LISTEN | TCP_CLOSE | TCP_TIME_WAIT | TCP_NEW_SYN_RECV | TCP_SYN_RECV
    )
}

fn carries_connection_name(name: &str) -> bool {
    !matches!(name, "LISTEN" | "CLOSE" | "TIME_WAIT" | "SYN_RECV")
}

/// The per-process limit on its count of connections: each takes an fd,
/// so RLIMIT_NOFILE less the files already open. For example a process
/// with 20,000 allowed and 12,345 open can take 7,655 more.
fn nearest_limit(pid: u32, fds: u64, nofile: Option<u64>) -> Option<NearestLimit> {
    let nofile = nofile?;
    Some(NearestLimit {
        name: "nofile",
        source: format!("RLIMIT_NOFILE of pid {pid} (/proc/{pid}/limits, soft)"),
        value: nofile,
        used: fds,
        headroom: nofile.saturating_sub(fds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(pid: u32, state: u32, local_port: u16) -> SocketSeen {
        SocketSeen {
            pid,
            state,
            local_port,
            netns: 7,
            buffer_bytes: 100,
        }
    }

    fn info(comm: &str) -> ProcessInfo {
        ProcessInfo {
            comm: comm.into(),
            exe: Some(comm.into()),
            cgroup: None,
            nofile: Some(1024),
        }
    }

    fn two_servers_and_a_client() -> OverviewWalk {
        let mut sockets = vec![
            socket(10, TCP_LISTEN, 8080),
            socket(20, TCP_LISTEN, 9090),
            socket(21, TCP_LISTEN, 9090),
        ];
        sockets.extend((0..3).map(|_| socket(10, TCP_ESTABLISHED, 8080)));
        sockets.push(socket(10, 8 /* CLOSE_WAIT */, 8080));
        sockets.extend((0..2).map(|_| socket(21, TCP_ESTABLISHED, 9090)));
        sockets.extend((0..5).map(|i| socket(30, TCP_ESTABLISHED, 40000 + i)));
        // In another namespace (a container): left out.
        sockets.push(SocketSeen {
            netns: 99,
            ..socket(40, TCP_ESTABLISHED, 80)
        });
        OverviewWalk {
            sockets,
            files: [(10, 40), (20, 5), (21, 6), (30, 1000)].into(),
            ownerless: vec![
                OwnerlessSeen {
                    state: TCP_TIME_WAIT,
                    local_port: 8080,
                },
                OwnerlessSeen {
                    state: TCP_TIME_WAIT,
                    local_port: 9090,
                },
                OwnerlessSeen {
                    state: TCP_TIME_WAIT,
                    local_port: 41000,
                },
                OwnerlessSeen {
                    state: TCP_NEW_SYN_RECV,
                    local_port: 8080,
                },
                OwnerlessSeen {
                    state: TCP_ESTABLISHED,
                    local_port: 8080,
                },
            ],
        }
    }

    #[test]
    fn rows_count_states_ports_and_attribute_ownerless_sockets_by_listening_port() {
        let walk = two_servers_and_a_client();
        let info: BTreeMap<u32, ProcessInfo> = [
            (10, info("nginx")),
            (20, info("echo")),
            (21, info("echo")),
            (30, info("load")),
            (40, info("other")),
        ]
        .into();
        let overview = build(&walk, Some(7), &info);
        let pids: Vec<u32> = overview.processes.iter().map(|p| p.pid).collect();
        // Most connections first: 5 (30, 5 dialled), 5 (10: 3 + CLOSE_WAIT
        // + 1 queued; its TIME_WAIT breaks the tie), 2 (21), 0 (20).
        assert_eq!(pids, [10, 30, 21, 20]);
        let server = &overview.processes[0];
        assert_eq!(server.connections, 5);
        assert_eq!(server.by_state["ESTABLISHED"], 4);
        assert_eq!(server.by_state["CLOSE_WAIT"], 1);
        assert_eq!(server.by_state["SYN_RECV"], 1);
        assert_eq!(server.by_state["TIME_WAIT"], 1);
        assert_eq!((server.accepted, server.dialled), (5, 0));
        assert_eq!(server.accept_queue, 1);
        assert_eq!(server.time_wait, 1);
        assert_eq!(server.listening, [8080]);
        assert_eq!(server.kernel_buffer_bytes, 500);
        assert_eq!(server.watch, "c1m-daemon run --pid 10");
        let nearest = server.nearest_limit.as_ref().unwrap();
        assert_eq!((nearest.name, nearest.headroom), ("nofile", 1024 - 40));
        let client = &overview.processes[1];
        assert_eq!(
            (client.connections, client.dialled, client.accepted),
            (5, 5, 0)
        );
        assert!(client.listening.is_empty());
        // Port 9090 has listeners in 20 and 21: its TIME_WAIT goes to 20.
        assert_eq!(overview.processes[3].time_wait, 1);
        assert_eq!(overview.processes[2].time_wait, 0);
        assert_eq!(overview.processes[2].accepted, 2);
        // The dialled connection's TIME_WAIT is the host's.
        assert_eq!(overview.host.time_wait, 1);
        assert_eq!(overview.totals.time_wait, 3);
        assert_eq!(overview.totals.connections, 12);
        assert_eq!(overview.totals.processes, 4);
        assert_eq!(overview.other_namespaces.processes, 1);
        assert_eq!(overview.other_namespaces.sockets, 1);
    }

    #[test]
    fn a_process_gone_since_the_walk_is_left_out() {
        let walk = two_servers_and_a_client();
        let info: BTreeMap<u32, ProcessInfo> = [(10, info("nginx"))].into();
        let overview = build(&walk, Some(7), &info);
        assert_eq!(overview.processes.len(), 1);
        // Its listener is unknown now: the 9090 TIME_WAIT is the host's.
        assert_eq!(overview.host.time_wait, 2);
    }

    #[test]
    fn an_unreadable_limit_gives_no_nearest_limit() {
        assert_eq!(nearest_limit(1, 10, None), None);
        assert_eq!(nearest_limit(1, 30, Some(20)).unwrap().headroom, 0);
    }
}
