//! Results of the periodic scans the daemon runs with BPF iterators.
//!
//! `iter/tcp` walks every TCP socket of the network namespace and adds the
//! target's into [`SockScanSlot`]s of the `SOCK_SCAN` array: exact counts by
//! state and family, and the buffer memory they hold, which no state-change
//! event can tell. `iter/task_file` counts the target's open files per
//! process into `FD_COUNTS` without touching `/proc/<pid>/fd` (which costs
//! the kernel a dentry and an inode per fd).

use crate::TCP_STATE_SLOTS;

/// How a scanned socket was recognised as the target's.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// Tracked in `OWNED_SOCKS` (seen by the state-change probes).
    Owned = 0,
    /// Not tracked, but bound to a port the target listens on: a connection
    /// it accepted before c1m attached, or the TIME_WAIT remainder of one it
    /// closed (timewait sockets are separate kernel objects, never tracked).
    OnTargetPort = 1,
}

/// Slots per kind: every state, IPv4 and IPv6.
const SLOTS_PER_KIND: u32 = TCP_STATE_SLOTS * 2;
/// Entries in the `SOCK_SCAN` array.
pub const SOCK_SCAN_SLOTS: u32 = SLOTS_PER_KIND * 2;

/// Index into `SOCK_SCAN`; `None` for a state outside the table.
#[inline(always)]
pub fn sock_scan_index(kind: ScanKind, state: u32, ipv6: bool) -> Option<u32> {
    if state >= TCP_STATE_SLOTS {
        return None;
    }
    Some(kind as u32 * SLOTS_PER_KIND + state * 2 + ipv6 as u32)
}

/// The inverse of [`sock_scan_index`].
pub fn sock_scan_slot(index: u32) -> (ScanKind, u32, bool) {
    let kind = if index >= SLOTS_PER_KIND {
        ScanKind::OnTargetPort
    } else {
        ScanKind::Owned
    };
    let within = index % SLOTS_PER_KIND;
    (kind, within / 2, within % 2 == 1)
}

/// Sums over the sockets of one (kind, state, family).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockScanSlot {
    pub sockets: u64,
    /// `sk_rmem_alloc`: bytes of received data queued (skb truesize).
    pub rmem_alloc: u64,
    /// `sk_wmem_queued`: bytes of send queue (skb truesize).
    pub wmem_queued: u64,
    /// `sk_forward_alloc`: bytes charged to `tcp_mem` but not yet used.
    pub forward_alloc: u64,
}
const _: () = assert!(core::mem::size_of::<SockScanSlot>() == 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` u64s, no padding (size asserted above).
    unsafe impl aya::Pod for super::SockScanSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_and_stay_in_bounds() {
        for kind in [ScanKind::Owned, ScanKind::OnTargetPort] {
            for state in 0..TCP_STATE_SLOTS {
                for ipv6 in [false, true] {
                    let i = sock_scan_index(kind, state, ipv6).unwrap();
                    assert!(i < SOCK_SCAN_SLOTS);
                    assert_eq!(sock_scan_slot(i), (kind, state, ipv6));
                }
            }
        }
        assert_eq!(
            sock_scan_index(ScanKind::Owned, TCP_STATE_SLOTS, false),
            None
        );
    }
}
