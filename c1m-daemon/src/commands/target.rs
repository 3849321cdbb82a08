//! What `run` and `report` watch: the pids the user named, and/or the
//! cgroup `--cgroup` or `--container` names.

use crate::{
    cli::CgroupArgs,
    system::{
        cgroup_target::{CgroupSpec, resolve_cgroup, resolve_container},
        process::TargetProcess,
    },
};

pub fn resolve_target(
    pids: &[u32],
    cgroup: &CgroupArgs,
) -> anyhow::Result<(Vec<TargetProcess>, Option<CgroupSpec>)> {
    let named = TargetProcess::resolve_all(pids)?;
    let cgroup = match (&cgroup.cgroup, &cgroup.container) {
        (Some(path), _) => Some(resolve_cgroup(path)?),
        (None, Some(container)) => Some(resolve_container(container)?),
        (None, None) => None,
    };
    Ok((named, cgroup))
}
