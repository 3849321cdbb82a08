//! What c1m's own kernel programs cost: runs and run time per program
//! (`BPF_ENABLE_STATS`), and the kernel memory its maps and programs pin.
//! A tool that watches a server must show that it does not hurt it.
//!
//! The kernel counts program run time only while someone holds a
//! `BPF_ENABLE_STATS` fd (or `kernel.bpf_stats_enabled` is set): c1m holds
//! one for as long as it runs, so the counting ends with it and the sysctl
//! is never touched. While it is held every BPF program on the box pays
//! two clock reads per run (tens of nanoseconds).

use std::os::fd::OwnedFd;

use aya::{
    Ebpf,
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use serde::Serialize;

/// Runs and run time of one of c1m's programs since it was loaded (while
/// run-time stats were on).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
    /// `run_ns / runs`; `None` before the first run.
    pub ns_per_run: Option<f64>,
}

/// Turn on run-time stats for as long as the fd lives.
pub fn enable_run_stats() -> Result<OwnedFd, String> {
    enable_stats(Stats::RunTime).map_err(|e| format!("BPF_ENABLE_STATS: {e} (needs Linux 5.8+)"))
}

/// The kernel ids of the loaded programs of `ebpf`, by name.
pub fn program_ids(ebpf: &Ebpf) -> Vec<(String, u32)> {
    ebpf.programs()
        .filter_map(|(name, program)| Some((name.to_owned(), program.info().ok()?.id())))
        .collect()
}

/// Runs and run time of the programs `ids` names, as the kernel counts
/// them now (one pass over the box's loaded programs).
pub fn program_costs(ids: &[(String, u32)]) -> Vec<ProgramCost> {
    let mut costs: Vec<ProgramCost> = loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let name = ids.iter().find(|(_, id)| *id == info.id())?.0.clone();
            let runs = info.run_count();
            let run_ns = info.run_time().as_nanos() as u64;
            Some(ProgramCost {
                name,
                runs,
                run_ns,
                ns_per_run: (runs > 0).then(|| run_ns as f64 / runs as f64),
            })
        })
        .collect();
    costs.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then(a.name.cmp(&b.name)));
    costs
}

/// Kernel memory pinned by this process's BPF maps and programs: the
/// `memlock` of every BPF fd it holds (`/proc/self/fdinfo`).
pub fn bpf_memory_bytes() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("map_id:") || info.contains("prog_id:"))
        .filter_map(|info| memlock_of(&info))
        .sum()
}

/// The `memlock:` line of one fdinfo text.
pub fn memlock_of(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memlock_from_a_map_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t1\n\
                    key_size:\t8\nvalue_size:\t32\nmax_entries:\t4194304\nmap_flags:\t0x1\n\
                    map_extra:\t0x0\nmemlock:\t34078720\nmap_id:\t29\nfrozen:\t0\n";
        assert_eq!(memlock_of(info), Some(34_078_720));
        assert_eq!(memlock_of("pos:\t0\n"), None);
    }
}
