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
    /// `DIALLED_CLOSES` was full: a dialled connection's TIME_WAIT went
    /// uncounted for its (source, destination) pair.
    PairMapFull = 5,
}

/// Slots in the `STATS` array.
pub const DROP_SLOTS: u32 = 6;

impl DropReason {
    pub const ALL: [DropReason; DROP_SLOTS as usize] = [
        DropReason::OwnedSockMapFull,
        DropReason::ListenPortMapFull,
        DropReason::ReadFailed,
        DropReason::UnknownTcpState,
        DropReason::TargetMapFull,
        DropReason::PairMapFull,
    ];

    /// Stable snake_case name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::OwnedSockMapFull => "owned_sock_map_full",
            DropReason::ListenPortMapFull => "listen_port_map_full",
            DropReason::ReadFailed => "read_failed",
            DropReason::UnknownTcpState => "unknown_tcp_state",
            DropReason::TargetMapFull => "target_map_full",
            DropReason::PairMapFull => "pair_map_full",
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

    #[test]
    fn every_event_has_its_own_slot() {
        for (i, e) in TargetEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
    }
}

/// What the target's own sockets and syscalls showed, counted per CPU in
/// `TARGET_EVENTS` since c1m attached: the evidence that a limit is being
/// hit by this target (namespace-wide counters cannot tell whose it was).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetEvent {
    /// An accepted connection the target closed (FIN or reset from its own
    /// `close()`) within [`REFUSAL_WINDOW_NS`] of its handshake.
    ClosedAfterAccept = 0,
    /// Of those, the ones it closed without reading a byte: a refusal
    /// ("too many clients"), not a served request.
    RefusedUnread = 1,
    /// `accept()`/`accept4()` failed with EMFILE: the process's fd limit.
    AcceptEmfile = 2,
    /// ... with ENFILE: the box's file limit (fs.file-max).
    AcceptEnfile = 3,
    /// ... with ENOMEM or ENOBUFS: memory.
    AcceptEnomem = 4,
    /// A connection the target dialled that it closed first, into
    /// TIME_WAIT (its timewait socket is not on the target's ports, so the
    /// walk cannot attribute it: these are estimated, and labelled so).
    DialledTimeWait = 5,
    /// An accepted connection the target closed without ever reading from
    /// it, at any age: nginx at worker_connections reclaims its idle
    /// connections this way (counted against a server's own cap only; an
    /// idle timeout looks the same).
    ClosedUnread = 6,
}

/// Slots in the `TARGET_EVENTS` array.
pub const TARGET_EVENT_SLOTS: u32 = 7;

/// A server that closes a connection this soon after accepting it, without
/// reading from it, refused it. Timed from the accept() (seen at its
/// syscall exit), else from the handshake; a second allows for a server
/// slowed by a loaded box; idle timeouts are seconds or more.
pub const REFUSAL_WINDOW_NS: u64 = 1_000_000_000;

impl TargetEvent {
    pub const ALL: [TargetEvent; TARGET_EVENT_SLOTS as usize] = [
        TargetEvent::ClosedAfterAccept,
        TargetEvent::RefusedUnread,
        TargetEvent::AcceptEmfile,
        TargetEvent::AcceptEnfile,
        TargetEvent::AcceptEnomem,
        TargetEvent::DialledTimeWait,
        TargetEvent::ClosedUnread,
    ];

    /// Stable snake_case name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TargetEvent::ClosedAfterAccept => "closed_after_accept",
            TargetEvent::RefusedUnread => "refused_unread",
            TargetEvent::AcceptEmfile => "accept_emfile",
            TargetEvent::AcceptEnfile => "accept_enfile",
            TargetEvent::AcceptEnomem => "accept_enomem",
            TargetEvent::DialledTimeWait => "dialled_time_wait",
            TargetEvent::ClosedUnread => "closed_unread",
        }
    }
}
