//! What c1m itself is doing (how it attached, what this kernel lets it
//! see, its own memory and CPU), published beside each report so a reader
//! knows how far to trust it. Built by the sampler, shown by the API.

use serde::Serialize;

use crate::ebpf::self_cost::ProgramCost;

/// What c1m itself is doing, shown next to the report so a reader knows
/// how far to trust it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub version: &'static str,
    /// How TCP state changes are observed (e.g. `tp_btf/inet_sock_set_state`).
    pub attach_mode: String,
    /// How child processes are followed, or why not.
    pub children: Availability,
    /// Socket/fd walks through BPF iterators, or why they are unavailable.
    /// The JSON key stays `scans`: it is documented API (README, `/api/v1`).
    pub scans: Availability,
    /// How the target's failed accepts (EMFILE, ENFILE, ENOMEM) are seen,
    /// or why they are not (one kind of evidence less).
    pub accept_errors: Availability,
    pub interval_ms: u64,
    pub samples: u64,
    /// How long the last socket and fd walk took, and how long ago it
    /// started (walks repeat at most a fifth of the time, so at a million
    /// sockets the counts are a few seconds old).
    pub walk_ms: Option<u64>,
    pub walk_age_ms: Option<u64>,
    /// The daemon's own resident memory and CPU time.
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    /// Kernel memory c1m's BPF maps and programs pin (their memlock).
    pub bpf_memory_bytes: u64,
    /// Whether the kernel counts c1m's programs' run time (BPF_ENABLE_STATS
    /// held while c1m runs), or why not.
    pub program_stats: Availability,
    /// Each of c1m's kernel programs: runs, run time, ns per run, busiest
    /// first (empty without program stats).
    pub programs: Vec<ProgramCost>,
}

/// Whether one of c1m's ways of seeing is in use here: how, or why not.
/// On the wire `{"available": true, "how": "..."}` or
/// `{"available": false, "reason": "..."}` (never Rust's `{"Ok": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Availability {
    pub fn yes(how: impl Into<String>) -> Availability {
        Availability {
            available: true,
            how: Some(how.into()),
            reason: None,
        }
    }

    pub fn no(reason: impl Into<String>) -> Availability {
        Availability {
            available: false,
            how: None,
            reason: Some(reason.into()),
        }
    }
}

impl From<&Result<&'static str, String>> for Availability {
    fn from(result: &Result<&'static str, String>) -> Availability {
        match result {
            Ok(how) => Availability::yes(*how),
            Err(why) => Availability::no(why.clone()),
        }
    }
}

/// The daemon's own resident bytes and CPU seconds (user + system).
pub(super) fn own_usage() -> (u64, f64) {
    let Ok(me) = procfs::process::Process::myself() else {
        return (0, 0.0);
    };
    let ticks = procfs::ticks_per_second() as f64;
    let rss = me
        .statm()
        .map(|m| m.resident * procfs::page_size())
        .unwrap_or(0);
    let cpu = crate::system::process::read_stat(std::process::id())
        .map(|s| (s.utime + s.stime) as f64 / ticks)
        .unwrap_or(0.0);
    (rss, cpu)
}
