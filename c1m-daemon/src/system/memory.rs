//! A process's memory and file descriptors as `/proc` reports them.

use procfs::{
    FromRead as _, ProcError,
    process::{Process, SmapsRollup},
};

use super::{
    key_value::key_value_lines_are_sound,
    process::{TargetError, proc_error, read_proc_file},
};

/// The memory a process allocated itself: proportional anonymous and shmem
/// pages (heap, stacks, buffers; pages shared after fork split among their
/// users, so the processes of a pre-fork server add up without double
/// counting). File-backed pages (the binary, libraries) are left out: the
/// kernel can drop and re-read them, and their proportional share moves
/// whenever another process mapping the same file starts or exits. Kernels
/// before 5.8 lack the split; there it is the whole PSS.
pub fn pss_bytes(pid: u32) -> Result<u64, TargetError> {
    let map_err = proc_error(pid, false);
    let bytes = read_proc_file(format!("/proc/{pid}/smaps_rollup")).map_err(map_err)?;
    let rollup = parse_smaps_rollup(&bytes).map_err(map_err)?;
    let field = |name: &str| -> Option<u64> {
        rollup
            .memory_map_rollup
            .iter()
            .map(|map| map.extension.map.get(name).copied())
            .sum()
    };
    match (field("Pss_Anon"), field("Pss_Shmem")) {
        (Some(anon), Some(shmem)) => Ok(anon + shmem),
        _ => Ok(field("Pss").unwrap_or(0)),
    }
}

/// `/proc/<pid>/smaps_rollup`, checked by [`key_value_lines_are_sound`]
/// first (procfs panics on some malformed text).
pub fn parse_smaps_rollup(bytes: &[u8]) -> Result<SmapsRollup, ProcError> {
    if !key_value_lines_are_sound(&String::from_utf8_lossy(bytes), false) {
        return Err(ProcError::Other(
            "not the shape of /proc/<pid>/smaps_rollup (`Key:   value kB` lines)".into(),
        ));
    }
    SmapsRollup::from_read(bytes)
}

/// Open file descriptors. Reading `/proc/<pid>/fd` costs the kernel a
/// dentry and inode per fd the first time, so this is only the fallback
/// for kernels without `iter/task_file`.
pub fn open_fds(pid: u32) -> Result<u64, TargetError> {
    let process = Process::new(pid as i32).map_err(|_| TargetError::Exited { pid })?;
    process
        .fd_count()
        .map(|n| n as u64)
        .map_err(|source| TargetError::Unreadable { pid, source })
}

/// Threads of a process (`None` once it exited).
pub fn thread_count(pid: u32) -> Option<u64> {
    let stat = super::process::read_stat(pid).ok()?;
    u64::try_from(stat.num_threads).ok()
}

/// Whether the process has an epoll instance (then each connection also
/// costs an epoll item in the kernel). Listing `/proc/<pid>/fd` makes the
/// kernel build a dentry and inode per entry listed, so only the lowest
/// fds are looked at: servers create their epoll instance at start-up,
/// before their connections.
pub fn uses_epoll(pid: u32) -> bool {
    const LOOK_AT: usize = 256;
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.take(LOOK_AT).filter_map(Result::ok).any(|entry| {
        std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_fds() {
        let me = std::process::id();
        assert!(pss_bytes(me).unwrap() > 100_000);
        let before = open_fds(me).unwrap();
        let _file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(open_fds(me).unwrap() > before.saturating_sub(1));
    }
}
