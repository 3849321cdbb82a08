//! Failed accepts of the target: `syscalls/sys_exit_accept4` and
//! `syscalls/sys_exit_accept`.
//!
//! Record layout (`/sys/kernel/tracing/events/syscalls/sys_exit_accept4/format`,
//! the same for every syscall exit since syscall tracepoints appeared in
//! 2.6.33): `int __syscall_nr` at 8, `long ret` at 16. A server whose
//! `accept()` fails with EMFILE, ENFILE or ENOMEM is at a limit right now:
//! the connection stays in the accept queue (or is dropped), and the
//! namespace-wide counters cannot tell which process it was.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use c1m_common::TargetEvent;

use crate::maps::{TARGET_TGIDS, count_event};

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
        return;
    }
    let event = match -ret {
        EMFILE => TargetEvent::AcceptEmfile,
        ENFILE => TargetEvent::AcceptEnfile,
        ENOMEM | ENOBUFS => TargetEvent::AcceptEnomem,
        _ => return,
    };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { TARGET_TGIDS.get(&tgid) }.is_some() {
        count_event(event);
    }
}
