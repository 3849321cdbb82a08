//! One formula per limit. Each turns a limit's value, its current use and
//! the use per connection into the connections it allows; the tightest
//! allowed count (or a limit being hit right now) binds.

use serde::Serialize;

pub const PAGE_BYTES: f64 = 4096.0;

#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub name: &'static str,
    /// Where the value comes from: a sysctl, an rlimit, a cgroup file.
    pub source: String,
    pub value: Option<f64>,
    pub used: Option<f64>,
    pub per_connection: Option<f64>,
    /// Connections the target could hold under this limit alone; `None`
    /// when it does not bound the count (a rate limit, or not in play).
    pub max_connections: Option<u64>,
    /// Being hit right now (its overflow counter moved).
    pub exceeded: bool,
    pub explanation: String,
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Binding {
    pub name: &'static str,
    pub max_connections: Option<u64>,
    pub explanation: String,
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub binding: Option<Binding>,
    /// Tightest first: limits being hit, then by connections allowed.
    pub limits: Vec<Limit>,
    /// One sentence: the binding limit and the next one.
    pub verdict: String,
}

#[derive(Debug, Clone, Default)]
pub struct ProcessLimits {
    pub pid: u32,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub open_fds: u64,
}

/// A bound on threads: (source, limit, in use).
pub type ThreadBound = (String, u64, u64);

#[derive(Debug, Clone, Default)]
pub struct CeilingInputs {
    pub connections: u64,
    /// Kernel objects + buffers per connection, and userspace bytes.
    pub kernel_bytes: Option<f64>,
    pub user_bytes: Option<f64>,
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
    /// (source file, limit bytes, usage bytes) of the target's cgroup.
    pub cgroup_memory: Option<(String, u64, u64)>,
    pub tcp_mem_pages: Option<[u64; 3]>,
    pub tcp_mem_used_pages: Option<u64>,
    /// Outbound connections: (ports per IP, source IPs, destinations, open).
    pub outbound: Option<(u64, u64, u64, u64)>,
    pub tw_max_buckets: Option<u64>,
    pub tw_steady_state: f64,
    pub tw_current: u64,
    /// TIME_WAIT entries caused by the target (its active closes).
    pub tw_entered: u64,
    /// `TCPTimeWaitOverflow` movement: namespace-wide, so it counts against
    /// the target only when the target itself is entering TIME_WAIT.
    pub tw_overflows: u64,
    /// (nf_conntrack_max, nf_conntrack_count) when conntrack is tracking.
    pub conntrack: Option<(u64, u64)>,
    pub somaxconn: Option<u64>,
    pub listen_overflows: u64,
    /// (tcp_max_orphans, orphans now).
    pub orphans: Option<(u64, u64)>,
    /// Target threads per connection, and each bound on threads:
    /// (source, limit, in use) for threads-max, pid_max, RLIMIT_NPROC,
    /// the cgroup's pids.max.
    pub threads: Option<(f64, Vec<ThreadBound>)>,
}

/// A process that only supervises (few fds) accepts nothing: its fd
/// headroom is not connection headroom.
const SUPERVISOR_FDS: u64 = 64;

pub fn analyze(i: &CeilingInputs) -> Ceiling {
    let mut limits = vec![
        file_max(i),
        memory(i),
        tcp_mem(i),
        time_wait_buckets(i),
        accept_backlog(i),
    ];
    // Without target processes (a projection for the box, where servers
    // and clients can add processes), per-process fd limits do not bind.
    if !i.processes.is_empty() {
        limits.push(nofile(i));
        limits.push(nr_open(i));
    }
    limits.extend(cgroup_memory(i));
    limits.extend(ephemeral_ports(i));
    limits.extend(conntrack(i));
    limits.extend(orphans(i));
    limits.extend(threads(i));
    limits.sort_by_key(|l| (!l.exceeded, l.max_connections.unwrap_or(u64::MAX)));
    let binding = limits
        .iter()
        .find(|l| l.exceeded || l.max_connections.is_some())
        .map(|l| Binding {
            name: l.name,
            max_connections: l.max_connections,
            explanation: l.explanation.clone(),
            remedy: l.remedy.clone(),
        });
    let verdict = verdict(&limits);
    Ceiling {
        binding,
        limits,
        verdict,
    }
}

fn verdict(limits: &[Limit]) -> String {
    let mut bounded = limits
        .iter()
        .filter(|l| l.exceeded || l.max_connections.is_some());
    let Some(first) = bounded.next() else {
        return "Ceiling: no limit could be computed yet (no connections to price).".into();
    };
    // nr_open is how far nofile could be raised, not a ceiling of its own.
    let next = bounded
        .find(|l| l.max_connections.is_some() && l.name != first.name && l.name != "nr_open")
        .map(|l| {
            format!(
                " Next: {} at {}.",
                l.name,
                human_count(l.max_connections.unwrap_or(0))
            )
        })
        .unwrap_or_default();
    match first.max_connections {
        Some(n) if !first.exceeded => format!(
            "Ceiling: {} connections, set by {} ({}).{next}",
            human_count(n),
            first.name,
            first.explanation
        ),
        _ => format!(
            "Ceiling: being hit now: {} ({}).{next}",
            first.name, first.explanation
        ),
    }
}

/// 19990 -> "19,990"; 1234567 -> "1.2M".
pub fn human_count(n: u64) -> String {
    if n >= 1_000_000 {
        return format!("{:.1}M", n as f64 / 1e6);
    }
    let digits = n.to_string();
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Connections a headroom allows at `per` each, plus those open now.
fn allowed(current: u64, headroom: f64, per: f64) -> Option<u64> {
    (per > 0.0).then(|| current + (headroom.max(0.0) / per).floor() as u64)
}

fn limit(name: &'static str, source: String) -> Limit {
    Limit {
        name,
        source,
        value: None,
        used: None,
        per_connection: None,
        max_connections: None,
        exceeded: false,
        explanation: String::new(),
        remedy: String::new(),
    }
}

fn accepting(i: &CeilingInputs) -> Vec<&ProcessLimits> {
    let busy: Vec<&ProcessLimits> = i
        .processes
        .iter()
        .filter(|p| p.open_fds > SUPERVISOR_FDS)
        .collect();
    if busy.is_empty() {
        i.processes.iter().collect()
    } else {
        busy
    }
}

fn nofile(i: &CeilingInputs) -> Limit {
    let procs = accepting(i);
    let mut l = limit(
        "nofile",
        format!(
            "RLIMIT_NOFILE of pid {}",
            procs
                .iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let soft: u64 = procs.iter().map(|p| p.nofile_soft).sum();
    let open: u64 = procs.iter().map(|p| p.open_fds).sum();
    l.value = Some(soft as f64);
    l.used = Some(open as f64);
    l.per_connection = Some(i.fds_per_connection);
    l.max_connections = allowed(
        i.connections,
        soft as f64 - open as f64,
        i.fds_per_connection,
    );
    let per_process = procs.first().map_or(0, |p| p.nofile_soft);
    l.explanation = if procs.len() > 1 {
        format!(
            "the per-process file descriptor limit, nofile {per_process} in each of {} processes",
            procs.len()
        )
    } else {
        format!("the per-process file descriptor limit, nofile {per_process}")
    };
    let hard = procs.first().map_or(0, |p| p.nofile_hard);
    l.remedy = format!(
        "raise the server's fd limit: `ulimit -n {n}` before starting it, `prlimit --pid PID \
         --nofile={n}:{n}`, or LimitNOFILE={n} in its systemd unit (hard limit now {hard}; \
         above it needs root, up to fs.nr_open)",
        n = (per_process * 2).max(65536),
    );
    l
}

fn nr_open(i: &CeilingInputs) -> Limit {
    let mut l = limit("nr_open", "sysctl fs.nr_open".into());
    let procs = accepting(i).len().max(1) as f64;
    if let Some(nr_open) = i.nr_open {
        l.value = Some(nr_open as f64);
        l.per_connection = Some(i.fds_per_connection);
        let open: u64 = accepting(i).iter().map(|p| p.open_fds).sum();
        l.max_connections = allowed(
            i.connections,
            nr_open as f64 * procs - open as f64,
            i.fds_per_connection,
        );
        l.explanation =
            format!("the most any process's fd limit can be raised to, fs.nr_open {nr_open}");
        l.remedy = format!("sysctl -w fs.nr_open={}", nr_open * 2);
    }
    l
}

fn file_max(i: &CeilingInputs) -> Limit {
    let mut l = limit("file_max", "sysctl fs.file-max (fs.file-nr)".into());
    if let (Some(max), Some(allocated)) = (i.file_max, i.files_allocated) {
        l.value = Some(max as f64);
        l.used = Some(allocated as f64);
        l.per_connection = Some(i.files_per_connection);
        if i.file_max_exempt {
            l.explanation = format!(
                "fs.file-max {} does not apply: the kernel lets processes with CAP_SYS_ADMIN \
                 (root) exceed it",
                human_count(max)
            );
        } else {
            l.max_connections = allowed(
                i.connections,
                max as f64 - allocated as f64,
                i.files_per_connection,
            );
            l.explanation = format!(
                "the box-wide file handle limit, fs.file-max {}",
                human_count(max)
            );
        }
        l.remedy = format!("sysctl -w fs.file-max={}", max * 2);
    }
    l
}

fn memory(i: &CeilingInputs) -> Limit {
    let mut l = limit("memory", "/proc/meminfo MemAvailable - SReclaimable".into());
    if let Some(available) = i.mem_available {
        // Socket inodes are "reclaimable" slab that cannot be reclaimed
        // while the socket is open, so MemAvailable overstates the room.
        let budget = available.saturating_sub(i.mem_reclaimable_slab.unwrap_or(0));
        let per = i.kernel_bytes.unwrap_or(0.0) + i.user_bytes.unwrap_or(0.0);
        l.value = Some(budget as f64);
        l.per_connection = (per > 0.0).then_some(per);
        l.max_connections = allowed(i.connections, budget as f64, per);
        l.explanation = format!(
            "memory: {} available at {} per connection (kernel + userspace)",
            bytesize::ByteSize(budget),
            bytesize::ByteSize(per as u64)
        );
        l.remedy = "add memory, or lower the per-connection cost (smaller buffers, less \
                    userspace state per connection)"
            .into();
    }
    l
}

fn cgroup_memory(i: &CeilingInputs) -> Option<Limit> {
    let (source, max, usage) = i.cgroup_memory.clone()?;
    let mut l = limit("cgroup_memory", source.clone());
    let per = i.kernel_bytes.unwrap_or(0.0) + i.user_bytes.unwrap_or(0.0);
    l.value = Some(max as f64);
    l.used = Some(usage as f64);
    l.per_connection = (per > 0.0).then_some(per);
    l.max_connections = allowed(i.connections, max as f64 - usage as f64, per);
    l.explanation = format!(
        "the target's cgroup memory limit, {}",
        bytesize::ByteSize(max)
    );
    l.remedy = format!("raise {source} (e.g. MemoryMax= in the systemd unit)");
    Some(l)
}

fn tcp_mem(i: &CeilingInputs) -> Limit {
    let mut l = limit("tcp_mem", "sysctl net.ipv4.tcp_mem (pages)".into());
    if let Some([_, pressure, max]) = i.tcp_mem_pages {
        let used = i.tcp_mem_used_pages.unwrap_or(0);
        l.value = Some(max as f64);
        l.used = Some(used as f64);
        let per_pages = i.buffer_bytes.unwrap_or(0.0) / PAGE_BYTES;
        l.per_connection = Some(per_pages);
        l.max_connections = allowed(i.connections, (max as f64) - used as f64, per_pages);
        l.exceeded = used >= max;
        l.explanation = if per_pages > 0.0 {
            format!(
                "TCP buffer memory, tcp_mem max {max} pages (pressure at {pressure}) at {per_pages:.2} pages per connection"
            )
        } else {
            format!("TCP buffer memory, tcp_mem max {max} pages: idle connections hold no buffers")
        };
        l.remedy = format!(
            "sysctl -w net.ipv4.tcp_mem=\"{} {} {}\"",
            pressure,
            max,
            max * 2
        );
    }
    l
}

fn time_wait_buckets(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        "time_wait_buckets",
        "sysctl net.ipv4.tcp_max_tw_buckets".into(),
    );
    if let Some(max) = i.tw_max_buckets {
        l.value = Some(max as f64);
        l.used = Some(i.tw_current as f64);
        let overflowing = i.tw_overflows > 0 && i.tw_entered > 0;
        l.exceeded = overflowing || i.tw_steady_state >= max as f64;
        l.explanation = if overflowing {
            format!(
                "TIME_WAIT buckets: {} sockets dropped (TCPTimeWaitOverflow), tcp_max_tw_buckets {max}",
                i.tw_overflows
            )
        } else {
            format!(
                "TIME_WAIT buckets: heading to {:.0} of tcp_max_tw_buckets {max} at the current close rate",
                i.tw_steady_state
            )
        };
        l.remedy = format!(
            "sysctl -w net.ipv4.tcp_max_tw_buckets={}; or let clients close first, or reuse connections",
            (max * 2).max(i.tw_steady_state as u64 * 2)
        );
    }
    l
}

fn accept_backlog(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        "accept_backlog",
        "listen() backlog, capped by net.core.somaxconn".into(),
    );
    l.value = i.somaxconn.map(|v| v as f64);
    l.used = Some(i.listen_overflows as f64);
    l.exceeded = i.listen_overflows > 0;
    l.explanation = if l.exceeded {
        format!(
            "the accept queue overflowed {} times (ListenOverflows/ListenDrops): the server \
             accepts slower than connections arrive",
            i.listen_overflows
        )
    } else {
        "the accept queue has not overflowed".into()
    };
    l.remedy = format!(
        "accept faster (more workers), and raise the backlog: listen(fd, N) and sysctl -w net.core.somaxconn={}",
        (i.somaxconn.unwrap_or(4096) * 4).max(16384)
    );
    l
}

fn ephemeral_ports(i: &CeilingInputs) -> Option<Limit> {
    let (ports, ips, destinations, open) = i.outbound?;
    let mut l = limit(
        "ephemeral_ports",
        "sysctl net.ipv4.ip_local_port_range x source IPs x destinations".into(),
    );
    let total = ports * ips.max(1) * destinations.max(1);
    l.value = Some(total as f64);
    l.used = Some(open as f64);
    l.per_connection = Some(1.0);
    // Only the outbound connections use ports: the allowance adds to them.
    l.max_connections = Some(i.connections.saturating_sub(open) + total);
    l.explanation = format!(
        "ephemeral ports for outbound connections: {ports} per (source IP, destination) x {} source IP(s) x {} destination(s)",
        ips.max(1),
        destinations.max(1)
    );
    l.remedy = "add source IPs (load --source-ips), widen net.ipv4.ip_local_port_range, or \
                connect to more destination addresses/ports"
        .into();
    Some(l)
}

fn conntrack(i: &CeilingInputs) -> Option<Limit> {
    let (max, count) = i.conntrack?;
    let mut l = limit("conntrack", "sysctl net.netfilter.nf_conntrack_max".into());
    l.value = Some(max as f64);
    l.used = Some(count as f64);
    l.per_connection = Some(1.0);
    l.max_connections = allowed(i.connections, max as f64 - count as f64, 1.0);
    l.explanation = format!("connection tracking entries, nf_conntrack_max {max}");
    l.remedy = format!(
        "sysctl -w net.netfilter.nf_conntrack_max={}, or exempt this traffic (NOTRACK)",
        max * 2
    );
    Some(l)
}

fn orphans(i: &CeilingInputs) -> Option<Limit> {
    let (max, now) = i.orphans?;
    let mut l = limit("orphans", "sysctl net.ipv4.tcp_max_orphans".into());
    l.value = Some(max as f64);
    l.used = Some(now as f64);
    l.exceeded = now >= max;
    l.explanation = format!("closed-but-unfinished sockets: {now} of tcp_max_orphans {max}");
    l.remedy = format!("sysctl -w net.ipv4.tcp_max_orphans={}", max * 2);
    Some(l)
}

fn threads(i: &CeilingInputs) -> Option<Limit> {
    let (per, bounds) = i.threads.clone()?;
    // The bound with the least room left.
    let (source, max, used) = bounds
        .into_iter()
        .min_by_key(|(_, max, used)| max.saturating_sub(*used))?;
    let mut l = limit("threads", source.clone());
    l.value = Some(max as f64);
    l.used = Some(used as f64);
    // A thread per connection is a thread-per-connection server: then
    // threads bound the count. Below one per hundred, they do not.
    if per >= 0.01 {
        l.per_connection = Some(per);
        l.max_connections = allowed(i.connections, max as f64 - used as f64, per);
        l.explanation = format!("threads: {per:.2} per connection, {source} {max}");
    } else {
        l.explanation = "threads do not grow with connections".into();
    }
    l.remedy = format!(
        "use an event loop instead of a thread per connection, or raise {source} (kernel.threads-max, kernel.pid_max, RLIMIT_NPROC / LimitNPROC=, TasksMax= / pids.max)"
    );
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CeilingInputs {
        CeilingInputs {
            connections: 1000,
            kernel_bytes: Some(4000.0),
            user_bytes: Some(1000.0),
            buffer_bytes: Some(0.0),
            fds_per_connection: 1.0,
            files_per_connection: 1.0,
            processes: vec![ProcessLimits {
                pid: 7,
                nofile_soft: 20000,
                nofile_hard: 20000,
                open_fds: 1010,
            }],
            nr_open: Some(1_048_576),
            files_allocated: Some(2000),
            file_max: Some(2_466_177),
            mem_available: Some(24 << 30),
            mem_reclaimable_slab: Some(0),
            tcp_mem_pages: Some([287901, 383868, 575802]),
            tcp_mem_used_pages: Some(10),
            tw_max_buckets: Some(131072),
            somaxconn: Some(4096),
            ..CeilingInputs::default()
        }
    }

    fn find<'a>(c: &'a Ceiling, name: &str) -> &'a Limit {
        c.limits.iter().find(|l| l.name == name).unwrap()
    }

    #[test]
    fn nofile_allows_the_fd_headroom_plus_current() {
        let c = analyze(&base());
        assert_eq!(
            find(&c, "nofile").max_connections,
            Some(1000 + 20000 - 1010)
        );
        let b = c.binding.unwrap();
        assert_eq!(b.name, "nofile");
        assert!(
            c.verdict
                .starts_with("Ceiling: 19,990 connections, set by nofile"),
            "{}",
            c.verdict
        );
        assert!(c.verdict.contains("Next: "), "{}", c.verdict);
        assert!(b.remedy.contains("LimitNOFILE="));
    }

    #[test]
    fn supervisors_do_not_add_headroom() {
        let mut i = base();
        i.processes.push(ProcessLimits {
            pid: 8,
            nofile_soft: 20000,
            nofile_hard: 20000,
            open_fds: 10,
        });
        assert_eq!(find(&analyze(&i), "nofile").max_connections, Some(19990));
        i.processes[1].open_fds = 1010;
        assert_eq!(
            find(&analyze(&i), "nofile").max_connections,
            Some(1000 + 2 * 18990)
        );
    }

    #[test]
    fn memory_divides_the_budget_by_kernel_plus_user_bytes() {
        let mut i = base();
        i.mem_available = Some(5_000_000);
        i.mem_reclaimable_slab = Some(1_000_000);
        let l = find(&analyze(&i), "memory").clone();
        assert_eq!(l.max_connections, Some(1000 + 4_000_000 / 5000));
        assert_eq!(l.per_connection, Some(5000.0));
    }

    #[test]
    fn file_max_counts_files_per_connection_on_the_box() {
        let mut i = base();
        i.files_per_connection = 2.0;
        i.file_max = Some(10_000);
        i.files_allocated = Some(4_000);
        assert_eq!(
            find(&analyze(&i), "file_max").max_connections,
            Some(1000 + 3000)
        );
    }

    #[test]
    fn tcp_mem_binds_only_when_connections_hold_buffers() {
        let mut i = base();
        assert_eq!(find(&analyze(&i), "tcp_mem").max_connections, None);
        i.buffer_bytes = Some(8192.0);
        i.tcp_mem_pages = Some([100, 200, 300]);
        i.tcp_mem_used_pages = Some(100);
        assert_eq!(
            find(&analyze(&i), "tcp_mem").max_connections,
            Some(1000 + 100)
        );
    }

    #[test]
    fn a_limit_being_hit_binds_before_any_count() {
        let mut i = base();
        i.tw_overflows = 12;
        // Overflows caused by others (the target closes nothing first).
        assert!(!find(&analyze(&i), "time_wait_buckets").exceeded);
        i.tw_entered = 500;
        let c = analyze(&i);
        assert_eq!(c.binding.as_ref().unwrap().name, "time_wait_buckets");
        assert!(c.verdict.contains("being hit now"), "{}", c.verdict);
        assert!(c.verdict.contains("TCPTimeWaitOverflow"), "{}", c.verdict);
        let mut i = base();
        i.listen_overflows = 3;
        assert_eq!(analyze(&i).binding.unwrap().name, "accept_backlog");
    }

    #[test]
    fn ephemeral_ports_multiply_by_source_ips_and_destinations() {
        let mut i = base();
        i.outbound = Some((28232, 2, 1, 1000));
        let l = find(&analyze(&i), "ephemeral_ports").clone();
        assert_eq!(l.max_connections, Some(56464));
        assert!(l.remedy.contains("source IPs"));
    }

    #[test]
    fn threads_bound_only_thread_per_connection_servers() {
        let mut i = base();
        let bounds = vec![
            ("kernel.threads-max".to_owned(), 100_000, 200),
            ("pids.max".to_owned(), 1000, 200),
        ];
        i.threads = Some((0.0, bounds.clone()));
        assert_eq!(find(&analyze(&i), "threads").max_connections, None);
        i.threads = Some((1.0, bounds));
        let l = find(&analyze(&i), "threads").clone();
        assert_eq!(l.max_connections, Some(1800));
        assert_eq!(l.source, "pids.max", "the tightest bound is named");
        assert_eq!(analyze(&i).binding.unwrap().name, "threads");
    }

    #[test]
    fn conntrack_and_cgroup_appear_only_when_in_play() {
        let c = analyze(&base());
        assert!(
            c.limits
                .iter()
                .all(|l| l.name != "conntrack" && l.name != "cgroup_memory")
        );
        let mut i = base();
        i.conntrack = Some((5000, 1000));
        i.cgroup_memory = Some(("memory.max".into(), 10_000_000, 5_000_000));
        let c = analyze(&i);
        assert_eq!(find(&c, "conntrack").max_connections, Some(5000));
        assert_eq!(find(&c, "cgroup_memory").max_connections, Some(2000));
        assert_eq!(c.binding.unwrap().name, "cgroup_memory");
    }

    #[test]
    fn a_box_projection_has_no_per_process_limits() {
        let mut i = base();
        i.processes.clear();
        let c = analyze(&i);
        assert!(
            c.limits
                .iter()
                .all(|l| l.name != "nofile" && l.name != "nr_open")
        );
        assert_eq!(c.binding.unwrap().name, "file_max");
    }

    #[test]
    fn limits_are_sorted_tightest_first() {
        let c = analyze(&base());
        let counts: Vec<u64> = c.limits.iter().filter_map(|l| l.max_connections).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(human_count(19990), "19,990");
        assert_eq!(human_count(1_234_567), "1.2M");
        assert_eq!(human_count(999), "999");
    }
}
