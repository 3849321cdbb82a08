//! Reasons the kernel side could not record something. Each is a slot in
//! the per-CPU `STATS` array; userspace sums and reports every one of them,
//! so a loss is always visible.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `OWNED_SOCKS` was full: a target socket went untracked.
    OwnedSockMapFull = 0,
    /// `TARGET_LISTEN_PORTS` was full: a target listener's children go
    /// unattributed.
    ListenPortMapFull = 1,
    /// Reading a probe's input failed: a socket field
    /// (`bpf_probe_read_kernel`) or a tracepoint record field.
    ReadFailed = 2,
    /// A TCP state number outside the table (kernel newer than c1m).
    UnknownTcpState = 3,
    /// `TARGET_TGIDS` was full: a child process of the target went
    /// unfollowed.
    TargetMapFull = 4,
}

/// Slots in the `STATS` array.
pub const DROP_SLOTS: u32 = 5;

impl DropReason {
    pub const ALL: [DropReason; DROP_SLOTS as usize] = [
        DropReason::OwnedSockMapFull,
        DropReason::ListenPortMapFull,
        DropReason::ReadFailed,
        DropReason::UnknownTcpState,
        DropReason::TargetMapFull,
    ];

    /// Stable snake_case name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::OwnedSockMapFull => "owned_sock_map_full",
            DropReason::ListenPortMapFull => "listen_port_map_full",
            DropReason::ReadFailed => "read_failed",
            DropReason::UnknownTcpState => "unknown_tcp_state",
            DropReason::TargetMapFull => "target_map_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        for (i, d) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
    }
}
