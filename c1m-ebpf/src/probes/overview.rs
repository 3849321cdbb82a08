//! The host overview's iterators (`c1m-daemon top`): unlike the target
//! walks (`scans.rs`), these look at every process and every socket of the
//! namespace, so they do not count into maps; they stream one 32-byte
//! [`OverviewRecord`] per socket found into the reader's buffer, and the
//! daemon groups them. A walk of 40,000 socket fds returns 1.3 MB.
//!
//! - `iter/task_file` (5.8+) visits each process's open files (threads
//!   sharing a file table once): a TCP socket file gives a `TaskSocket`
//!   record; the end of each process's run of files a `TaskFiles` record.
//! - `iter/tcp` (5.9+) visits the reader's network namespace's TCP
//!   sockets: those no file holds (timewait, request sockets, connections
//!   in an accept queue, orphans) give `Ownerless` records.
//!
//! When the reader's buffer is full the kernel drops what the object wrote
//! and shows the object again in the next read: so a program changes its
//! state (the running file count) only once all its writes went through.

use aya_ebpf::{
    helpers::{bpf_seq_write, bpf_sock_from_file},
    macros::map,
    maps::Array,
};
use c1m_common::{
    FileRun, OverviewKind, OverviewOffsets, OverviewRecord, TCP_LISTEN, TCP_NEW_SYN_RECV,
    TCP_TIME_WAIT,
};

use super::iter_context::{
    AF_INET, AF_INET6, IPPROTO_TCP, KEEPALIVE_EVERY, ctx_pointer, read_kernel, seq_and_number,
};
use crate::offsets::kernel_offsets;

/// Offsets only the overview needs, set by the daemon at load.
#[unsafe(no_mangle)]
static OVERVIEW_OFFSETS: OverviewOffsets = OverviewOffsets::ZERO;

/// Slot 0: the process whose files the walk is in, and its count so far.
/// Kept beside its only program; the daemon zeroes it before each walk.
#[map]
pub static OVERVIEW_FILE_RUN: Array<FileRun> = Array::with_max_entries(1, 0);

#[inline(always)]
fn overview_offsets() -> OverviewOffsets {
    // SAFETY: volatile read of a load-time constant (see offsets.rs).
    unsafe { core::ptr::read_volatile(&OVERVIEW_OFFSETS) }
}

/// Write one record; false when the reader's buffer is full.
#[inline(always)]
fn emit(seq: *mut aya_ebpf::bindings::seq_file, record: &OverviewRecord) -> bool {
    // SAFETY: `record` is an initialised 32-byte value on this stack.
    unsafe {
        bpf_seq_write(
            seq,
            (record as *const OverviewRecord).cast(),
            core::mem::size_of::<OverviewRecord>() as u32,
        ) == 0
    }
}

/// See [`KEEPALIVE_EVERY`] and `OverviewKind::KeepAlive`.
#[inline(always)]
fn keep_read_going(seq: *mut aya_ebpf::bindings::seq_file, seq_num: u64) -> bool {
    seq_num % KEEPALIVE_EVERY != 0 || emit(seq, &OverviewRecord::default())
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn overview_task_sockets(ctx: *const u64) -> i32 {
    let Some((seq, seq_num)) = seq_and_number(ctx) else {
        return 0;
    };
    let Some(run) = OVERVIEW_FILE_RUN.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: map value pointer; the daemon reads the iterator from one
    // thread, so the walk runs one call at a time.
    let current = unsafe { *run };
    let task = ctx_pointer(ctx, 1);
    if task == 0 {
        // The walk's last call: the last process's run of files.
        if current.files == 0 || emit(seq, &files_record(current)) {
            // SAFETY: as above.
            unsafe { *run = FileRun::default() };
        }
        return 0;
    }
    if !keep_read_going(seq, seq_num) {
        return 0;
    }
    // SAFETY: `task` is a live `task_struct` for this call.
    let Some(tgid) = (unsafe { read_kernel::<i32>(task, kernel_offsets().task_tgid) }) else {
        return 0;
    };
    let tgid = tgid as u32;
    let same_process = current.files > 0 && current.tgid == tgid;
    if current.files > 0 && !same_process && !emit(seq, &files_record(current)) {
        return 0;
    }
    let mut record = OverviewRecord::default();
    if task_socket(tgid, ctx_pointer(ctx, 3), &mut record) && !emit(seq, &record) {
        return 0;
    }
    let next = if same_process {
        FileRun {
            tgid,
            files: current.files + 1,
        }
    } else {
        FileRun { tgid, files: 1 }
    };
    // SAFETY: as above.
    unsafe { *run = next };
    0
}

#[inline(always)]
fn files_record(run: FileRun) -> OverviewRecord {
    OverviewRecord {
        kind: OverviewKind::TaskFiles as u8,
        tgid: run.tgid,
        count: run.files,
        ..OverviewRecord::default()
    }
}

/// Fill `record` when `file` is a TCP socket (IPv4 or IPv6).
#[inline(never)]
fn task_socket(tgid: u32, file: u64, record: &mut OverviewRecord) -> bool {
    if file == 0 {
        return false;
    }
    // SAFETY: `file` is this iteration's `struct file`; the helper returns
    // its `struct socket`, or null when it is not a socket.
    let socket = unsafe { bpf_sock_from_file(file as *mut aya_ebpf::bindings::file) } as u64;
    if socket == 0 {
        return false;
    }
    let offsets = kernel_offsets();
    // SAFETY: reads through bpf_probe_read_kernel; failures read as None.
    let Some(sk) = (unsafe { read_kernel::<u64>(socket, offsets.socket_sk) }) else {
        return false;
    };
    if sk == 0 {
        return false;
    }
    // SAFETY: as above; `sk` is the socket's `struct sock`.
    let (Some(state), Some(port), Some(family)) = (unsafe {
        (
            read_kernel::<u8>(sk, offsets.skc_state),
            read_kernel::<u16>(sk, offsets.skc_num),
            read_kernel::<u16>(sk, offsets.skc_family),
        )
    }) else {
        return false;
    };
    if family != AF_INET && family != AF_INET6 {
        return false;
    }
    // SAFETY: as above. Without the offset (sk_protocol was a bitfield
    // before 5.6) every stream socket of these families counts.
    if offsets.sk_protocol != 0
        && unsafe { read_kernel::<u16>(sk, offsets.sk_protocol) } != Some(IPPROTO_TCP)
    {
        return false;
    }
    let mut netns = 0u32;
    if offsets.skc_net != 0 && offsets.net_ns_inum != 0 {
        // SAFETY: as above; `skc_net` holds a `struct net *`.
        if let Some(net) = unsafe { read_kernel::<u64>(sk, offsets.skc_net) } {
            // SAFETY: as above.
            netns = unsafe { read_kernel::<u32>(net, offsets.net_ns_inum) }.unwrap_or(0);
        }
    }
    record.kind = OverviewKind::TaskSocket as u8;
    record.state = state;
    record.family = family;
    record.local_port = port;
    record.tgid = tgid;
    record.netns = netns;
    // SAFETY: a socket a file holds is a full `struct sock`.
    unsafe {
        record.rmem_alloc_bytes = read_kernel::<i32>(sk, offsets.sk_rmem_alloc)
            .unwrap_or(0)
            .max(0) as u32;
        record.wmem_queued_bytes = read_kernel::<i32>(sk, offsets.sk_wmem_queued)
            .unwrap_or(0)
            .max(0) as u32;
        record.forward_alloc_bytes = read_kernel::<i32>(sk, offsets.sk_forward_alloc)
            .unwrap_or(0)
            .max(0) as u32;
    }
    true
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn overview_ownerless(ctx: *const u64) -> i32 {
    let sk = ctx_pointer(ctx, 1);
    // The last call of a walk has no socket.
    if sk == 0 {
        return 0;
    }
    let Some((seq, seq_num)) = seq_and_number(ctx) else {
        return 0;
    };
    if !keep_read_going(seq, seq_num) {
        return 0;
    }
    let mut record = OverviewRecord::default();
    if ownerless(sk, &mut record) {
        emit(seq, &record);
    }
    0
}

/// Fill `record` when no file holds `sk`.
#[inline(never)]
fn ownerless(sk: u64, record: &mut OverviewRecord) -> bool {
    let offsets = kernel_offsets();
    // SAFETY: `sk` is a live `sock_common` for this call.
    let (Some(state), Some(family), Some(port)) = (unsafe {
        (
            read_kernel::<u8>(sk, offsets.skc_state),
            read_kernel::<u16>(sk, offsets.skc_family),
            read_kernel::<u16>(sk, offsets.skc_num),
        )
    }) else {
        return false;
    };
    let state_number = state as u32;
    let no_file = if state_number == TCP_TIME_WAIT || state_number == TCP_NEW_SYN_RECV {
        // Small structs without `sk_socket`: never a file's.
        true
    } else if state_number == TCP_LISTEN {
        false
    } else {
        let sk_socket = overview_offsets().sk_socket;
        // SAFETY: any other state is a full `struct sock`.
        sk_socket != 0 && unsafe { read_kernel::<u64>(sk, sk_socket) } == Some(0)
    };
    if !no_file {
        return false;
    }
    record.kind = OverviewKind::Ownerless as u8;
    record.state = state;
    record.family = family;
    record.local_port = port;
    true
}
