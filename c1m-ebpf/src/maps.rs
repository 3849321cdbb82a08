//! Every map of c1m's kernel side, in one place. Names are the constants of
//! `c1m_common::maps` (the static's name is the map's name).

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use aya_log_ebpf::warn;
use c1m_common::{
    CgroupTarget, DROP_SLOTS, DropReason, FdCount, ListenerSlot, MAX_OUTBOUND_PAIRS,
    MAX_OWNED_SOCKS, MAX_TARGET_LISTEN_PORTS, MAX_TARGET_LISTENERS, MAX_TARGET_TGIDS, OutboundPair,
    OwnedSock, SOCK_SCAN_SLOTS, SockScanSlot, TARGET_EVENT_SLOTS, TRANSITION_SLOTS, TargetEvent,
};

/// tgid -> parent target tgid. Filled by the daemon, and by
/// `task_newtask` for child processes.
#[map]
pub static TARGET_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TARGET_TGIDS, 0);

/// Kernel socket address -> what c1m knows of it. Not preallocated: an idle
/// daemon must not pin hundreds of MiB.
#[map]
pub static OWNED_SOCKS: HashMap<u64, OwnedSock> =
    HashMap::with_max_entries(MAX_OWNED_SOCKS, BPF_F_NO_PREALLOC);

/// Local port -> number of target listeners on it.
#[map]
pub static TARGET_LISTEN_PORTS: HashMap<u32, u64> =
    HashMap::with_max_entries(MAX_TARGET_LISTEN_PORTS, 0);

/// `old * 16 + new` -> transitions of owned sockets.
#[map]
pub static TRANSITIONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TRANSITION_SLOTS, 0);

/// Sums over the target's sockets by kind, state and family, filled by
/// `sock_scan`; the daemon zeroes it before each scan.
#[map]
pub static SOCK_SCAN: Array<SockScanSlot> = Array::with_max_entries(SOCK_SCAN_SLOTS, 0);

/// Target tgid -> open files and TCP connection fds, filled by `fd_scan`;
/// the daemon clears it before each scan.
#[map]
pub static FD_COUNTS: HashMap<u32, FdCount> = HashMap::with_max_entries(MAX_TARGET_TGIDS, 0);

/// Socket address -> a target listener's accept queue and drops, filled
/// by `sock_scan`; the daemon clears it before each scan.
#[map]
pub static LISTENERS_FOUND: HashMap<u64, ListenerSlot> =
    HashMap::with_max_entries(MAX_TARGET_LISTENERS, 0);

/// (source, destination) -> the target's open dialled connections on it,
/// filled by `sock_scan`; the daemon clears it before each scan.
#[map]
pub static OUTBOUND_PAIRS: HashMap<OutboundPair, u64> =
    HashMap::with_max_entries(MAX_OUTBOUND_PAIRS, 0);

/// (source, destination) -> the target's dialled connections that closed
/// into TIME_WAIT on it since attach, filled by the state probe; never
/// cleared (the daemon takes differences).
#[map]
pub static DIALLED_CLOSES: HashMap<OutboundPair, u64> =
    HashMap::with_max_entries(MAX_OUTBOUND_PAIRS, 0);

/// Slot 0: the cgroup whose processes are all targets (id 0: none). Set by
/// the daemon.
#[map]
pub static TARGET_CGROUP: Array<CgroupTarget> = Array::with_max_entries(1, 0);

/// Thread id -> cgroup id: tasks moved into the target cgroup after
/// attach, filled by `cgroup_attach_task`; the daemon removes what it read.
#[map]
pub static CGROUP_JOINED: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TARGET_TGIDS, 0);

/// [`TargetEvent`] -> count, per CPU.
#[map]
pub static TARGET_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TARGET_EVENT_SLOTS, 0);

/// Slot 0: the target's network namespace inode number (0: unknown, no
/// filtering). Set by the daemon.
#[map]
pub static TARGET_NETNS: Array<u32> = Array::with_max_entries(1, 0);

/// Count one [`TargetEvent`] (this CPU's slot: a plain add cannot race).
#[inline(always)]
pub fn count_event(event: TargetEvent) {
    if let Some(slot) = TARGET_EVENTS.get_ptr_mut(event as u32) {
        // SAFETY: this CPU's own slot of a per-CPU array.
        unsafe { *slot += 1 };
    }
}

/// Local port -> target listeners found by `fd_scan`; cleared before each.
#[map]
pub static LISTEN_FOUND: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TARGET_LISTEN_PORTS, 0);

/// [`DropReason`] -> count.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Count one loss. Per-CPU slot, so a plain add is race-free. The first
/// loss of each reason on each CPU is also logged (through aya-log), so a
/// degradation shows in the daemon's log without logging per event.
#[inline(always)]
pub fn count_drop<C: EbpfContext>(ctx: &C, reason: DropReason) {
    if let Some(slot) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer comes from the map and is this CPU's own slot.
        unsafe {
            if *slot == 0 {
                warn!(ctx, "c1m: first loss on this CPU, reason {}", reason as u32);
            }
            *slot += 1;
        }
    }
}
