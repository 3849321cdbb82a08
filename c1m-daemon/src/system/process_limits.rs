//! `/proc/<pid>/limits` (a process's rlimits, readable without privileges,
//! unlike prlimit(2) on another user's process), parsed by the procfs crate
//! once its shape is checked.

use procfs::{
    FromRead as _, ProcError,
    process::{LimitValue, Limits},
};

use super::process::read_proc_file;

/// The rlimits of process `pid`.
pub fn read_process_limits(pid: u32) -> Result<Limits, ProcError> {
    parse_process_limits(&read_proc_file(format!("/proc/{pid}/limits"))?)
}

/// procfs 0.18 indexes each line from its end (`len - 3`) and panics on a
/// line of fewer words in debug builds (found by fuzzing); so every line but
/// the header must have a name, a soft and a hard limit (and units, but for
/// the two priorities, which have none). The kernel never writes less.
pub fn parse_process_limits(bytes: &[u8]) -> Result<Limits, ProcError> {
    let text = String::from_utf8_lossy(bytes);
    let shaped = text.lines().map(str::trim).all(|line| {
        let words = line.split_whitespace().count();
        let unitless =
            line.starts_with("Max nice priority") || line.starts_with("Max realtime priority");
        line.starts_with("Limit") || words >= if unitless { 3 } else { 4 }
    });
    if !shaped {
        return Err(ProcError::Other(
            "not the shape of /proc/<pid>/limits (`Max open files  SOFT  HARD  files` lines)"
                .into(),
        ));
    }
    Limits::from_read(bytes)
}

/// A limit as a number: `unlimited` is u64::MAX.
pub fn limit_value(value: LimitValue) -> u64 {
    match value {
        LimitValue::Value(v) => v,
        LimitValue::Unlimited => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_refuses_short_lines() {
        let mine = read_process_limits(std::process::id()).unwrap();
        assert!(limit_value(mine.max_open_files.soft_limit) > 0);
        let real = std::fs::read("/proc/self/limits").unwrap();
        assert!(parse_process_limits(&real).is_ok());
        for bad in [&b"\n"[..], b"Max open files 1", b"MemTotal: 1 kB\n", b"x"] {
            assert!(parse_process_limits(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            read_process_limits(u32::MAX),
            Err(ProcError::NotFound(_))
        ));
    }
}
