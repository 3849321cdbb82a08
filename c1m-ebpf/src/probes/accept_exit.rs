//! Failed accepts of the target: `syscalls/sys_exit_accept4` and
//! `syscalls/sys_exit_accept`.
//!
//! Record layout (`/sys/kernel/tracing/events/syscalls/sys_exit_accept4/format`,
//! the same for every syscall exit since syscall tracepoints appeared in
//! 2.6.33): `int __syscall_nr` at 8, `long ret` at 16. A server whose
//! `accept()` fails with EMFILE, ENFILE or ENOMEM is at a limit right now:
//! the connection stays in the accept queue (or is dropped), and the
//! namespace-wide counters cannot tell which process it was.
//!
//! A successful accept stamps the accepted socket's record with the time:
//! a server that closes a connection right after accepting it refused it,
//! however long it waited in the accept queue before (timed from the
//! handshake, a busy server's queue made refusals look like service).

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use c1m_common::TargetEvent;

use crate::{
    maps::{OWNED_SOCKS, count_event},
    offsets::kernel_offsets,
    target_task::current_is_target,
};

const RET: usize = 16;

const ENOMEM: i64 = 12;
const ENFILE: i64 = 23;
const EMFILE: i64 = 24;
const ENOBUFS: i64 = 105;

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4_tp(ctx: TracePointContext) -> u32 {
    on_accept_exit(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept_tp(ctx: TracePointContext) -> u32 {
    on_accept_exit(&ctx);
    0
}

#[inline(always)]
fn on_accept_exit(ctx: &TracePointContext) {
    // SAFETY: `ret` of the record layout above, read through the helper.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(RET) }) else {
        return;
    };
    if ret >= 0 {
        if current_is_target() {
            stamp_accepted(ret as u64);
        }
        return;
    }
    let event = match -ret {
        EMFILE => TargetEvent::AcceptEmfile,
        ENFILE => TargetEvent::AcceptEnfile,
        ENOMEM | ENOBUFS => TargetEvent::AcceptEnomem,
        _ => return,
    };
    if current_is_target() {
        count_event(event);
    }
}

/// Find the socket behind the fd accept() returned
/// (`current->files->fdt->fd[fd]->private_data->sk`) and stamp its record
/// with the time. A BPF-to-BPF call: its chain of reads stays out of the
/// hot path of failed accepts.
#[inline(never)]
fn stamp_accepted(fd: u64) {
    let offsets = kernel_offsets();
    if offsets.task_files == 0 || offsets.fdtable_fd == 0 || offsets.file_private_data == 0 {
        return;
    }
    // SAFETY: every step is a bpf_probe_read_kernel of an address computed
    // from the previous one; a bad one fails and ends the walk.
    let sk = unsafe {
        let read = |base: u64, offset: u64| bpf_probe_read_kernel((base + offset) as *const u64);
        let task = bpf_get_current_task();
        let Ok(files) = read(task, offsets.task_files as u64) else {
            return;
        };
        let Ok(fdt) = read(files, offsets.files_fdt as u64) else {
            return;
        };
        let Ok(fd_array) = read(fdt, offsets.fdtable_fd as u64) else {
            return;
        };
        let Ok(file) = read(fd_array, fd * 8) else {
            return;
        };
        let Ok(socket) = read(file, offsets.file_private_data as u64) else {
            return;
        };
        let Ok(sk) = read(socket, offsets.socket_sk as u64) else {
            return;
        };
        sk
    };
    if let Some(owned) = OWNED_SOCKS.get_ptr_mut(&sk) {
        // SAFETY: a map value pointer, valid for this run; bpf_ktime_get_ns
        // has no preconditions.
        unsafe { (*owned).established_ns = bpf_ktime_get_ns() };
    }
}
