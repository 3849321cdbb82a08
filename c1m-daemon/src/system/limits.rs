//! The system limits that bound how many connections a box can hold, read
//! as they are now, for `doctor`'s table (and the fd limit the echo server
//! and the load plan by). The ceiling analysis (`analysis/`) turns limits
//! into connection counts; here they are only read.

use serde::Serialize;

use super::sysctl::{SysctlError, read_sysctl_numbers, read_sysctl_u64};

/// One reading: the value, or why it could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reading<T> {
    Value(T),
    Unavailable { unavailable: String },
}

impl<T> From<Result<T, SysctlError>> for Reading<T> {
    fn from(result: Result<T, SysctlError>) -> Self {
        match result {
            Ok(value) => Reading::Value(value),
            Err(err) => Reading::Unavailable {
                unavailable: err.to_string(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Serialize)]
pub struct SystemLimits {
    /// RLIMIT_NOFILE of this process (the daemon, and what its children inherit).
    pub rlimit_nofile: Rlimit,
    pub nr_open: Reading<u64>,
    pub file_max: Reading<u64>,
    /// `[low, high]` of net.ipv4.ip_local_port_range.
    pub ip_local_port_range: Reading<[u64; 2]>,
    pub tcp_max_tw_buckets: Reading<u64>,
    /// `[min, pressure, max]` in pages.
    pub tcp_mem_pages: Reading<[u64; 3]>,
    pub somaxconn: Reading<u64>,
    pub nf_conntrack_max: Reading<u64>,
}

pub fn read_system_limits() -> SystemLimits {
    SystemLimits {
        rlimit_nofile: read_rlimit_nofile(),
        nr_open: read_sysctl_u64("fs.nr_open").into(),
        file_max: read_sysctl_u64("fs.file-max").into(),
        ip_local_port_range: read_sysctl_numbers::<2>("net.ipv4.ip_local_port_range").into(),
        tcp_max_tw_buckets: read_sysctl_u64("net.ipv4.tcp_max_tw_buckets").into(),
        tcp_mem_pages: read_sysctl_numbers::<3>("net.ipv4.tcp_mem").into(),
        somaxconn: read_sysctl_u64("net.core.somaxconn").into(),
        nf_conntrack_max: read_sysctl_u64("net.netfilter.nf_conntrack_max").into(),
    }
}

pub fn read_rlimit_nofile() -> Rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; it cannot fail for
    // RLIMIT_NOFILE with a valid pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    Rlimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machines_limits() {
        let limits = read_system_limits();
        assert!(limits.rlimit_nofile.soft > 0);
        assert!(limits.rlimit_nofile.soft <= limits.rlimit_nofile.hard);
        assert!(matches!(limits.somaxconn, Reading::Value(n) if n > 0));
        assert!(matches!(limits.ip_local_port_range, Reading::Value([lo, hi]) if lo < hi));
    }

    #[test]
    fn unavailable_readings_serialize_with_their_reason() {
        let reading: Reading<u64> = Reading::Unavailable {
            unavailable: "sysctl x is not available".into(),
        };
        let json = serde_json::to_value(&reading).unwrap();
        assert_eq!(json["unavailable"], "sysctl x is not available");
        assert_eq!(serde_json::to_value(Reading::Value(5u64)).unwrap(), 5);
    }
}
