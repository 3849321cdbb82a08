//! Which sockets belong to the target, and what they do.
//!
//! Ownership is decided once, when a socket first appears:
//! - a socket entering LISTEN or SYN_SENT in the context of a target task
//!   was created by the target's own `listen()` / `connect()`;
//! - a socket entering SYN_RECV is a child of a listener (a passive open).
//!   That transition runs in softirq context, where the current task is
//!   whoever the CPU interrupted, so the child is attributed by its local
//!   port to the target's listener on that port instead.
//!
//!   A port is not enough on a host with containers (another network
//!   namespace may have its own listener on the same port), so the child
//!   must also be in the target's network namespace.
//!
//! After that, every transition of an owned socket is counted, and the
//! socket is forgotten when it reaches CLOSE. An accepted connection the
//! target closes within a moment of accepting it, without reading from
//! it, is a refusal: the evidence that the server caps itself.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
};
use c1m_common::{
    DropReason, OwnedSock, REFUSAL_WINDOW_NS, SockOrigin, TCP_CLOSE, TCP_CLOSING, TCP_ESTABLISHED,
    TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LISTEN, TCP_STATE_SLOTS, TCP_SYN_RECV, TCP_SYN_SENT,
    TargetEvent, transition_index,
};

use crate::{
    maps::{
        DIALLED_CLOSES, OWNED_SOCKS, TARGET_LISTEN_PORTS, TARGET_NETNS, TRANSITIONS, count_drop,
        count_event,
    },
    offsets::kernel_offsets,
    pairs::pair_of,
    target_task::current_is_target,
};

/// One state change, decoded from whichever program observed it.
pub struct Transition {
    /// Kernel address of the `struct sock`.
    pub sk: u64,
    pub old_state: u32,
    pub new_state: u32,
    /// Local port, host byte order.
    pub local_port: u16,
    pub family: u16,
}

#[inline(always)]
pub fn on_transition<C: EbpfContext>(ctx: &C, t: &Transition) {
    if t.old_state >= TCP_STATE_SLOTS || t.new_state >= TCP_STATE_SLOTS {
        count_drop(ctx, DropReason::UnknownTcpState);
        return;
    }
    match OWNED_SOCKS.get_ptr_mut(&t.sk) {
        Some(owned) => follow_owned(ctx, t, owned),
        None => adopt_if_target(ctx, t),
    }
}

fn follow_owned<C: EbpfContext>(ctx: &C, t: &Transition, owned: *mut OwnedSock) {
    count_transition(t.old_state, t.new_state);
    // SAFETY: pointer into the map value, valid for this program run.
    let (origin, established_ns) = unsafe { ((*owned).origin, (*owned).established_ns) };
    if origin == SockOrigin::Accepted as u8 {
        if t.new_state == TCP_ESTABLISHED {
            // SAFETY: as above; bpf_ktime_get_ns has no preconditions.
            unsafe { (*owned).established_ns = bpf_ktime_get_ns() };
        } else if t.old_state == TCP_ESTABLISHED && established_ns != 0 {
            note_early_close(t, established_ns);
        }
    }
    if t.new_state == TCP_CLOSE {
        if origin == SockOrigin::Connected as u8
            && (t.old_state == TCP_FIN_WAIT2 || t.old_state == TCP_CLOSING)
        {
            count_event(TargetEvent::DialledTimeWait);
            note_dialled_close(ctx, t);
        }
        if origin == SockOrigin::Listener as u8 && t.old_state == TCP_LISTEN {
            change_listeners(ctx, t.local_port, false);
        }
        let _ = OWNED_SOCKS.remove(&t.sk);
    } else {
        // SAFETY: as above.
        unsafe { (*owned).state = t.new_state as u8 };
    }
}

/// A dialled connection closing into TIME_WAIT: its port stays taken for
/// 60 s, on its own (source, destination) pair. A call of its own (see
/// `note_outbound` in the walks: inlined pair buffers upset the verifier).
#[inline(never)]
fn note_dialled_close<C: EbpfContext>(ctx: &C, t: &Transition) {
    let Some(pair) = pair_of(t.sk, t.family) else {
        return;
    };
    match DIALLED_CLOSES.get_ptr_mut(&pair) {
        // Closes of one pair run on any CPU: atomic.
        Some(count) => atomic_add(count, 1),
        None => {
            // Two CPUs may both insert the first close: one insert wins,
            // the other adds to it.
            if DIALLED_CLOSES
                .insert(&pair, &1, u64::from(BPF_NOEXIST))
                .is_err()
            {
                match DIALLED_CLOSES.get_ptr_mut(&pair) {
                    Some(count) => atomic_add(count, 1),
                    None => count_drop(ctx, DropReason::PairMapFull),
                }
            }
        }
    }
}

/// An accepted connection leaving ESTABLISHED: if the target closed it
/// (FIN_WAIT1 is always its own close; CLOSE straight from ESTABLISHED is
/// its own only when seen in its own context, else a reset from the peer)
/// without reading a byte, count it; within the refusal window of its
/// handshake, count it as closed early, and as a refusal if unread.
#[inline(always)]
fn note_early_close(t: &Transition, established_ns: u64) {
    let closed_by_target =
        t.new_state == TCP_FIN_WAIT1 || (t.new_state == TCP_CLOSE && current_is_target());
    if !closed_by_target {
        return;
    }
    let unread = read_nothing(t.sk) == Some(true);
    if unread {
        count_event(TargetEvent::ClosedUnread);
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.saturating_sub(established_ns) > REFUSAL_WINDOW_NS {
        return;
    }
    count_event(TargetEvent::ClosedAfterAccept);
    if unread {
        count_event(TargetEvent::RefusedUnread);
    }
}

/// Whether the application never read from this connection: every payload
/// byte received is still unread (`rcv_nxt - copied_seq`). `tcp_close`
/// frees unread data without moving `copied_seq`, so this holds at close.
#[inline(always)]
fn read_nothing(sk: u64) -> Option<bool> {
    let offsets = kernel_offsets();
    if offsets.tcp_bytes_received == 0 {
        return None;
    }
    // SAFETY: `sk` is a live full socket (`struct tcp_sock`) during the
    // hook; failed reads give None.
    let (copied, next, received) = unsafe {
        (
            bpf_probe_read_kernel((sk + offsets.tcp_copied_seq as u64) as *const u32).ok()?,
            bpf_probe_read_kernel((sk + offsets.tcp_rcv_nxt as u64) as *const u32).ok()?,
            bpf_probe_read_kernel((sk + offsets.tcp_bytes_received as u64) as *const u64).ok()?,
        )
    };
    Some(u64::from(next.wrapping_sub(copied)) >= received)
}

/// Whether a socket is in the target's network namespace (true when the
/// namespace or the offsets are unknown: then the port alone decides).
#[inline(always)]
pub fn in_target_netns(sk: u64) -> bool {
    let Some(&target) = TARGET_NETNS.get(0) else {
        return true;
    };
    let offsets = kernel_offsets();
    if target == 0 || offsets.skc_net == 0 {
        return true;
    }
    // SAFETY: reads through bpf_probe_read_kernel; `sk` is a live socket
    // (`sock_common` is shared by every socket kind).
    let inum = unsafe {
        bpf_probe_read_kernel((sk + offsets.skc_net as u64) as *const u64)
            .and_then(|net| bpf_probe_read_kernel((net + offsets.net_ns_inum as u64) as *const u32))
    };
    // A namespace that cannot be read does not match: better to miss a
    // connection than to take a stranger's.
    inum == Ok(target)
}

fn adopt_if_target<C: EbpfContext>(ctx: &C, t: &Transition) {
    let origin = if t.new_state == TCP_SYN_RECV || t.old_state == TCP_SYN_RECV {
        if !target_listens_on(t.local_port) || !in_target_netns(t.sk) {
            return;
        }
        SockOrigin::Accepted
    } else if t.new_state == TCP_LISTEN && current_is_target() {
        SockOrigin::Listener
    } else if t.new_state == TCP_SYN_SENT && current_is_target() {
        SockOrigin::Connected
    } else {
        return;
    };
    let tgid = if origin == SockOrigin::Accepted {
        0
    } else {
        (bpf_get_current_pid_tgid() >> 32) as u32
    };
    let record = OwnedSock::new(tgid, t.new_state as u8, origin as u8, t.family);
    if OWNED_SOCKS.insert(&t.sk, &record, 0).is_err() {
        count_drop(ctx, DropReason::OwnedSockMapFull);
        return;
    }
    if origin == SockOrigin::Listener {
        change_listeners(ctx, t.local_port, true);
    }
    count_transition(t.old_state, t.new_state);
}

#[inline(always)]
pub fn target_listens_on(port: u16) -> bool {
    // SAFETY: read of a u32 in the map; a concurrent update is benign.
    matches!(unsafe { TARGET_LISTEN_PORTS.get(&(port as u32)) }, Some(n) if *n > 0)
}

/// Add or remove one target listener on `port`. Listeners come and go in
/// process context on any CPU, hence the atomic add.
fn change_listeners<C: EbpfContext>(ctx: &C, port: u16, add: bool) {
    let key = port as u32;
    let delta: i64 = if add { 1 } else { -1 };
    if let Some(count) = TARGET_LISTEN_PORTS.get_ptr_mut(&key) {
        atomic_add(count, delta);
    } else if add && TARGET_LISTEN_PORTS.insert(&key, &1u64, 0).is_err() {
        count_drop(ctx, DropReason::ListenPortMapFull);
    }
}

/// `lock *(u64 *)(ptr) += delta`: the BPF atomic add (BPF_XADD), which every
/// kernel with eBPF supports. Rust's `AtomicU64` offers no `fetch_add` on the
/// bpf target (no compare-and-swap there), so it is spelled out.
#[inline(always)]
fn atomic_add(ptr: *mut u64, delta: i64) {
    // SAFETY: `ptr` is an aligned map value pointer valid for this run.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({ptr} + 0) += {delta}",
            ptr = in(reg) ptr,
            delta = in(reg) delta,
        );
    }
}

#[inline(always)]
fn count_transition(old_state: u32, new_state: u32) {
    let Some(index) = transition_index(old_state, new_state) else {
        return;
    };
    if let Some(slot) = TRANSITIONS.get_ptr_mut(index) {
        // SAFETY: this CPU's own slot of a per-CPU array.
        unsafe { *slot += 1 };
    }
}
