//! Reading sysctls from `/proc/sys`, by their dotted names.
//!
//! `/proc/sys/net/*` shows the values of the reading process's network
//! namespace; for a target in another namespace the sampler enters it
//! first (`system/netns.rs`), so these readers see the target's values.

use std::{fs, io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {name} is not available on this kernel ({path})")]
    Missing { name: String, path: PathBuf },
    #[error("cannot read sysctl {name} at {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("sysctl {name} has unexpected contents {text:?} (expected {expected})")]
    Parse {
        name: String,
        text: String,
        expected: &'static str,
    },
}

/// `net.ipv4.tcp_mem` -> `/proc/sys/net/ipv4/tcp_mem`.
pub fn sysctl_path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

pub fn read_sysctl(name: &str) -> Result<String, SysctlError> {
    let path = sysctl_path(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SysctlError::Missing {
            name: name.to_owned(),
            path,
        }),
        Err(source) => Err(SysctlError::Read {
            name: name.to_owned(),
            path,
            source,
        }),
    }
}

/// Ephemeral ports per (source IP, destination), from
/// `net.ipv4.ip_local_port_range`; when unreadable, the kernel's default
/// range 32768-60999 (28,232 ports).
pub fn ephemeral_ports() -> u64 {
    read_sysctl_numbers::<2>("net.ipv4.ip_local_port_range")
        .map_or(28_232, |[lo, hi]| hi.saturating_sub(lo) + 1)
}

/// A sysctl holding whitespace-separated unsigned integers.
pub fn read_sysctl_numbers<const N: usize>(name: &str) -> Result<[u64; N], SysctlError> {
    let text = read_sysctl(name)?;
    parse_numbers(&text).ok_or_else(|| SysctlError::Parse {
        name: name.to_owned(),
        text,
        expected: match N {
            1 => "one integer",
            2 => "two integers",
            _ => "several integers",
        },
    })
}

pub fn read_sysctl_u64(name: &str) -> Result<u64, SysctlError> {
    read_sysctl_numbers::<1>(name).map(|[v]| v)
}

/// Exactly `N` unsigned integers separated by whitespace.
pub fn parse_numbers<const N: usize>(text: &str) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut fields = text.split_whitespace();
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    fields.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_sysctls_have() {
        assert_eq!(parse_numbers::<1>("4096\n"), Some([4096]));
        assert_eq!(parse_numbers::<2>("32768\t60999"), Some([32768, 60999]));
        assert_eq!(
            parse_numbers::<3>("287901 383868 575802"),
            Some([287901, 383868, 575802])
        );
    }

    #[test]
    fn refuses_wrong_shapes() {
        assert_eq!(parse_numbers::<2>("1"), None);
        assert_eq!(parse_numbers::<1>("1 2"), None);
        assert_eq!(parse_numbers::<1>("-1"), None);
        assert_eq!(parse_numbers::<1>(""), None);
    }

    #[test]
    fn dotted_names_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.tcp_mem"),
            PathBuf::from("/proc/sys/net/ipv4/tcp_mem")
        );
    }

    #[test]
    fn missing_sysctl_says_so() {
        let err = read_sysctl("net.c1m.does_not_exist").unwrap_err();
        assert!(matches!(err, SysctlError::Missing { .. }), "{err}");
    }
}
