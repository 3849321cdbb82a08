//! The report: what the target's connections are doing and what each one
//! costs, built from samples with no I/O (the command gathers the inputs).

use std::collections::BTreeMap;

use c1m_common::{
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
};
use serde::Serialize;

use super::{
    regression::fit_line,
    sample::Sample,
    sock_census::{Buffers, SockCensus, SocketKinds},
    transitions::TransitionCounts,
};
use crate::system::slabinfo::SlabCache;

/// TCP_TIMEWAIT_LEN: a TIME_WAIT socket lives 60 s (fixed in Linux).
pub const TIME_WAIT_SECONDS: f64 = 60.0;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: TargetInfo,
    pub connections: Connections,
    pub time_wait: TimeWait,
    pub cost_per_connection: Cost,
    /// Buffer bytes held by all the target's sockets now (from the scan).
    pub kernel_buffers: Option<Buffers>,
    pub drops: BTreeMap<&'static str, u64>,
    /// Every limit, the connections each allows, and the binding one
    /// (filled by the sampler, which reads the system's limits).
    pub ceiling: Option<super::ceiling::Ceiling>,
    /// Kernel counters of the target's network namespace that
    /// node_exporter leaves out (it reads the host's): [`NETSTAT_COUNTERS`],
    /// cumulative since boot (filled by the sampler).
    pub netstat: BTreeMap<&'static str, u64>,
}

/// The `/proc/net/netstat` counters the report carries, by `Prefix.Name`:
/// accept queue overflows and drops, TIME_WAIT bucket overflows, TCP
/// memory pressure and aborts, SYN queue drops and syncookies; and, when
/// conntrack is loaded, its insert failures and full-table drops
/// (`/proc/net/stat/nf_conntrack`).
pub const NETSTAT_COUNTERS: &[&str] = &[
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPTimeWaitOverflow",
    "TcpExt.TCPMemoryPressures",
    "TcpExt.TCPAbortOnMemory",
    "TcpExt.TCPReqQFullDrop",
    "TcpExt.TCPReqQFullDoCookies",
    "NfConntrack.insert_failed",
    "NfConntrack.drop",
    "NfConntrack.early_drop",
];

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Its live processes (all of them have exited when `alive` is false:
    /// the report then keeps the last data seen while it ran).
    pub pids: Vec<u32>,
    pub alive: bool,
    /// Its processes that exited while watched (children that ended, or the
    /// named process itself), the last 64.
    pub exited: Vec<ExitedProcess>,
    /// Its own memory now (Pss_Anon + Pss_Shmem over its processes).
    pub memory_bytes: u64,
    /// The cgroup (v2 path, `/a/b`) whose processes are the target, when
    /// watched with `--cgroup` or `--container`.
    pub cgroup: Option<String>,
}

/// Where `connections` counts come from. The JSON words are the
/// documented API (README, `connections.source`), so the walk is still
/// "scan" there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConnectionsSource {
    /// Exact, from walking the kernel's sockets.
    #[serde(rename = "scan")]
    Walk,
    /// Counted from the state changes seen since c1m attached.
    #[serde(rename = "transitions")]
    Transitions,
}

/// Where `time_wait.current` comes from (JSON words as documented: the
/// walk is "scan").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TimeWaitSource {
    /// Counted by the walk: the target accepted all of them.
    #[serde(rename = "scan")]
    Walk,
    /// The walk's count plus an estimate for connections it dialled.
    #[serde(rename = "scan+estimate")]
    WalkAndEstimate,
    /// Entries over the last 60 s (no walk on this kernel).
    #[serde(rename = "estimate")]
    Estimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Open connections (every state but LISTEN and CLOSE).
    pub current: u64,
    pub by_state: BTreeMap<&'static str, u64>,
    /// Open connections the scan found that were accepted before c1m
    /// attached (their lifecycle was not seen; they count in `current`).
    pub preexisting: u64,
    pub source: ConnectionsSource,
    pub accepted_total: u64,
    pub connected_total: u64,
    pub closed_total: u64,
    /// Closes without the FIN exchange: a reset received or sent, or an
    /// abort (a socket leaving ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1
    /// or CLOSE_WAIT straight for CLOSE).
    pub reset_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeWait {
    /// The target's TIME_WAIT sockets now. From the scan: timewait sockets
    /// on the target's listening ports (its accepted connections it closed
    /// first), plus, for connections it dialled, the estimate below. Without
    /// the scan: the estimate, entries over the last 60 s.
    pub current: u64,
    pub current_source: TimeWaitSource,
    /// Active closes that completed into TIME_WAIT: the kernel reports the
    /// full socket's FIN_WAIT2/CLOSING -> CLOSE when the timewait socket
    /// takes over (it never reports the transition into TIME_WAIT itself).
    pub entered_total: u64,
    pub per_second: f64,
    /// Where the count is heading: rate x 60 s.
    pub steady_state: f64,
    pub max_buckets: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Sum of `kernel_breakdown`.
    pub kernel_bytes: u64,
    /// Average bytes per open connection of each kernel object kind (a
    /// kind only some connections hold, like a TIME_WAIT socket, is spread
    /// over all of them) and of socket buffers.
    pub kernel_breakdown: BTreeMap<&'static str, u64>,
    /// Kernel objects whose size this kernel does not expose (merged slab
    /// caches): not included in `kernel_bytes`, listed rather than zeroed.
    pub kernel_unknown: Vec<&'static str>,
    pub user_bytes: Option<u64>,
    pub user_marginal_bytes: Option<f64>,
    pub user_marginal_r2: Option<f64>,
    /// Open fds / open connections (includes the target's baseline fds).
    pub fds: Option<f64>,
    /// fds per additional connection (least-squares slope over samples).
    pub fds_marginal: Option<f64>,
    /// Threads per additional connection (1 for a thread-per-connection
    /// server, ~0 for an event loop).
    pub threads_marginal: Option<f64>,
    pub open_fds: u64,
}

/// Everything the report needs besides the samples.
pub struct Context<'a> {
    pub pids: Vec<u32>,
    pub alive: bool,
    pub exited: Vec<ExitedProcess>,
    pub slabs: &'a BTreeMap<String, SlabCache>,
    pub uses_epoll: bool,
    pub max_tw_buckets: Option<u64>,
    /// The target cgroup's path, when the target is one.
    pub cgroup: Option<String>,
    pub drops: BTreeMap<&'static str, u64>,
}

fn abortive_closes(t: &TransitionCounts) -> u64 {
    [
        TCP_ESTABLISHED,
        TCP_SYN_SENT,
        TCP_SYN_RECV,
        TCP_FIN_WAIT1,
        TCP_CLOSE_WAIT,
    ]
    .iter()
    .map(|&from| t.get(from, TCP_CLOSE))
    .sum()
}

/// Active closes that completed into TIME_WAIT (FIN_WAIT2/CLOSING -> CLOSE).
pub fn time_wait_entries(t: &TransitionCounts) -> u64 {
    t.get(TCP_FIN_WAIT2, TCP_CLOSE) + t.get(TCP_CLOSING, TCP_CLOSE)
}

pub fn build_report(samples: &[Sample], ctx: Context<'_>) -> Report {
    let last = samples.last().expect("a report needs at least one sample");
    let t = &last.transitions;
    let current = last.connections();

    // TIME_WAIT: rate over the last interval, count over the last 60 s.
    let entered_total = time_wait_entries(t);
    let per_second = match samples {
        [.., before, after] if after.at_seconds > before.at_seconds => {
            (time_wait_entries(&after.transitions) - time_wait_entries(&before.transitions)) as f64
                / (after.at_seconds - before.at_seconds)
        }
        _ => 0.0,
    };
    let window_start = samples
        .iter()
        .rev()
        .find(|s| last.at_seconds - s.at_seconds >= TIME_WAIT_SECONDS);
    // Entries over the last 60 s: what is still in TIME_WAIT, unless a
    // client reused the 4-tuple (TWRecycled) and ended one early, which is
    // why an estimate is used only where no walk can count.
    let in_last_minute = |entries: &dyn Fn(&Sample) -> u64| {
        entries(last).saturating_sub(window_start.map_or(0, entries))
    };
    let dialled = |s: &Sample| s.events.get("dialled_time_wait").copied().unwrap_or(0);
    let connected_total = t.get(TCP_SYN_SENT, TCP_ESTABLISHED);
    let (time_wait_current, time_wait_source) = match &last.census {
        // The walk sees the timewait sockets on the target's ports (those it
        // accepted); those of connections it dialled are elsewhere, so only
        // they are estimated.
        Some(scan) => match in_last_minute(&dialled) {
            0 => (scan.time_wait(), TimeWaitSource::Walk),
            estimated => (
                scan.time_wait() + estimated,
                TimeWaitSource::WalkAndEstimate,
            ),
        },
        None => (
            in_last_minute(&|s: &Sample| time_wait_entries(&s.transitions)),
            TimeWaitSource::Estimate,
        ),
    };

    let (kernel_breakdown, kernel_unknown) = kernel_objects(last, current, &ctx);
    let per_connection = |total: u64| (current > 0).then(|| total as f64 / current as f64);
    let fitted = samples_to_fit(samples);
    let fit = fit_line(&points(&fitted, |s| s.user_bytes));
    let fd_fit = fit_line(&points(&fitted, |s| s.open_fds));
    let thread_fit = fit_line(&points(&fitted, |s| s.threads));

    Report {
        target: TargetInfo {
            pids: ctx.pids,
            alive: ctx.alive,
            exited: ctx.exited,
            memory_bytes: last.user_bytes,
            cgroup: ctx.cgroup,
        },
        connections: Connections {
            current,
            by_state: match &last.census {
                Some(scan) => scan.by_state(),
                None => t.current_by_state(),
            },
            preexisting: last.census.as_ref().map_or(0, SockCensus::preexisting),
            source: if last.census.is_some() {
                ConnectionsSource::Walk
            } else {
                ConnectionsSource::Transitions
            },
            accepted_total: t.get(TCP_SYN_RECV, TCP_ESTABLISHED),
            connected_total,
            closed_total: t.entered_state(TCP_CLOSE) - t.get(TCP_LISTEN, TCP_CLOSE),
            reset_total: abortive_closes(t),
        },
        time_wait: TimeWait {
            current: time_wait_current,
            current_source: time_wait_source,
            entered_total,
            per_second,
            steady_state: per_second * TIME_WAIT_SECONDS,
            max_buckets: ctx.max_tw_buckets,
        },
        cost_per_connection: Cost {
            kernel_bytes: kernel_breakdown.values().sum(),
            kernel_breakdown,
            kernel_unknown,
            user_bytes: per_connection(last.user_bytes).map(|b| b.round() as u64),
            user_marginal_bytes: fit.map(|f| f.slope),
            user_marginal_r2: fit.map(|f| f.r2),
            fds: per_connection(last.open_fds),
            fds_marginal: fd_fit.map(|f| f.slope),
            threads_marginal: thread_fit.map(|f| f.slope),
            open_fds: last.open_fds,
        },
        kernel_buffers: last.census.as_ref().map(SockCensus::buffers),
        drops: ctx.drops,
        ceiling: None,
        netstat: BTreeMap::new(),
    }
}

/// The samples the marginal costs are fitted on. A sample is read piece by
/// piece (sockets, then fds, then memory), so one taken while connections
/// are being opened pairs a count with memory of a few more connections.
/// Samples whose count did not move since the previous one are free of
/// that skew; they are used when they span at least two counts (a ramp in
/// steps), all samples otherwise (a continuous ramp).
fn samples_to_fit(samples: &[Sample]) -> Vec<&Sample> {
    // A carried-over scan pairs an old count with new memory.
    let fresh: Vec<&Sample> = samples.iter().filter(|s| s.scan_fresh).collect();
    let settled: Vec<&Sample> = fresh
        .windows(2)
        .filter(|pair| pair[0].connections() == pair[1].connections())
        .map(|pair| pair[1])
        .collect();
    let mut counts: Vec<u64> = settled.iter().map(|s| s.connections()).collect();
    counts.dedup();
    if counts.len() >= 2 { settled } else { fresh }
}

fn points(samples: &[&Sample], y: impl Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .map(|s| (s.connections() as f64, y(s) as f64))
        .collect()
}

/// Kernel bytes per open connection, by component: every object the
/// target's sockets hold (sized from this kernel's slab caches), plus their
/// buffers. Without a scan, every connection is taken for an IPv4 full
/// socket and buffers are unknown.
fn kernel_objects(
    last: &Sample,
    current: u64,
    ctx: &Context<'_>,
) -> (BTreeMap<&'static str, u64>, Vec<&'static str>) {
    let kinds = match &last.census {
        Some(scan) => scan.kinds(),
        None => SocketKinds {
            full_v4: current,
            ..SocketKinds::default()
        },
    };
    let full = kinds.full_v4 + kinds.full_v6;
    // (component, slab cache, how many of the target's connections hold one)
    let mut objects: Vec<(&'static str, &'static str, u64)> = vec![
        ("tcp_sock", "TCP", kinds.full_v4),
        ("tcp6_sock", "TCPv6", kinds.full_v6),
        ("timewait_sock", "tw_sock_TCP", kinds.time_wait_v4),
        ("timewait6_sock", "tw_sock_TCPv6", kinds.time_wait_v6),
        // An open socket has a file, an inode and a dentry; a TIME_WAIT
        // one has none of them.
        ("socket_inode", "sock_inode_cache", full),
        ("file", "filp", full),
        ("dentry", "dentry", full),
    ];
    if ctx.uses_epoll {
        objects.push(("epoll_item", "eventpoll_epi", full));
        objects.push(("epoll_wait_queue", "eventpoll_pwq", full));
    }
    let mut breakdown = BTreeMap::new();
    let mut unknown = Vec::new();
    if current == 0 {
        return (breakdown, unknown);
    }
    let average = |total: u64| (total as f64 / current as f64).round() as u64;
    for (component, cache, holders) in objects {
        if holders == 0 {
            continue;
        }
        match ctx.slabs.get(cache) {
            Some(slab) => {
                breakdown.insert(component, average(slab.object_bytes * holders));
            }
            None => unknown.push(component),
        }
    }
    match &last.census {
        Some(scan) => {
            breakdown.insert("buffers", average(scan.buffers().total()));
        }
        None => unknown.push("buffers"),
    }
    (breakdown, unknown)
}

/// A target process that exited while c1m watched it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExitedProcess {
    pub pid: u32,
    pub comm: String,
    /// Whether the user named it (rather than it being a child).
    pub named: bool,
}

#[cfg(test)]
pub mod tests {
    use c1m_common::*;

    use super::*;

    /// A report of 400 connections ramped over 5 samples, for tests of the
    /// modules that present reports.
    pub fn sample_report() -> Report {
        let slabs = slabs();
        let samples: Vec<_> = (0..5).map(|i| sample(i as f64, i * 100, 0)).collect();
        build_report(&samples, ctx(&slabs))
    }

    fn slabs() -> BTreeMap<String, SlabCache> {
        [
            ("TCP", 2368),
            ("sock_inode_cache", 832),
            ("filp", 256),
            ("dentry", 192),
        ]
        .into_iter()
        .map(|(name, size)| {
            let cache = SlabCache {
                object_bytes: size,
                active_objects: 1,
            };
            (name.to_owned(), cache)
        })
        .collect()
    }

    fn ctx(slabs: &BTreeMap<String, SlabCache>) -> Context<'_> {
        Context {
            pids: vec![7],
            alive: true,
            exited: Vec::new(),
            slabs,
            uses_epoll: true,
            max_tw_buckets: Some(131072),
            cgroup: None,
            drops: BTreeMap::new(),
        }
    }

    /// `n` accepted connections at `at` seconds, holding 16 KiB each over a
    /// 1 MiB baseline.
    fn sample(at: f64, n: u64, tw: u64) -> Sample {
        let mut t = TransitionCounts::default();
        t.add(TCP_CLOSE, TCP_LISTEN, 1);
        t.add(TCP_LISTEN, TCP_SYN_RECV, n + tw);
        t.add(TCP_SYN_RECV, TCP_ESTABLISHED, n + tw);
        t.add(TCP_ESTABLISHED, TCP_FIN_WAIT1, tw);
        t.add(TCP_FIN_WAIT1, TCP_FIN_WAIT2, tw);
        t.add(TCP_FIN_WAIT2, TCP_CLOSE, tw);
        Sample {
            at_seconds: at,
            transitions: t,
            census: None,
            scan_fresh: true,
            user_bytes: (1 << 20) + n * 16384,
            open_fds: n + 10,
            threads: 2,
            events: BTreeMap::new(),
            connection_fds: None,
            conntrack: None,
            dialled_closes: BTreeMap::new(),
        }
    }

    #[test]
    fn kernel_bytes_is_the_sum_of_known_objects_and_unknowns_are_listed() {
        let slabs = slabs();
        let report = build_report(&[sample(0.0, 100, 0)], ctx(&slabs));
        let cost = &report.cost_per_connection;
        assert_eq!(cost.kernel_bytes, 2368 + 832 + 256 + 192);
        assert_eq!(
            cost.kernel_unknown,
            vec!["epoll_item", "epoll_wait_queue", "buffers"]
        );
    }

    #[test]
    fn marginal_user_bytes_come_from_the_ramp() {
        let slabs = slabs();
        let samples: Vec<_> = (0..5).map(|i| sample(i as f64, i * 100, 0)).collect();
        let report = build_report(&samples, ctx(&slabs));
        let cost = &report.cost_per_connection;
        assert!((cost.user_marginal_bytes.unwrap() - 16384.0).abs() < 1e-6);
        assert!((cost.user_marginal_r2.unwrap() - 1.0).abs() < 1e-9);
        // Average includes the baseline's share: 16384 + 1 MiB / 400.
        assert_eq!(cost.user_bytes, Some(16384 + (1 << 20) / 400));
        assert_eq!(report.connections.current, 400);
        assert_eq!(report.connections.accepted_total, 400);
        assert!((cost.fds_marginal.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn samples_that_carry_an_old_walk_over_are_not_fitted() {
        let slabs = slabs();
        let mut samples = Vec::new();
        for step in 0..4u64 {
            samples.push(sample(2.0 * step as f64, step * 100, 0));
            samples.push(sample(2.0 * step as f64 + 1.0, step * 100, 0));
        }
        // Between walks: the count of the last walk (300) with the memory
        // of 200 more connections opened since.
        let mut carried = sample(9.0, 300, 0);
        carried.user_bytes += 200 * 16384;
        carried.scan_fresh = false;
        samples.extend([carried.clone(), carried]);
        let report = build_report(&samples, ctx(&slabs));
        let marginal = report.cost_per_connection.user_marginal_bytes.unwrap();
        assert!((marginal - 16384.0).abs() < 1e-6, "{marginal}");
    }

    #[test]
    fn marginal_cost_prefers_samples_taken_between_steps() {
        let slabs = slabs();
        // Steps of 100 with two settled samples each, and one sample taken
        // mid-step whose memory ran ahead of its count.
        let mut samples = Vec::new();
        for step in 0..4u64 {
            samples.push(sample(samples.len() as f64, step * 100, 0));
            samples.push(sample(samples.len() as f64, step * 100, 0));
        }
        let mut skewed = sample(samples.len() as f64, 350, 0);
        skewed.user_bytes += 50 * 16384;
        samples.push(skewed);
        let report = build_report(&samples, ctx(&slabs));
        let marginal = report.cost_per_connection.user_marginal_bytes.unwrap();
        assert!((marginal - 16384.0).abs() < 1e-6, "{marginal}");
    }

    #[test]
    fn time_wait_counts_active_closes_and_projects_the_steady_state() {
        let slabs = slabs();
        let samples = [
            sample(0.0, 10, 0),
            sample(1.0, 10, 500),
            sample(2.0, 10, 1500),
        ];
        let report = build_report(&samples, ctx(&slabs));
        let tw = &report.time_wait;
        assert_eq!(tw.entered_total, 1500);
        assert_eq!(tw.current, 1500);
        assert!((tw.per_second - 1000.0).abs() < 1e-9);
        assert!((tw.steady_state - 60_000.0).abs() < 1e-6);
        assert_eq!(report.connections.closed_total, 1500);
        assert_eq!(report.connections.reset_total, 0);
    }

    #[test]
    fn resets_are_closes_that_skip_the_fin_exchange() {
        let slabs = slabs();
        let mut s = sample(0.0, 10, 0);
        s.transitions.add(TCP_ESTABLISHED, TCP_CLOSE, 3);
        s.transitions.add(TCP_CLOSE_WAIT, TCP_CLOSE, 2);
        s.transitions.add(TCP_CLOSE_WAIT, TCP_LAST_ACK, 4);
        s.transitions.add(TCP_LAST_ACK, TCP_CLOSE, 4);
        let report = build_report(&[s], ctx(&slabs));
        assert_eq!(report.connections.reset_total, 5);
        assert_eq!(report.connections.closed_total, 9);
    }

    #[test]
    fn no_connections_means_no_per_connection_figures() {
        let slabs = slabs();
        let report = build_report(&[sample(0.0, 0, 0)], ctx(&slabs));
        assert_eq!(report.cost_per_connection.user_bytes, None);
        assert_eq!(report.cost_per_connection.fds, None);
    }
}

#[cfg(test)]
mod census_tests {
    use c1m_common::*;

    use super::*;
    use crate::model::sock_census::tests::census_of;

    #[test]
    fn with_a_scan_objects_follow_socket_kinds_and_buffers_count() {
        let mut slabs: BTreeMap<String, SlabCache> = BTreeMap::new();
        for (name, size) in [
            ("TCP", 2000),
            ("TCPv6", 2200),
            ("tw_sock_TCP", 200),
            ("sock_inode_cache", 800),
            ("filp", 200),
            ("dentry", 200),
        ] {
            let cache = SlabCache {
                object_bytes: size,
                active_objects: 1,
            };
            slabs.insert(name.to_owned(), cache);
        }
        // 60 IPv4 + 20 IPv6 established (1000 B received each), 20 TIME_WAIT.
        let scan = census_of(&[
            (ScanKind::Owned, TCP_ESTABLISHED, false, 60, 1000),
            (ScanKind::Owned, TCP_ESTABLISHED, true, 20, 1000),
            (ScanKind::OnTargetPort, TCP_TIME_WAIT, false, 20, 0),
        ]);
        let sample = Sample {
            at_seconds: 0.0,
            transitions: TransitionCounts::default(),
            census: Some(scan),
            scan_fresh: true,
            user_bytes: 0,
            open_fds: 80,
            threads: 1,
            events: BTreeMap::new(),
            connection_fds: None,
            conntrack: None,
            dialled_closes: BTreeMap::new(),
        };
        let ctx = Context {
            pids: vec![1],
            alive: true,
            exited: Vec::new(),
            slabs: &slabs,
            uses_epoll: false,
            max_tw_buckets: None,
            cgroup: None,
            drops: BTreeMap::new(),
        };
        let report = build_report(&[sample], ctx);
        // TIME_WAIT sockets are not connections: they live in time_wait,
        // and their cost is spread over the open connections.
        assert_eq!(report.connections.current, 80);
        assert!(!report.connections.by_state.contains_key("TIME_WAIT"));
        assert_eq!(report.connections.source, ConnectionsSource::Walk);
        assert_eq!(report.time_wait.current, 20);
        assert_eq!(report.time_wait.current_source, TimeWaitSource::Walk);
        let b = &report.cost_per_connection.kernel_breakdown;
        assert_eq!(b["tcp_sock"], 2000 * 60 / 80);
        assert_eq!(b["tcp6_sock"], 2200 * 20 / 80);
        assert_eq!(b["timewait_sock"], 200 * 20 / 80);
        assert_eq!(b["socket_inode"], 800);
        assert_eq!(b["buffers"], 1000);
        assert_eq!(
            report.cost_per_connection.kernel_bytes,
            b.values().sum::<u64>()
        );
        assert!(report.cost_per_connection.kernel_unknown.is_empty());
    }

    #[test]
    fn time_wait_comes_from_the_walk_even_when_entries_say_more() {
        // Clients reusing 4-tuples end TIME_WAITs early (TWRecycled): the
        // entries of the last minute said 102,426 where the walk (and ss)
        // found 46,390. Only dialled connections' timewaits are estimated.
        let scan = census_of(&[
            (ScanKind::Owned, TCP_ESTABLISHED, false, 10, 0),
            (ScanKind::OnTargetPort, TCP_TIME_WAIT, false, 46_390, 0),
        ]);
        let mut t = TransitionCounts::default();
        t.add(TCP_FIN_WAIT2, TCP_CLOSE, 102_426);
        let sample = |events: BTreeMap<&'static str, u64>| Sample {
            at_seconds: 0.0,
            transitions: t.clone(),
            census: Some(scan.clone()),
            scan_fresh: true,
            user_bytes: 0,
            open_fds: 10,
            threads: 1,
            events,
            connection_fds: None,
            conntrack: None,
            dialled_closes: BTreeMap::new(),
        };
        let slabs = BTreeMap::new();
        let ctx = || Context {
            pids: vec![1],
            alive: true,
            exited: Vec::new(),
            slabs: &slabs,
            uses_epoll: false,
            max_tw_buckets: None,
            cgroup: None,
            drops: BTreeMap::new(),
        };
        let report = build_report(&[sample(BTreeMap::new())], ctx());
        assert_eq!(report.time_wait.current, 46_390);
        assert_eq!(report.time_wait.current_source, TimeWaitSource::Walk);
        let dialled = [("dialled_time_wait", 500)].into();
        let report = build_report(&[sample(dialled)], ctx());
        assert_eq!(report.time_wait.current, 46_890);
        assert_eq!(
            report.time_wait.current_source,
            TimeWaitSource::WalkAndEstimate
        );
    }
}
