//! BPF iterators the daemon reads once per sample: each read of the
//! iterator walks the kernel's objects and runs the program once per
//! object, in the reader's process context. They write no output; they add
//! into maps the daemon zeroed before the read, so a scan of a million
//! sockets returns a few hundred bytes.
//!
//! aya-ebpf 0.2.1 has no macro for iterators: the section names are
//! written by hand and aya 0.14 loads them as `Iter`.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use c1m_common::{ScanKind, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT, sock_scan_index};

use crate::{
    maps::{FD_COUNTS, OWNED_SOCKS, SOCK_SCAN, TARGET_TGIDS},
    offsets::kernel_offsets,
    sock_tracker::target_listens_on,
};

const AF_INET6: u16 = 10;

/// Pointer-sized field `index` of an iterator's context struct
/// (`struct bpf_iter__tcp { meta; sk_common; uid }`,
/// `struct bpf_iter__task_file { meta; task; fd; file }`).
#[inline(always)]
fn ctx_pointer(ctx: *const u64, index: usize) -> u64 {
    // SAFETY: the kernel hands iterator programs a context of this layout;
    // the verifier checks the access against its BTF.
    unsafe { *ctx.add(index) }
}

/// # Safety
/// `base + offset` must be a kernel address; a bad one makes the helper
/// fail, which reads as `None`.
#[inline(always)]
unsafe fn read_kernel<T>(base: u64, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn sock_scan(ctx: *const u64) -> i32 {
    let sk = ctx_pointer(ctx, 1);
    // The last call of a walk has no socket.
    if sk != 0 {
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
    // SAFETY: presence test only.
    let kind = if unsafe { OWNED_SOCKS.get(&sk).is_some() } {
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

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn fd_scan(ctx: *const u64) -> i32 {
    let task = ctx_pointer(ctx, 1);
    if task != 0 {
        count_fd(task);
    }
    0
}

#[inline(always)]
fn count_fd(task: u64) {
    // SAFETY: `task` is a live `task_struct` for this call.
    let Some(tgid) = (unsafe { read_kernel::<i32>(task, kernel_offsets().task_tgid) }) else {
        return;
    };
    let tgid = tgid as u32;
    // SAFETY: presence test only.
    if unsafe { TARGET_TGIDS.get(&tgid).is_none() } {
        return;
    }
    match FD_COUNTS.get_ptr_mut(&tgid) {
        // SAFETY: map value pointer; one call at a time (see scan_sock).
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = FD_COUNTS.insert(&tgid, &1, 0);
        }
    }
}
