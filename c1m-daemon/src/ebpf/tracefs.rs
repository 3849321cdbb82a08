//! Classic tracepoints are found by id under tracefs, which some systems do
//! not mount at boot. aya looks at `/sys/kernel/tracing` (and the debugfs
//! path) once per process, so this must run before the first tracepoint is
//! attached.

use std::{ffi::CString, io, path::Path};

pub const TRACEFS: &str = "/sys/kernel/tracing";

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
    Ok(true)
}
