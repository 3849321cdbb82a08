//! Classic tracepoints are found by id under tracefs, which some systems do
//! not mount at boot. aya looks at `/sys/kernel/tracing` (and the debugfs
//! path) once per process, so this must run before the first tracepoint is
//! attached.

//!
//! A tracefs that c1m mounted is unmounted again once the tracepoints are
//! attached (an attached tracepoint no longer needs it): c1m leaves the
//! system's mounts as it found them, whether it exits cleanly or not.

use std::{
    ffi::CString,
    io,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Whether this process mounted tracefs (and has not unmounted it yet).
static MOUNTED_BY_US: AtomicBool = AtomicBool::new(false);

fn is_mounted(path: &Path) -> bool {
    path.join("events").is_dir()
}

/// Make sure tracefs is mounted, mounting it at `/sys/kernel/tracing` if
/// neither usual place has it. Returns whether c1m mounted it.
pub fn ensure_tracefs() -> io::Result<bool> {
    if is_mounted(Path::new(TRACEFS)) || is_mounted(Path::new("/sys/kernel/debug/tracing")) {
        return Ok(false);
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    log::info!("mounted tracefs at {TRACEFS} (classic tracepoints need it)");
    MOUNTED_BY_US.store(true, Ordering::SeqCst);
    Ok(true)
}

/// Unmount tracefs if this process mounted it. Call once the tracepoints
/// are attached. A lazy unmount (MNT_DETACH) cannot fail on a busy mount.
pub fn unmount_if_ours() {
    if !MOUNTED_BY_US.swap(false, Ordering::SeqCst) {
        return;
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        log::info!("unmounted the tracefs c1m mounted at {TRACEFS}");
    } else {
        log::warn!(
            "cannot unmount the tracefs c1m mounted at {TRACEFS}: {}",
            io::Error::last_os_error()
        );
    }
}
