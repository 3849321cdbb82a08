//! The target process as `/proc` shows it: resolving a user's pid, telling
//! whether it is still the same process (pids are reused), and finding the
//! ports it listens on.

use std::collections::BTreeMap;

use procfs::{
    FromRead as _, ProcError,
    net::TcpState,
    process::{FDTarget, Process, Stat},
};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no process with pid {pid}; check the server's pid with `pgrep -f <name>` or `ps -e`")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} has already exited; start the server and pass its new pid")]
    Exited { pid: u32 },
    #[error("cannot read /proc/{pid}: {source}; run c1m-daemon as root or with CAP_SYS_PTRACE")]
    Unreadable { pid: u32, source: ProcError },
}

/// Classify a `/proc` read error: a vanished entry means no such process
/// (when resolving what the user typed) or that it exited (later).
pub fn proc_error(pid: u32, resolving: bool) -> impl Fn(ProcError) -> TargetError + Copy {
    move |source| match source {
        ProcError::NotFound(_) if resolving => TargetError::NoSuchProcess { pid },
        ProcError::NotFound(_) => TargetError::Exited { pid },
        source => TargetError::Unreadable { pid, source },
    }
}

/// The bytes of a `/proc` file, with the errors procfs gives: a vanished
/// entry is `NotFound` (the process exited), a refused one
/// `PermissionDenied`. For the files c1m parses itself before procfs does.
pub fn read_proc_file(path: String) -> Result<Vec<u8>, ProcError> {
    let path = std::path::PathBuf::from(path);
    std::fs::read(&path).map_err(|err| match err.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => ProcError::NotFound(Some(path)),
        Some(libc::EACCES | libc::EPERM) => ProcError::PermissionDenied(Some(path)),
        _ => ProcError::Io(err, Some(path)),
    })
}

/// `/proc/<pid>/stat`, parsed by procfs after [`parse_stat`]'s check.
pub fn read_stat(pid: u32) -> Result<Stat, ProcError> {
    parse_stat(&read_proc_file(format!("/proc/{pid}/stat"))?)
}

/// The text of a `/proc/<pid>/stat`, parsed by procfs once its shape is
/// checked: procfs 0.18 slices around `comm`'s parentheses and panics
/// (found by fuzzing) when they are missing or out of order. The kernel
/// never writes such text, but nothing c1m reads may make it panic.
pub fn parse_stat(bytes: &[u8]) -> Result<Stat, ProcError> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.trim();
    let shaped = match (line.find('('), line.rfind(')')) {
        (Some(open), Some(close)) => {
            open >= 2
                && close > open
                && line.is_char_boundary(open - 1)
                && line.get(close + 2..).is_some()
        }
        _ => false,
    };
    if !shaped {
        return Err(ProcError::Other(format!(
            "not the shape of /proc/<pid>/stat (`PID (COMM) STATE ...`): {:?}",
            line.chars().take(64).collect::<String>()
        )));
    }
    Stat::from_read(line.as_bytes())
}

/// A process identified by its pid and start time, so a reused pid is not
/// mistaken for the process the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProcess {
    pub tgid: u32,
    /// `starttime` from `/proc/<pid>/stat`, in clock ticks since boot.
    pub start_ticks: u64,
    pub comm: String,
}

impl TargetProcess {
    /// Resolve what the user typed: a process id, or a thread id that is
    /// mapped to its process.
    pub fn resolve(pid: u32) -> Result<TargetProcess, TargetError> {
        let map_err = proc_error(pid, true);
        let process = Process::new(pid as i32).map_err(map_err)?;
        let tgid = process.status().map_err(map_err)?.tgid as u32;
        let stat = read_stat(tgid).map_err(map_err)?;
        if matches!(stat.state, 'Z' | 'X') {
            return Err(TargetError::Exited { pid });
        }
        Ok(TargetProcess {
            tgid,
            start_ticks: stat.starttime,
            comm: stat.comm,
        })
    }

    /// Resolve every pid the user named, stopping at the first bad one.
    pub fn resolve_all(pids: &[u32]) -> Result<Vec<TargetProcess>, TargetError> {
        pids.iter()
            .map(|&pid| TargetProcess::resolve(pid))
            .collect()
    }

    /// Whether the process still runs (and is not a new one with a reused pid).
    pub fn is_alive(&self) -> bool {
        read_stat(self.tgid).is_ok_and(|stat| {
            stat.starttime == self.start_ticks && stat.state != 'Z' && stat.state != 'X'
        })
    }

    /// Local ports of the TCP sockets this process has in LISTEN, with how
    /// many listeners share each port (SO_REUSEPORT), read from its fds and
    /// its own network namespace's `/proc/<pid>/net/tcp{,6}`.
    pub fn listening_ports(&self) -> Result<BTreeMap<u16, u64>, TargetError> {
        let pid = self.tgid;
        let map_err = proc_error(pid, false);
        let process = Process::new(pid as i32).map_err(map_err)?;
        let socket_inodes: std::collections::HashSet<u64> = process
            .fd()
            .map_err(map_err)?
            .filter_map(|fd| match fd.ok()?.target {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect();
        let mut ports = BTreeMap::new();
        let entries = process
            .tcp()
            .map_err(map_err)?
            .into_iter()
            .chain(process.tcp6().unwrap_or_default());
        for entry in entries {
            if entry.state == TcpState::Listen && socket_inodes.contains(&entry.inode) {
                *ports.entry(entry.local_address.port()).or_insert(0) += 1;
            }
        }
        Ok(ports)
    }
}

/// The TCP addresses `pid`'s network namespace listens on (from its own
/// `/proc/<pid>/net/tcp{,6}`), a wildcard address given as loopback so a
/// reader can connect to it.
pub fn listening_addresses(pid: u32) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let Ok(process) = Process::new(pid as i32) else {
        return Vec::new();
    };
    let entries = process
        .tcp()
        .unwrap_or_default()
        .into_iter()
        .chain(process.tcp6().unwrap_or_default());
    let mut addresses: Vec<SocketAddr> = entries
        .filter(|e| e.state == TcpState::Listen)
        .map(|e| {
            let ip = match e.local_address.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            SocketAddr::new(ip, e.local_address.port())
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Every process descending from `root` (children, grandchildren...), as
/// `(pid, parent pid)`, from the parent pids of all processes.
pub fn descendants(root: u32) -> Vec<(u32, u32)> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = all
        .filter_map(|p| read_stat(p.ok()?.pid as u32).ok())
        .map(|stat| (stat.pid as u32, stat.ppid as u32))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && pid != root {
                found.push((pid, parent));
                frontier.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_text_of_the_wrong_shape_is_an_error_not_a_panic() {
        // Inputs the fuzzer found to panic procfs's parser.
        for bad in [
            &b"765 43)1 4( 5 1 20\xff3 0"[..],
            b"(",
            b"1 (x)",
            b"\xc3\xa9(x) S 1",
            b"",
        ] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
        let me = std::fs::read("/proc/self/stat").unwrap();
        assert_eq!(parse_stat(&me).unwrap().pid as u32, std::process::id());
        // A comm with parentheses and spaces in it is fine.
        let odd = b"42 (a) (b c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 99 \
                    1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let stat = parse_stat(odd).unwrap();
        assert_eq!((stat.comm.as_str(), stat.num_threads), ("a) (b c", 3));
    }

    #[test]
    fn resolves_this_process() {
        let me = TargetProcess::resolve(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        assert!(me.is_alive());
    }

    #[test]
    fn a_missing_pid_says_how_to_find_the_right_one() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = TargetProcess::resolve(u32::MAX / 2).unwrap_err();
        assert!(matches!(err, TargetError::NoSuchProcess { .. }));
        assert!(err.to_string().contains("pgrep"), "{err}");
    }

    #[test]
    fn a_reused_pid_is_not_the_same_process() {
        let mut me = TargetProcess::resolve(std::process::id()).unwrap();
        me.start_ticks += 1;
        assert!(!me.is_alive());
    }

    #[test]
    fn finds_a_child_among_descendants() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.contains(&(child.id(), std::process::id())),
            "{found:?}"
        );
    }

    #[test]
    fn finds_its_own_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = TargetProcess::resolve(std::process::id()).unwrap();
        assert_eq!(me.listening_ports().unwrap().get(&port), Some(&1));
    }
}
