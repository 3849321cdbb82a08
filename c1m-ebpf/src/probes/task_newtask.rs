//! New processes of the target: `task/task_newtask`.
//!
//! Kernel prototype (include/trace/events/task.h, since 3.10):
//! `TP_PROTO(struct task_struct *task, u64 clone_flags)`; it runs in the
//! parent's context, so the current tgid is the parent's. A child process
//! (no CLONE_THREAD) of a target process becomes a target itself, before it
//! can open a socket; new threads are already covered by their tgid.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use c1m_common::DropReason;

use crate::{
    maps::{TARGET_TGIDS, count_drop},
    target_task::current_is_target,
};

/// Record layout, from `/sys/kernel/tracing/events/task/task_newtask/format`.
mod record {
    pub const PID: usize = 8;
    pub const CLONE_FLAGS: usize = 32;
}

const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint(category = "task", name = "task_newtask")]
pub fn task_newtask_tp(ctx: TracePointContext) -> u32 {
    try_task_newtask(&ctx);
    0
}

fn try_task_newtask(ctx: &TracePointContext) {
    // A fork in the target cgroup is a target whoever its parent is.
    if !current_is_target() {
        return;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: offsets of the record layout above, read through the helper.
    let fields = unsafe {
        (
            ctx.read_at::<i32>(record::PID),
            ctx.read_at::<u64>(record::CLONE_FLAGS),
        )
    };
    let (Ok(child), Ok(clone_flags)) = fields else {
        count_drop(ctx, DropReason::ReadFailed);
        return;
    };
    if clone_flags & CLONE_THREAD != 0 {
        return;
    }
    if TARGET_TGIDS.insert(&(child as u32), &parent, 0).is_err() {
        count_drop(ctx, DropReason::TargetMapFull);
    }
}
