//! What this process may do: effective uid and capabilities, read from
//! `/proc/self/status` (`CapEff`).

use serde::Serialize;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    pub euid: u32,
    pub cap_sys_admin: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_ptrace: bool,
    pub cap_sys_resource: bool,
    pub cap_net_admin: bool,
}

impl Privileges {
    pub fn of_this_process() -> Privileges {
        let cap_eff = procfs::process::Process::myself()
            .and_then(|me| me.status())
            .map(|status| status.capeff)
            .unwrap_or(0);
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        Privileges::from_mask(euid, cap_eff)
    }

    /// Another process's privileges (`None` once it exited).
    pub fn of_process(pid: u32) -> Option<Privileges> {
        let process = procfs::process::Process::new(pid as i32).ok()?;
        let status = process.status().ok()?;
        Some(Privileges::from_mask(status.euid, status.capeff))
    }

    pub fn from_mask(euid: u32, cap_eff: u64) -> Privileges {
        let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
        Privileges {
            euid,
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_sys_ptrace: has(CAP_SYS_PTRACE),
            cap_sys_resource: has(CAP_SYS_RESOURCE),
            cap_net_admin: has(CAP_NET_ADMIN),
        }
    }

    /// Loading tracing programs needs CAP_SYS_ADMIN, or CAP_BPF with
    /// CAP_PERFMON (Linux >= 5.8).
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    /// Capabilities c1m needs that this process lacks, by name.
    pub fn missing_for_tracing(&self) -> Vec<&'static str> {
        if self.can_trace() {
            return Vec::new();
        }
        let mut missing = Vec::new();
        if !self.cap_bpf {
            missing.push("CAP_BPF");
        }
        if !self.cap_perfmon {
            missing.push("CAP_PERFMON");
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_with_full_caps_can_trace() {
        let p = Privileges::from_mask(0, u64::MAX >> 23);
        assert!(p.can_trace());
        assert!(p.missing_for_tracing().is_empty());
    }

    #[test]
    fn bpf_and_perfmon_suffice_without_sys_admin() {
        let p = Privileges::from_mask(1000, (1 << CAP_BPF) | (1 << CAP_PERFMON));
        assert!(p.can_trace());
    }

    #[test]
    fn no_caps_names_what_is_missing() {
        let p = Privileges::from_mask(1000, 0);
        assert!(!p.can_trace());
        assert_eq!(p.missing_for_tracing(), vec!["CAP_BPF", "CAP_PERFMON"]);
    }
}
