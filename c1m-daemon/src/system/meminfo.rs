//! `/proc/meminfo`, parsed by the procfs crate once its shape is checked.

use procfs::{FromRead as _, Meminfo, ProcError};

use super::{key_value::key_value_lines_are_sound, process::read_proc_file};

/// The box's memory counters now.
pub fn read_meminfo() -> Result<Meminfo, ProcError> {
    parse_meminfo(&read_proc_file("/proc/meminfo".into())?)
}

/// Checked by [`key_value_lines_are_sound`] first (procfs panics on some
/// malformed text).
pub fn parse_meminfo(bytes: &[u8]) -> Result<Meminfo, ProcError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ProcError::Other("/proc/meminfo is not UTF-8".into()))?;
    if !key_value_lines_are_sound(text, true) {
        return Err(ProcError::Other(
            "not the shape of /proc/meminfo (`Key:   value kB` lines)".into(),
        ));
    }
    Meminfo::from_read(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine_and_refuses_garbage() {
        assert!(read_meminfo().unwrap().mem_total > 0);
        for bad in [&b"MemTotal\xc3\xa9 1 kB\n"[..], b"\xff", b"MemTotal 1 kB"] {
            assert!(parse_meminfo(bad).is_err(), "{bad:?}");
        }
    }
}
