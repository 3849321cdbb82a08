//! Starting copies of c1m-daemon itself (echo workers, load shards, the
//! selftest's echo server and loads) that never outlive their parent: they
//! get PR_SET_PDEATHSIG (even a SIGKILLed parent takes them along), and
//! they are killed when their handle drops.

use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// `c1m-daemon <args>` with stdout piped, stdin closed.
pub fn spawn_self<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
    prepare: impl FnOnce(&mut std::process::Command),
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding c1m-daemon's own binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    prepare(&mut command);
    // SAFETY: between fork and exec only prctl, which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let description = format!("{command:?}");
    Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {description}"))
}

/// SIGTERM to a child (already gone is fine).
pub fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        terminate_pid(pid);
    }
}

/// SIGTERM to one of our children by pid (already gone, ESRCH, is fine).
pub fn terminate_pid(pid: u32) {
    // SAFETY: kill(2) on a pid; at worst it fails with ESRCH.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}
