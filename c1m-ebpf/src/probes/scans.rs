//! BPF iterators the daemon reads once per sample: each read of the
//! iterator walks the kernel's objects and runs the program once per
//! object, in the reader's process context. They add into maps the daemon
//! zeroed before the read and write next to nothing (a keep-alive byte per
//! 65,536 objects), so a scan of a million sockets returns a few bytes.
//!
//! aya-ebpf 0.2.1 has no macro for iterators: the section names are
//! written by hand and aya 0.14 loads them as `Iter`.

use aya_ebpf::helpers::{bpf_seq_write, bpf_sock_from_file};
use c1m_common::{
    FdCount, ListenerSlot, ScanKind, SockOrigin, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT,
    sock_scan_index,
};

use super::iter_context::{
    AF_INET, AF_INET6, IPPROTO_TCP, KEEPALIVE_EVERY, ctx_pointer, read_kernel, seq_and_number,
};
use crate::{
    maps::{
        FD_COUNTS, LISTEN_FOUND, LISTENERS_FOUND, OUTBOUND_PAIRS, OWNED_SOCKS, SOCK_SCAN,
        TARGET_TGIDS,
    },
    offsets::kernel_offsets,
    pairs::pair_of,
    sock_tracker::target_listens_on,
};

/// A read of an iterator that visits a million objects without writing a
/// byte ends with EAGAIN, and resuming such a read does not move on: past
/// a million sockets the walk would never finish. One byte every
/// [`KEEPALIVE_EVERY`] objects keeps every read productive.
#[inline(always)]
fn keep_read_going(ctx: *const u64) {
    let Some((seq, seq_num)) = seq_and_number(ctx) else {
        return;
    };
    if seq_num % KEEPALIVE_EVERY == 0 {
        let byte = 0u8;
        // SAFETY: one byte of this stack, written to this walk's seq file.
        unsafe { bpf_seq_write(seq, (&byte as *const u8).cast(), 1) };
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn sock_scan(ctx: *const u64) -> i32 {
    let sk = ctx_pointer(ctx, 1);
    // The last call of a walk has no socket.
    if sk != 0 {
        keep_read_going(ctx);
        scan_sock(sk);
    }
    0
}

#[inline(always)]
fn scan_sock(sk: u64) {
    let offsets = kernel_offsets();
    // SAFETY: `sk` is a live `sock_common` for this call.
    let (Some(state), Some(family), Some(port)) = (unsafe {
        (
            read_kernel::<u8>(sk, offsets.skc_state),
            read_kernel::<u16>(sk, offsets.skc_family),
            read_kernel::<u16>(sk, offsets.skc_num),
        )
    }) else {
        return;
    };
    let state = state as u32;
    // SAFETY: a read of the map value, valid for this call.
    let origin = unsafe { OWNED_SOCKS.get(&sk).map(|o| o.origin) };
    let owned = origin.is_some();
    if state == TCP_LISTEN && (owned || target_listens_on(port)) {
        note_listener_queue(sk, port, family);
    }
    if origin == Some(SockOrigin::Connected as u8) {
        note_outbound(sk, family);
    }
    let kind = if owned {
        ScanKind::Owned
    } else if state != TCP_LISTEN && target_listens_on(port) {
        ScanKind::OnTargetPort
    } else {
        return;
    };
    let Some(index) = sock_scan_index(kind, state, family == AF_INET6) else {
        return;
    };
    let Some(slot) = SOCK_SCAN.get_ptr_mut(index) else {
        return;
    };
    // Timewait and request sockets are small structs without buffers:
    // reading `struct sock` fields from them would read past their end.
    let buffers = if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        (0, 0, 0)
    } else {
        // SAFETY: a full socket in any other state is a `struct sock`.
        unsafe {
            (
                read_kernel::<i32>(sk, offsets.sk_rmem_alloc).unwrap_or(0),
                read_kernel::<i32>(sk, offsets.sk_wmem_queued).unwrap_or(0),
                read_kernel::<i32>(sk, offsets.sk_forward_alloc).unwrap_or(0),
            )
        }
    };
    // SAFETY: the daemon reads the iterator from one thread, so the walk
    // runs one call at a time: plain adds cannot race.
    unsafe {
        (*slot).sockets += 1;
        (*slot).rmem_alloc += buffers.0.max(0) as u64;
        (*slot).wmem_queued += buffers.1.max(0) as u64;
        (*slot).forward_alloc += buffers.2.max(0) as u64;
    }
}

/// A target listener's accept queue and its drop count, for the daemon to
/// tell "this server stopped accepting" from the namespace-wide counters.
#[inline(never)]
fn note_listener_queue(sk: u64, port: u16, family: u16) {
    let offsets = kernel_offsets();
    if offsets.sk_max_ack_backlog == 0 {
        return;
    }
    // SAFETY: a LISTEN socket is a full `struct sock`; failed reads are 0.
    let slot = unsafe {
        ListenerSlot {
            port,
            family,
            queued: read_kernel::<u32>(sk, offsets.sk_ack_backlog).unwrap_or(0),
            queue_max: read_kernel::<u32>(sk, offsets.sk_max_ack_backlog).unwrap_or(0),
            drops: read_kernel::<u32>(sk, offsets.sk_drops).unwrap_or(0),
        }
    };
    // Full: the daemon counts the listeners it sees against the map's size.
    let _ = LISTENERS_FOUND.insert(&sk, &slot, 0);
}

/// A connection the target dialled: count it for its (source, destination).
/// A function of its own (a BPF-to-BPF call): inlined, its stack buffers
/// made LLVM spill a register the verifier sees as uninitialised.
#[inline(never)]
fn note_outbound(sk: u64, family: u16) {
    let Some(pair) = pair_of(sk, family) else {
        return;
    };
    match OUTBOUND_PAIRS.get_ptr_mut(&pair) {
        // SAFETY: map value pointer; one call at a time (see scan_sock).
        Some(count) => unsafe { *count += 1 },
        None => {
            // Full: the daemon counts the pairs it sees against the size.
            let _ = OUTBOUND_PAIRS.insert(&pair, &1, 0);
        }
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn fd_scan(ctx: *const u64) -> i32 {
    let task = ctx_pointer(ctx, 1);
    if task != 0 {
        keep_read_going(ctx);
        if let Some(tgid) = count_fd(task) {
            note_tcp_socket(tgid, ctx_pointer(ctx, 3));
        }
    }
    0
}

/// A target's file that is a TCP socket: a listener counts its port, a
/// connection counts for its process (and, if dialled before c1m attached,
/// for its (source, destination) pair).
#[inline(always)]
fn note_tcp_socket(tgid: u32, file: u64) {
    if file == 0 {
        return;
    }
    // SAFETY: `file` is this iteration's `struct file`; the helper returns
    // its `struct socket` or null when it is not a socket.
    let socket = unsafe { bpf_sock_from_file(file as *mut aya_ebpf::bindings::file) } as u64;
    if socket == 0 {
        return;
    }
    let offsets = kernel_offsets();
    // SAFETY: reads through bpf_probe_read_kernel, failures read as None.
    let Some(sk) = (unsafe { read_kernel::<u64>(socket, offsets.socket_sk) }) else {
        return;
    };
    if sk == 0 {
        return;
    }
    // SAFETY: as above; `sk` is the socket's `struct sock`.
    let (Some(state), Some(port), Some(family)) = (unsafe {
        (
            read_kernel::<u8>(sk, offsets.skc_state),
            read_kernel::<u16>(sk, offsets.skc_num),
            read_kernel::<u16>(sk, offsets.skc_family),
        )
    }) else {
        return;
    };
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    if state as u32 != TCP_LISTEN {
        // SAFETY: as above.
        let tcp = offsets.sk_protocol != 0
            && unsafe { read_kernel::<u16>(sk, offsets.sk_protocol) } == Some(IPPROTO_TCP);
        if !tcp {
            return;
        }
        if let Some(count) = FD_COUNTS.get_ptr_mut(&tgid) {
            // SAFETY: map value pointer; one call at a time (see scan_sock).
            unsafe { (*count).tcp_connections += 1 };
        }
        // A connection the probes never saw open (it predates c1m) that is
        // not on a target listener's port: the target dialled it. The
        // socket walk counts only the dialled connections c1m saw open, so
        // without this a client's pool opened before attach would hold no
        // ephemeral ports at all. A socket two target processes share is
        // counted once per fd here (rare for dialled sockets).
        // SAFETY: presence test only.
        let seen_open = unsafe { OWNED_SOCKS.get(&sk).is_some() };
        if !seen_open && !target_listens_on(port) {
            note_outbound(sk, family);
        }
        return;
    }
    let key = port as u32;
    match LISTEN_FOUND.get_ptr_mut(&key) {
        // SAFETY: map value pointer; one call at a time.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = LISTEN_FOUND.insert(&key, &1, 0);
        }
    }
}

/// Count the file if its task is a target; its tgid when it is.
#[inline(always)]
fn count_fd(task: u64) -> Option<u32> {
    // SAFETY: `task` is a live `task_struct` for this call.
    let tgid = unsafe { read_kernel::<i32>(task, kernel_offsets().task_tgid) }? as u32;
    // SAFETY: presence test only.
    if unsafe { TARGET_TGIDS.get(&tgid).is_none() } {
        return None;
    }
    match FD_COUNTS.get_ptr_mut(&tgid) {
        // SAFETY: map value pointer; one call at a time (see scan_sock).
        Some(count) => unsafe { (*count).files += 1 },
        None => {
            let first = FdCount {
                files: 1,
                tcp_connections: 0,
            };
            let _ = FD_COUNTS.insert(&tgid, &first, 0);
        }
    }
    Some(tgid)
}
