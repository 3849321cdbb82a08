//! What the ceiling analysis weighs: the target's cost per connection and
//! every limit's value and use, as plain data (`monitor::gather` reads
//! them from the system), so the formulas in `limits.rs` are pure.

use crate::{model::evidence::WindowEvidence, model::sock_census::PairUse, system::apps::AppLimit};

#[derive(Debug, Clone, Default)]
pub struct ProcessLimits {
    pub pid: u32,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub open_fds: u64,
    /// TCP connections it holds an fd for (from the fd walk), when known:
    /// its other fds are what the connections cannot use.
    pub connection_fds: Option<u64>,
}

/// The target's dialled connections and the ports they draw on.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// net.ipv4.ip_local_port_range: ports per (source, destination).
    pub ports_per_pair: u64,
    /// Open connections per pair, from the socket walk.
    pub pairs: Vec<PairUse>,
}

/// A known server whose own limit could not be read.
#[derive(Debug, Clone)]
pub struct UnreadableApp {
    pub server: &'static str,
    pub why: String,
}

/// A bound on threads: where it is set, its value, and the threads it
/// counts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadBound {
    pub source: String,
    pub limit: u64,
    pub in_use: u64,
}

/// The target's threads per connection, and each bound on threads
/// (threads-max, pid_max, RLIMIT_NPROC, the cgroup's pids.max).
#[derive(Debug, Clone, Default)]
pub struct Threads {
    pub per_connection: f64,
    pub bounds: Vec<ThreadBound>,
}

/// The memory limit of the target's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMemory {
    /// The file that sets it (`memory.max`, `memory.limit_in_bytes`).
    pub source: String,
    pub limit_bytes: u64,
    pub usage_bytes: u64,
    /// `sock` of the cgroup's memory.stat (v2 and v1 with
    /// memory.kmem.tcp): the kernel's own count of its sockets' buffer
    /// memory, a cross-check of c1m's.
    pub sock_bytes: Option<u64>,
}

/// A table with a fixed size and its entries in use now (conntrack,
/// orphans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub max: u64,
    pub used: u64,
}

/// How `CeilingInputs::user_bytes` was found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserBytesBasis {
    /// The regression slope of memory over connections, when its fit is good.
    Marginal,
    /// Memory / connections.
    #[default]
    Average,
}

impl std::fmt::Display for UserBytesBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserBytesBasis::Marginal => "marginal",
            UserBytesBasis::Average => "average",
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct CeilingInputs {
    pub connections: u64,
    /// Kernel objects + buffers per connection, and userspace bytes.
    pub kernel_bytes: Option<f64>,
    /// Kernel objects whose size is unknown (left out of `kernel_bytes`,
    /// which is then a lower bound).
    pub kernel_unknown: Vec<&'static str>,
    pub user_bytes: Option<f64>,
    pub user_bytes_basis: UserBytesBasis,
    pub buffer_bytes: Option<f64>,
    pub fds_per_connection: f64,
    /// Files the box spends per connection (1 for the target's side; 2
    /// when both ends are on this box, as in `selftest`).
    pub files_per_connection: f64,
    pub processes: Vec<ProcessLimits>,
    pub nr_open: Option<u64>,
    /// fs.file-nr: allocated, and fs.file-max.
    pub files_allocated: Option<u64>,
    pub file_max: Option<u64>,
    /// The kernel does not apply fs.file-max to processes with
    /// CAP_SYS_ADMIN: true when every target process has it.
    pub file_max_exempt: bool,
    pub mem_available: Option<u64>,
    pub mem_reclaimable_slab: Option<u64>,
    pub cgroup_memory: Option<CgroupMemory>,
    pub tcp_mem_pages: Option<[u64; 3]>,
    pub tcp_mem_used_pages: Option<u64>,
    /// Connections the target dialled, by (source, destination), when it
    /// dials out at all.
    pub outbound: Option<Outbound>,
    pub tw_max_buckets: Option<u64>,
    pub tw_steady_state: f64,
    pub tw_current: u64,
    /// TIME_WAIT entries caused by the target (its active closes).
    pub tw_entered: u64,
    /// `TCPTimeWaitOverflow` movement: namespace-wide, so it counts against
    /// the target only when the target itself is entering TIME_WAIT.
    pub tw_overflows: u64,
    /// nf_conntrack_max and nf_conntrack_count, when conntrack is tracking.
    pub conntrack: Option<Capacity>,
    /// Packets conntrack dropped for a full table (`drop` + `early_drop`
    /// of /proc/net/stat/nf_conntrack) over the evidence window.
    pub conntrack_drops: u64,
    pub somaxconn: Option<u64>,
    /// `ListenOverflows`/`ListenDrops` movement of the whole network
    /// namespace since attach: context only (any process moves it).
    pub namespace_listen_overflows: u64,
    /// The target's own signs over the evidence window.
    pub evidence: WindowEvidence,
    /// The caps the target's server puts on itself, read from its
    /// configuration.
    pub app_limits: Vec<AppLimit>,
    pub app_unreadable: Vec<UnreadableApp>,
    /// tcp_max_orphans and the orphans now.
    pub orphans: Option<Capacity>,
    pub threads: Option<Threads>,
}
