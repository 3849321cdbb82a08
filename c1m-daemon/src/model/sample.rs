//! One sample of the target: what the probes, the walks and /proc showed
//! at one moment. The report and the evidence window are built from them.

use std::collections::BTreeMap;

use super::{
    sock_census::{Pair, SockCensus},
    transitions::TransitionCounts,
};

/// The target's own evidence counters since c1m attached (cumulative; the
/// evidence window takes differences), by `c1m_common::TargetEvent` name.
pub type EventCounts = BTreeMap<&'static str, u64>;

/// One sample of the target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_seconds: f64,
    pub transitions: TransitionCounts,
    /// The census of the `iter/tcp` walk, when this kernel allows it.
    pub census: Option<SockCensus>,
    /// Whether the scan (and fd count) was taken for this sample, rather
    /// than carried over from an earlier one: at a million sockets a walk
    /// takes over a second, so walks run less often than samples.
    pub scan_fresh: bool,
    /// PSS summed over the target's processes.
    pub user_bytes: u64,
    pub open_fds: u64,
    /// Threads of all target processes.
    pub threads: u64,
    /// The target's own evidence counters (refusals, failed accepts),
    /// cumulative since attach.
    pub events: EventCounts,
    /// TCP connections the target's processes hold an fd for, from the fd
    /// walk (`None` without one).
    pub connection_fds: Option<u64>,
    /// nf_conntrack_count in the target's network namespace, when conntrack
    /// tracks anything (for the time to exhaustion of its table).
    pub conntrack: Option<u64>,
    /// The target's dialled connections that closed into TIME_WAIT since
    /// attach, per (source, destination) pair (cumulative).
    pub dialled_closes: BTreeMap<Pair, u64>,
}

impl Sample {
    /// Open connections: exact from the scan (which also sees connections
    /// accepted before c1m attached), else from the transitions seen.
    pub fn connections(&self) -> u64 {
        match &self.census {
            Some(scan) => scan.current(),
            None => open_connections(&self.transitions),
        }
    }

    /// Connections the target holds: accepted (not waiting in its accept
    /// queues) and not on their way out (FIN_WAIT*, CLOSING, LAST_ACK):
    /// its connection fds when the fd walk counted them, else its sockets
    /// in those states. What a server's own cap counts.
    pub fn held(&self) -> u64 {
        // What the server holds is what it has an fd for: not the
        // connections waiting in its accept queue, not those it closed.
        if let Some(fds) = self.connection_fds {
            return fds;
        }
        let by_state = match &self.census {
            Some(scan) => scan.by_state(),
            None => self.transitions.current_by_state(),
        };
        let open: u64 = ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT"]
            .iter()
            .map(|state| by_state.get(state).copied().unwrap_or(0))
            .sum();
        let queued: u64 = self
            .census
            .iter()
            .flat_map(|scan| &scan.listeners)
            .map(|l| u64::from(l.queued))
            .sum();
        open.saturating_sub(queued)
    }
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
