//! `/proc/meminfo`, parsed by the procfs crate once its shape is checked.

use procfs::{FromRead as _, Meminfo, ProcError};

/// The box's memory counters now.
pub fn read_meminfo() -> Result<Meminfo, ProcError> {
    let bytes = std::fs::read("/proc/meminfo")
        .map_err(|err| ProcError::Io(err, Some("/proc/meminfo".into())))?;
    parse_meminfo(&bytes)
}

/// procfs 0.18 cuts the last byte off each line's first word (the `:` of
/// `MemTotal:`) and panics (found by fuzzing) when that byte is inside a
/// multi-byte character; so every line must start with a word ending in an
/// ASCII `:` first. The kernel never writes anything else.
pub fn parse_meminfo(bytes: &[u8]) -> Result<Meminfo, ProcError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ProcError::Other("/proc/meminfo is not UTF-8".into()))?;
    let shaped = text.lines().filter(|line| !line.is_empty()).all(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|key| key.ends_with(':'))
    });
    if !shaped {
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
