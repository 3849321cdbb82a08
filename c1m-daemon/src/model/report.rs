//! The report: what the target's connections are doing and what each one
//! costs, built from samples with no I/O (the command gathers the inputs).

use std::collections::BTreeMap;

use c1m_common::{
    TCP_CLOSE, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
};
use serde::Serialize;

use super::{regression::fit_line, transitions::TransitionCounts};
use crate::system::slabinfo::SlabCache;

/// TCP_TIMEWAIT_LEN: a TIME_WAIT socket lives 60 s (fixed in Linux).
pub const TIME_WAIT_SECONDS: f64 = 60.0;

/// One sample of the target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_seconds: f64,
    pub transitions: TransitionCounts,
    /// PSS summed over the target's processes.
    pub user_bytes: u64,
    pub open_fds: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: TargetInfo,
    pub connections: Connections,
    pub time_wait: TimeWait,
    pub cost_per_connection: Cost,
    pub drops: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct TargetInfo {
    pub pids: Vec<u32>,
    pub alive: bool,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    /// Open connections (every state but LISTEN and CLOSE).
    pub current: u64,
    pub by_state: BTreeMap<&'static str, u64>,
    pub accepted_total: u64,
    pub connected_total: u64,
    pub closed_total: u64,
}

#[derive(Debug, Serialize)]
pub struct TimeWait {
    /// Estimated: entries over the last 60 s (see `entered_total`).
    pub current: u64,
    /// Active closes that completed into TIME_WAIT: the kernel reports the
    /// full socket's FIN_WAIT2/CLOSING -> CLOSE when the timewait socket
    /// takes over (it never reports the transition into TIME_WAIT itself).
    pub entered_total: u64,
    pub per_second: f64,
    /// Where the count is heading: rate x 60 s.
    pub steady_state: f64,
    pub max_buckets: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Cost {
    pub kernel_bytes: u64,
    pub kernel_breakdown: BTreeMap<&'static str, u64>,
    /// Kernel objects whose size this kernel does not expose (merged slab
    /// caches): not included in `kernel_bytes`, listed rather than zeroed.
    pub kernel_unknown: Vec<&'static str>,
    pub user_bytes: Option<u64>,
    pub user_marginal_bytes: Option<f64>,
    pub user_marginal_r2: Option<f64>,
    pub fds: Option<f64>,
    pub open_fds: u64,
}

/// Everything the report needs besides the samples.
pub struct Context<'a> {
    pub pids: Vec<u32>,
    pub alive: bool,
    pub slabs: &'a BTreeMap<String, SlabCache>,
    pub uses_epoll: bool,
    pub max_tw_buckets: Option<u64>,
    pub drops: BTreeMap<&'static str, u64>,
}

/// Open connections in a transition total: sockets in any state but
/// LISTEN (not a connection) and CLOSE (gone).
pub fn open_connections(t: &TransitionCounts) -> u64 {
    t.current_by_state()
        .iter()
        .filter(|(state, _)| **state != "LISTEN")
        .map(|(_, n)| n)
        .sum()
}

fn time_wait_entries(t: &TransitionCounts) -> u64 {
    t.get(TCP_FIN_WAIT2, TCP_CLOSE) + t.get(TCP_CLOSING, TCP_CLOSE)
}

pub fn build_report(samples: &[Sample], ctx: Context<'_>) -> Report {
    let last = samples.last().expect("a report needs at least one sample");
    let t = &last.transitions;
    let current = open_connections(t);

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
        .find(|s| last.at_seconds - s.at_seconds >= TIME_WAIT_SECONDS)
        .map_or(0, |s| time_wait_entries(&s.transitions));

    // Kernel objects each connection holds, sized from this kernel's slabs.
    let mut components: Vec<(&'static str, &'static str)> = vec![
        ("tcp_sock", "TCP"),
        ("socket_inode", "sock_inode_cache"),
        ("file", "filp"),
        ("dentry", "dentry"),
    ];
    if ctx.uses_epoll {
        components.push(("epoll_item", "eventpoll_epi"));
        components.push(("epoll_wait_queue", "eventpoll_pwq"));
    }
    let mut kernel_breakdown = BTreeMap::new();
    let mut kernel_unknown = Vec::new();
    for (component, cache) in components {
        match ctx.slabs.get(cache) {
            Some(slab) => {
                kernel_breakdown.insert(component, slab.object_bytes);
            }
            None => kernel_unknown.push(component),
        }
    }

    let per_connection = |total: u64| (current > 0).then(|| total as f64 / current as f64);
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (open_connections(&s.transitions) as f64, s.user_bytes as f64))
        .collect();
    let fit = fit_line(&points);

    Report {
        target: TargetInfo {
            pids: ctx.pids,
            alive: ctx.alive,
        },
        connections: Connections {
            current,
            by_state: t.current_by_state(),
            accepted_total: t.get(TCP_SYN_RECV, TCP_ESTABLISHED),
            connected_total: t.get(TCP_SYN_SENT, TCP_ESTABLISHED),
            closed_total: t.entered_state(TCP_CLOSE) - t.get(TCP_LISTEN, TCP_CLOSE),
        },
        time_wait: TimeWait {
            current: entered_total - window_start,
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
            open_fds: last.open_fds,
        },
        drops: ctx.drops,
    }
}

#[cfg(test)]
mod tests {
    use c1m_common::*;

    use super::*;

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
            slabs,
            uses_epoll: true,
            max_tw_buckets: Some(131072),
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
            user_bytes: (1 << 20) + n * 16384,
            open_fds: n + 10,
        }
    }

    #[test]
    fn kernel_bytes_is_the_sum_of_known_objects_and_unknowns_are_listed() {
        let slabs = slabs();
        let report = build_report(&[sample(0.0, 100, 0)], ctx(&slabs));
        let cost = &report.cost_per_connection;
        assert_eq!(cost.kernel_bytes, 2368 + 832 + 256 + 192);
        assert_eq!(cost.kernel_unknown, vec!["epoll_item", "epoll_wait_queue"]);
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
    }

    #[test]
    fn no_connections_means_no_per_connection_figures() {
        let slabs = slabs();
        let report = build_report(&[sample(0.0, 0, 0)], ctx(&slabs));
        assert_eq!(report.cost_per_connection.user_bytes, None);
        assert_eq!(report.cost_per_connection.fds, None);
    }
}
