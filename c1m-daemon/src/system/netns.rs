//! Network namespaces: a target in a container has its own sockets table,
//! sysctls (`ip_local_port_range`, `tcp_max_tw_buckets`, `somaxconn`...)
//! and counters. c1m measures it in its own namespace by moving its
//! sampling thread there: the socket walk, `/proc/net/*` and
//! `/proc/sys/net/*` then all show the target's namespace.

use std::{fs::File, os::fd::AsRawFd as _};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open the network namespace of pid {pid}: {source}")]
    Open { pid: u32, source: std::io::Error },
    #[error("cannot enter the network namespace of pid {pid}: {source} (needs CAP_SYS_ADMIN)")]
    Enter { pid: u32, source: std::io::Error },
}

fn namespace_id(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The inode number of `pid`'s network namespace (what the kernel's
/// `net->ns.inum` holds), when readable.
pub fn netns_inode(pid: u32) -> Option<u32> {
    namespace_id(&format!("/proc/{pid}/ns/net")).and_then(|ino| u32::try_from(ino).ok())
}

/// Enter `pid`'s network namespace if it differs from ours; returns
/// whether it did. Call on the thread that samples, before other threads
/// are started (the namespace is per thread).
pub fn enter_netns_of(pid: u32) -> Result<bool, NetnsError> {
    let theirs = format!("/proc/{pid}/ns/net");
    if namespace_id(&theirs) == namespace_id("/proc/thread-self/ns/net") {
        return Ok(false);
    }
    let file = File::open(&theirs).map_err(|source| NetnsError::Open { pid, source })?;
    // SAFETY: setns on an fd we own; it only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Enter {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_not_entered() {
        assert!(!enter_netns_of(std::process::id()).unwrap());
    }
}
