//! Whether the current task belongs to the target: its process was named
//! (or forked from one that was), or it runs in the target cgroup. A
//! process found in the cgroup this way is added to `TARGET_TGIDS`, so the
//! daemon learns of it and the walks count its files.

use aya_ebpf::helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_pid_tgid};

use crate::maps::{TARGET_CGROUP, TARGET_TGIDS};

#[inline(always)]
pub fn current_is_target() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { TARGET_TGIDS.get(&tgid) }.is_some() {
        return true;
    }
    if !current_in_target_cgroup() {
        return false;
    }
    // Full: the task still counts now; the daemon sees the map's size.
    let _ = TARGET_TGIDS.insert(&tgid, &tgid, 0);
    true
}

/// The current task runs in the target cgroup or one below it.
#[inline(always)]
fn current_in_target_cgroup() -> bool {
    let Some(target) = TARGET_CGROUP.get(0) else {
        return false;
    };
    if target.id == 0 {
        return false;
    }
    // SAFETY: no preconditions; a level deeper than the task's gives 0.
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(target.level as i32) };
    ancestor == target.id
}
