//! Reading the limits the analysis needs from the running system, for the
//! target's processes. Everything unreadable stays `None` (and its limit
//! is then left out or shown without a count), never zero.

use std::collections::BTreeMap;

use crate::{
    analysis::inputs::{
        Capacity, CeilingInputs, CgroupMemory, Outbound, ProcessLimits, ThreadBound, Threads,
        UnreadableApp, UserBytesBasis,
    },
    model::{evidence::WindowEvidence, report::Report, sock_census::PairUse},
    system::{
        apps::AppLimits,
        cgroup::{cgroup_dirs, parse_limit, parse_stat_field, parse_usage},
        meminfo::read_meminfo,
        memory::open_fds as count_open_fds,
        netstat::Counters,
        privileges::Privileges,
        process::read_stat,
        process_limits::{limit_value, read_process_limits},
        sockstat::read_sockstat,
        sysctl::{ephemeral_ports, read_sysctl_numbers, read_sysctl_u64},
    },
};

/// What the caller knows beyond the report.
pub struct GatherContext<'a> {
    pub report: &'a Report,
    /// Open fds per target process (from the fd scan or /proc).
    pub fds_by_pid: &'a BTreeMap<u32, u64>,
    /// TCP connection fds per target process (from the fd walk; empty
    /// without one).
    pub connection_fds_by_pid: &'a BTreeMap<u32, u64>,
    /// Kernel counters when sampling started, at the start of the evidence
    /// window, and now, for what moved.
    pub netstat_start: &'a Counters,
    pub netstat_window_start: &'a Counters,
    pub netstat_now: &'a Counters,
    /// The target's own signs over the evidence window.
    pub evidence: &'a WindowEvidence,
    /// The caps its server sets itself.
    pub app: &'a AppLimits,
    /// The ports its dialled connections hold by (source, destination):
    /// open ones from the last walk, TIME_WAIT from the last minute's
    /// closes (`None` without a walk).
    pub outbound_pairs: Option<Vec<PairUse>>,
    /// 1 for the target alone; 2 when both ends are on this box.
    pub files_per_connection: f64,
}

pub fn gather(ctx: &GatherContext<'_>) -> CeilingInputs {
    let report = ctx.report;
    let cost = &report.cost_per_connection;
    let connections = report.connections.current;
    let moved_since = |start: &Counters, name: &str| {
        ctx.netstat_now
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(start.get(name).copied().unwrap_or(0))
    };
    let moved = |name: &str| moved_since(ctx.netstat_start, name);
    let moved_in_window = |name: &str| moved_since(ctx.netstat_window_start, name);
    // The regression slope is the better figure when it fits well; a poor
    // fit (few distinct counts, noisy memory) is worse than the average.
    let marginal = cost
        .user_marginal_bytes
        .filter(|m| *m > 0.0 && cost.user_marginal_r2.is_some_and(|r2| r2 >= 0.9));
    let sockstat = read_sockstat();
    let meminfo = read_meminfo().ok();
    let file_nr = read_sysctl_numbers::<3>("fs.file-nr").ok();
    // A target that dials out spends ephemeral ports, per (source,
    // destination) pair in use, as the walk found them.
    let outbound = ctx.outbound_pairs.as_ref().map(|pairs| Outbound {
        ports_per_pair: ephemeral_ports(),
        pairs: pairs.clone(),
    });
    CeilingInputs {
        connections,
        kernel_bytes: (cost.kernel_bytes > 0).then_some(cost.kernel_bytes as f64),
        kernel_unknown: cost.kernel_unknown.clone(),
        user_bytes: marginal.or(cost.user_bytes.map(|b| b as f64)),
        user_bytes_basis: if marginal.is_some() {
            UserBytesBasis::Marginal
        } else {
            UserBytesBasis::Average
        },
        buffer_bytes: cost.kernel_breakdown.get("buffers").map(|b| *b as f64),
        // Every connection a server holds is at least one fd; a slope below
        // one is samples taken while connections waited in the accept queue,
        // and would promise more connections than the fd limit allows.
        fds_per_connection: cost.fds_marginal.unwrap_or(1.0).max(1.0),
        files_per_connection: ctx.files_per_connection,
        processes: report
            .target
            .pids
            .iter()
            .filter_map(|&pid| {
                let mut limits = process_limits(pid, ctx.fds_by_pid.get(&pid).copied())?;
                limits.connection_fds = ctx.connection_fds_by_pid.get(&pid).copied();
                Some(limits)
            })
            .collect(),
        nr_open: read_sysctl_u64("fs.nr_open").ok(),
        files_allocated: file_nr.map(|[allocated, _, _]| allocated),
        file_max: read_sysctl_u64("fs.file-max").ok(),
        file_max_exempt: file_max_exempt(&report.target.pids),
        mem_available: meminfo.as_ref().and_then(|m| m.mem_available),
        mem_reclaimable_slab: meminfo.as_ref().and_then(|m| m.s_reclaimable),
        cgroup_memory: report
            .target
            .pids
            .first()
            .and_then(|&pid| cgroup_memory(pid)),
        tcp_mem_pages: read_sysctl_numbers::<3>("net.ipv4.tcp_mem").ok(),
        tcp_mem_used_pages: sockstat.get("TCP.mem").copied(),
        outbound,
        tw_max_buckets: report.time_wait.max_buckets,
        tw_steady_state: report.time_wait.steady_state,
        tw_current: report.time_wait.current,
        tw_entered: report.time_wait.entered_total,
        tw_overflows: moved_in_window("TcpExt.TCPTimeWaitOverflow"),
        conntrack: conntrack(),
        conntrack_drops: moved_in_window("NfConntrack.drop")
            + moved_in_window("NfConntrack.early_drop"),
        somaxconn: read_sysctl_u64("net.core.somaxconn").ok(),
        // ListenDrops counts every ListenOverflows again (and other drops):
        // the larger is the number of connections dropped.
        namespace_listen_overflows: moved("TcpExt.ListenOverflows")
            .max(moved("TcpExt.ListenDrops")),
        evidence: ctx.evidence.clone(),
        app_limits: ctx.app.limits.clone(),
        app_unreadable: ctx
            .app
            .unreadable
            .iter()
            .map(|err| UnreadableApp {
                server: err.server,
                why: err.why.clone(),
            })
            .collect(),
        orphans: read_sysctl_u64("net.ipv4.tcp_max_orphans")
            .ok()
            .map(|max| Capacity {
                max,
                used: sockstat.get("TCP.orphan").copied().unwrap_or(0),
            }),
        threads: threads(cost.threads_marginal, report.target.pids.first().copied()),
    }
}

/// Whether every target process (that can still be read) has
/// CAP_SYS_ADMIN, which the kernel exempts from fs.file-max.
fn file_max_exempt(pids: &[u32]) -> bool {
    let privileges: Vec<Privileges> = pids
        .iter()
        .filter_map(|&p| Privileges::of_process(p))
        .collect();
    !privileges.is_empty() && privileges.iter().all(|p| p.cap_sys_admin)
}

fn process_limits(pid: u32, open_fds: Option<u64>) -> Option<ProcessLimits> {
    let limit = read_process_limits(pid).ok()?.max_open_files;
    Some(ProcessLimits {
        pid,
        nofile_soft: limit_value(limit.soft_limit),
        nofile_hard: limit_value(limit.hard_limit),
        open_fds: match open_fds {
            Some(n) => n,
            None => count_open_fds(pid).ok()?,
        },
        connection_fds: None,
    })
}

/// The memory limit of the cgroup `pid` is in: (file, limit, usage), when
/// one is set (v2 `memory.max`, or v1 `memory.limit_in_bytes`).
fn cgroup_memory(pid: u32) -> Option<CgroupMemory> {
    let read_limit = |file: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| parse_limit(&text))
    };
    for (dir, v2) in cgroup_dirs(pid, "memory") {
        let (limit_files, usage_file) = if v2 {
            // memory.high throttles and reclaims before memory.max kills:
            // whichever is lower is where the connections stop growing.
            (
                vec![format!("{dir}/memory.high"), format!("{dir}/memory.max")],
                format!("{dir}/memory.current"),
            )
        } else {
            (
                vec![format!("{dir}/memory.limit_in_bytes")],
                format!("{dir}/memory.usage_in_bytes"),
            )
        };
        let Some((source, limit)) = limit_files
            .into_iter()
            .filter_map(|file| read_limit(&file).map(|limit| (file, limit)))
            .min_by_key(|(_, limit)| *limit)
        else {
            continue;
        };
        let usage = parse_usage(std::fs::read_to_string(&usage_file).ok());
        return Some(CgroupMemory {
            source,
            limit_bytes: limit,
            usage_bytes: usage,
            sock_bytes: std::fs::read_to_string(format!("{dir}/memory.stat"))
                .ok()
                .and_then(|stat| parse_stat_field(&stat, "sock")),
        });
    }
    None
}

/// Conntrack matters only when it tracks something.
fn conntrack() -> Option<Capacity> {
    let max = read_sysctl_u64("net.netfilter.nf_conntrack_max").ok()?;
    let count = read_sysctl_u64("net.netfilter.nf_conntrack_count").ok()?;
    (count > 0).then_some(Capacity { max, used: count })
}

/// Every bound on the number of threads the target could meet.
fn threads(per_connection: Option<f64>, pid: Option<u32>) -> Option<Threads> {
    // /proc/loadavg's "1/123": 123 threads (scheduling entities) on the box.
    let total = {
        use procfs::Current as _;
        u64::from(procfs::LoadAverage::current().ok()?.max)
    };
    let mut bounds = Vec::new();
    for name in ["kernel.threads-max", "kernel.pid_max"] {
        if let Ok(max) = read_sysctl_u64(name) {
            bounds.push(ThreadBound {
                source: name.to_owned(),
                limit: max,
                in_use: total,
            });
        }
    }
    if let Some(pid) = pid {
        let threads = read_stat(pid).map_or(0, |s| s.num_threads.max(0) as u64);
        if let Ok(limits) = read_process_limits(pid)
            && let procfs::process::LimitValue::Value(nproc) = limits.max_processes.soft_limit
        {
            // Counted per user; the target's own threads are a lower bound.
            bounds.push(ThreadBound {
                source: "RLIMIT_NPROC".to_owned(),
                limit: nproc,
                in_use: threads,
            });
        }
        if let Some(pids) = cgroup_pids(pid) {
            bounds.push(ThreadBound {
                source: "pids.max".to_owned(),
                limit: pids.max,
                in_use: pids.used,
            });
        }
    }
    Some(Threads {
        per_connection: per_connection.unwrap_or(0.0).max(0.0),
        bounds,
    })
}

/// The target cgroup's pids.max and pids.current, when a limit is set.
fn cgroup_pids(pid: u32) -> Option<Capacity> {
    cgroup_dirs(pid, "pids").into_iter().find_map(|(dir, _)| {
        let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).ok();
        let max = parse_limit(&read("pids.max")?)?;
        Some(Capacity {
            max,
            used: parse_usage(read("pids.current")),
        })
    })
}
