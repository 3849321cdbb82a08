//! How many sockets the kernel side can track at once (`OWNED_SOCKS`),
//! chosen per target at load. The hash is not preallocated, but the kernel
//! allocates its bucket array up front: 16 bytes per entry rounded up to a
//! power of two, 64 MiB for the 4M maximum. Sized from the target's fd
//! limits instead, an idle daemon watching a small server pins a few MiB,
//! and memory follows the connections the target can hold.
//! (`BPF_MAP_TYPE_SK_STORAGE` would follow them exactly, but it needs a
//! trusted socket pointer, which the classic-tracepoint fallback and the
//! walks here do not have.)

use c1m_common::MAX_OWNED_SOCKS;

/// Never fewer: accept queues, closing sockets and a short-lived child's
/// connections need room whatever the fd limits say.
pub const MIN_OWNED_SOCKETS: u32 = 65_536;

/// A cgroup with no process yet: its servers' limits are unknown.
pub const UNKNOWN_TARGET_SOCKETS: u32 = 1 << 20;

/// Sockets to make room for, given the fd limit (soft RLIMIT_NOFILE) of
/// each target process now: every connection it holds is an fd, and as
/// many again may be in its accept queues or closing without one (FIN_WAIT,
/// LAST_ACK after close()), plus [`MIN_OWNED_SOCKETS`]; at most the kernel
/// side's maximum. E.g. one process with nofile 20,000: 105,536.
pub fn owned_socket_capacity(nofile_per_process: &[u64]) -> u32 {
    if nofile_per_process.is_empty() {
        return UNKNOWN_TARGET_SOCKETS;
    }
    let fds = nofile_per_process
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n));
    let wanted = fds
        .saturating_mul(2)
        .saturating_add(u64::from(MIN_OWNED_SOCKETS));
    wanted.min(u64::from(MAX_OWNED_SOCKS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_twice_the_fds_and_a_margin_within_the_maximum() {
        assert_eq!(owned_socket_capacity(&[20_000]), 105_536);
        assert_eq!(owned_socket_capacity(&[1024, 1024]), 69_632);
        // unlimited (u64::MAX) or a million-fd fleet: the maximum.
        assert_eq!(owned_socket_capacity(&[u64::MAX]), MAX_OWNED_SOCKS);
        assert_eq!(owned_socket_capacity(&[1 << 20; 8]), MAX_OWNED_SOCKS);
        assert_eq!(owned_socket_capacity(&[]), UNKNOWN_TARGET_SOCKETS);
    }
}
