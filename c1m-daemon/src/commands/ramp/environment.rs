//! The box a ramp ran on, kept in its result so two runs can be compared
//! (`diff`): kernel, CPUs, memory, the sysctls and rlimits that bound
//! connection counts.

use std::collections::BTreeMap;

use super::result::Environment;
use crate::system::{
    meminfo::read_meminfo,
    process_limits::{limit_value, read_process_limits},
    sysctl::read_sysctl,
};

/// Sysctls that bound how many connections a box holds or how fast it
/// takes them.
pub const SYSCTLS: &[&str] = &[
    "fs.file-max",
    "fs.nr_open",
    "net.core.somaxconn",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.netfilter.nf_conntrack_max",
    "kernel.threads-max",
    "kernel.pid_max",
];

pub fn read_environment(target_pid: Option<u32>) -> Environment {
    let sysctls = SYSCTLS
        .iter()
        .filter_map(|name| {
            let value = read_sysctl(name).ok()?;
            Some((
                name.to_string(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect();
    let mut limits = BTreeMap::new();
    let mut nofile = |who: &str, pid: u32| {
        if let Ok(l) = read_process_limits(pid) {
            let f = l.max_open_files;
            limits.insert(
                format!("{who} nofile"),
                format!(
                    "{} (hard {})",
                    limit_value(f.soft_limit),
                    limit_value(f.hard_limit)
                ),
            );
        }
    };
    if let Some(pid) = target_pid {
        nofile("target", pid);
    }
    nofile("load", std::process::id());
    Environment {
        kernel: read_sysctl("kernel.osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u64),
        memory_bytes: read_meminfo().map_or(0, |m| m.mem_total),
        sysctls,
        limits,
        c1m_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}
