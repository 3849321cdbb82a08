//! Processes moved into the target cgroup: `cgroup/cgroup_attach_task`.
//!
//! Kernel prototype (include/trace/events/cgroup.h, since 4.13):
//! `TP_PROTO(struct cgroup *dst_cgrp, const char *path, struct task_struct
//! *task, bool threadgroup)`; it runs once per task moved, after the move,
//! in the context of whoever wrote `cgroup.procs` (so the moved task's own
//! cgroup cannot be asked with the current-task helpers). A server moved
//! into the target cgroup may never fork or open a socket again (it only
//! accepts on a listener it has), so it must be learned here: the daemon
//! reads `CGROUP_JOINED`, makes the process a target and seeds its
//! listeners. Only the cgroup itself is matched, not cgroups created below
//! it later (the record carries no ancestry); their processes still count
//! once they fork or open a socket.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use c1m_common::DropReason;

use crate::maps::{CGROUP_JOINED, TARGET_CGROUP, count_drop};

/// Record layout, from
/// `/sys/kernel/tracing/events/cgroup/cgroup_attach_task/format`.
mod record {
    pub const DST_ROOT: usize = 8;
    pub const DST_ID: usize = 16;
    pub const PID: usize = 24;
}

#[tracepoint(category = "cgroup", name = "cgroup_attach_task")]
pub fn cgroup_attach_task_tp(ctx: TracePointContext) -> u32 {
    try_cgroup_attach_task(&ctx);
    0
}

fn try_cgroup_attach_task(ctx: &TracePointContext) {
    let Some(target) = TARGET_CGROUP.get(0) else {
        return;
    };
    if target.id == 0 {
        return;
    }
    // SAFETY: offsets of the record layout above, read through the helper.
    let fields = unsafe {
        (
            ctx.read_at::<i32>(record::DST_ROOT),
            ctx.read_at::<u64>(record::DST_ID),
            ctx.read_at::<i32>(record::PID),
        )
    };
    let (Ok(root), Ok(id), Ok(pid)) = fields else {
        count_drop(ctx, DropReason::ReadFailed);
        return;
    };
    // Hierarchy 0 is cgroup v2's; v1 hierarchies number from 1 and their
    // ids are of another tree.
    if root != 0 || id != target.id {
        return;
    }
    if CGROUP_JOINED.insert(&(pid as u32), &id, 0).is_err() {
        count_drop(ctx, DropReason::TargetMapFull);
    }
}
