//! TCP state transitions of the target's sockets: totals since attach,
//! deltas between samples, and the current count per state they imply.
//!
//! The kernel side counts `old -> new` for every owned socket. A socket's
//! current state is where its last transition led, so for each state the
//! number of sockets in it is (transitions into it) - (transitions out of
//! it), counted over sockets c1m saw from their creation.

use std::collections::BTreeMap;

use c1m_common::{
    TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_STATE_SLOTS, TCP_SYN_RECV, TRANSITION_SLOTS,
    tcp_state_name,
};

/// Counters indexed `old * TCP_STATE_SLOTS + new`, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionCounts {
    counts: Vec<u64>,
}

impl Default for TransitionCounts {
    fn default() -> Self {
        TransitionCounts {
            counts: vec![0; TRANSITION_SLOTS as usize],
        }
    }
}

impl TransitionCounts {
    /// From the kernel array; a short or long slice is a bug on our side.
    pub fn from_slots(counts: Vec<u64>) -> TransitionCounts {
        assert_eq!(
            counts.len(),
            TRANSITION_SLOTS as usize,
            "transition array size"
        );
        TransitionCounts { counts }
    }

    pub fn get(&self, old: u32, new: u32) -> u64 {
        self.counts[(old * TCP_STATE_SLOTS + new) as usize]
    }

    #[cfg(test)]
    pub fn add(&mut self, old: u32, new: u32, n: u64) {
        self.counts[(old * TCP_STATE_SLOTS + new) as usize] += n;
    }

    /// What happened between `earlier` and `self`. Counters only grow, so a
    /// smaller value means a reset and counts as zero rather than wrapping.
    pub fn since(&self, earlier: &TransitionCounts) -> TransitionCounts {
        TransitionCounts {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    pub fn entered_state(&self, state: u32) -> u64 {
        (0..TCP_STATE_SLOTS).map(|old| self.get(old, state)).sum()
    }

    /// Transitions that took a socket out of `state`. A child socket is born
    /// as a clone of its listener, so the kernel reports its first step as
    /// LISTEN -> SYN_RECV: that is a birth, not the listener leaving LISTEN.
    pub fn left_state(&self, state: u32) -> u64 {
        (0..TCP_STATE_SLOTS)
            .filter(|&new| !(state == TCP_LISTEN && new == TCP_SYN_RECV))
            .map(|new| self.get(state, new))
            .sum()
    }

    /// Connections that reached ESTABLISHED.
    pub fn established_total(&self) -> u64 {
        self.entered_state(TCP_ESTABLISHED)
    }

    /// Sockets currently in each state (CLOSE excluded: a closed socket is
    /// gone). States with nobody in them are left out.
    pub fn current_by_state(&self) -> BTreeMap<&'static str, u64> {
        (1..TCP_STATE_SLOTS)
            .filter(|&state| state != TCP_CLOSE)
            .filter_map(|state| {
                let n = self
                    .entered_state(state)
                    .saturating_sub(self.left_state(state));
                (n > 0).then(|| (tcp_state_name(state), n))
            })
            .collect()
    }

    /// Every non-zero `old -> new` counter, named like `SYN_RECV->ESTABLISHED`.
    pub fn named(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for old in 0..TCP_STATE_SLOTS {
            for new in 0..TCP_STATE_SLOTS {
                let n = self.get(old, new);
                if n > 0 {
                    out.insert(
                        format!("{}->{}", tcp_state_name(old), tcp_state_name(new)),
                        n,
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use c1m_common::*;

    use super::*;

    /// A listener, three accepted connections, one of them closed by the peer.
    fn sample() -> TransitionCounts {
        let mut t = TransitionCounts::default();
        t.add(TCP_CLOSE, TCP_LISTEN, 1);
        t.add(TCP_LISTEN, TCP_SYN_RECV, 3);
        t.add(TCP_SYN_RECV, TCP_ESTABLISHED, 3);
        t.add(TCP_ESTABLISHED, TCP_CLOSE_WAIT, 1);
        t.add(TCP_CLOSE_WAIT, TCP_LAST_ACK, 1);
        t.add(TCP_LAST_ACK, TCP_CLOSE, 1);
        t
    }

    #[test]
    fn current_states_follow_from_transitions() {
        let by_state = sample().current_by_state();
        assert_eq!(by_state.get("ESTABLISHED"), Some(&2));
        assert_eq!(by_state.get("LISTEN"), Some(&1));
        assert_eq!(by_state.get("SYN_RECV"), None);
        assert_eq!(by_state.get("LAST_ACK"), None);
        assert_eq!(by_state.get("CLOSE"), None);
    }

    #[test]
    fn deltas_subtract_and_never_wrap() {
        let earlier = sample();
        let mut later = sample();
        later.add(TCP_SYN_RECV, TCP_ESTABLISHED, 5);
        let delta = later.since(&earlier);
        assert_eq!(delta.get(TCP_SYN_RECV, TCP_ESTABLISHED), 5);
        assert_eq!(delta.get(TCP_CLOSE, TCP_LISTEN), 0);
        assert_eq!(earlier.since(&later).get(TCP_SYN_RECV, TCP_ESTABLISHED), 0);
    }

    #[test]
    fn named_lists_only_what_happened() {
        let named = sample().named();
        assert_eq!(named.len(), 6);
        assert_eq!(named["SYN_RECV->ESTABLISHED"], 3);
        assert_eq!(sample().established_total(), 3);
    }
}
