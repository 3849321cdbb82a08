//! The walk's census of the target's sockets: what the `iter/tcp` walk found: exact counts by
//! state and family, and the buffer memory they hold.

use std::collections::BTreeMap;

use c1m_common::{
    ListenerSlot, SOCK_SCAN_SLOTS, ScanKind, SockScanSlot, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV,
    TCP_TIME_WAIT, sock_scan_slot, tcp_state_name,
};
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockCensus {
    /// (kind, state, ipv6) -> sums, only non-empty slots.
    pub slots: BTreeMap<(u32, u32, bool), SockScanSlot>,
    /// The target's listening sockets: accept queue and drops of each.
    pub listeners: Vec<ListenerSlot>,
    /// More listeners than the walk can report (the rest were left out).
    pub listeners_truncated: bool,
    /// The target's open dialled connections by (source, destination),
    /// those that predate c1m included (the fd walk adds them): each pair
    /// draws on its own range of ephemeral ports.
    pub outbound: Vec<PairUse>,
    pub outbound_truncated: bool,
}

/// A (source address, destination) pair the target dials on.
pub type Pair = (std::net::IpAddr, std::net::SocketAddr);

/// Ports the target holds on one (source address, destination) pair: its
/// open dialled connections, and (once [`super::ports`] adds them) the
/// TIME_WAIT its closes on the pair left in the last 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PairUse {
    pub source: std::net::IpAddr,
    pub destination: std::net::SocketAddr,
    pub open: u64,
    pub time_wait: u64,
}

impl PairUse {
    /// Ephemeral ports of the pair's range this use takes.
    pub fn ports(&self) -> u64 {
        self.open + self.time_wait
    }
}

/// Buffer bytes held by the target's sockets, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Buffers {
    pub receive_allocated: u64,
    pub send_queued: u64,
    pub forward_alloc: u64,
}

impl Buffers {
    pub fn total(&self) -> u64 {
        self.receive_allocated + self.send_queued + self.forward_alloc
    }
}

/// Kinds of kernel socket object, which live in different slab caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketKinds {
    /// Full sockets (`TCP` / `TCPv6` caches).
    pub full_v4: u64,
    pub full_v6: u64,
    /// TIME_WAIT sockets (`tw_sock_TCP` / `tw_sock_TCPv6`).
    pub time_wait_v4: u64,
    pub time_wait_v6: u64,
}

impl SockCensus {
    /// From the raw `SOCK_SCAN` array, indexed as `c1m_common::scan` lays
    /// it out.
    pub fn from_slots(raw: &[SockScanSlot]) -> SockCensus {
        debug_assert_eq!(raw.len(), SOCK_SCAN_SLOTS as usize);
        let slots = raw
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.sockets > 0)
            .map(|(index, slot)| {
                let (kind, state, ipv6) = sock_scan_slot(index as u32);
                ((kind as u32, state, ipv6), *slot)
            })
            .collect();
        SockCensus {
            slots,
            ..SockCensus::default()
        }
    }

    /// Connections (every state but LISTEN and CLOSE), whether c1m saw them
    /// open or found them on the target's ports.
    fn connections(&self) -> impl Iterator<Item = (u32, bool, &SockScanSlot)> {
        self.slots
            .iter()
            .filter(|((_, state, _), _)| *state != TCP_LISTEN && *state != TCP_CLOSE)
            .map(|((_, state, ipv6), slot)| (*state, *ipv6, slot))
    }

    /// Sockets that carry a connection: not TIME_WAIT (a closed
    /// connection's remainder, counted in `time_wait`) and not a half-open
    /// handshake (NEW_SYN_RECV request socks).
    fn open(&self) -> impl Iterator<Item = (u32, bool, &SockScanSlot)> {
        self.connections()
            .filter(|(state, _, _)| *state != TCP_TIME_WAIT && *state != TCP_NEW_SYN_RECV)
    }

    pub fn by_state(&self) -> BTreeMap<&'static str, u64> {
        let mut by_state = BTreeMap::new();
        for (state, _, slot) in self.open() {
            *by_state.entry(tcp_state_name(state)).or_insert(0) += slot.sockets;
        }
        by_state
    }

    /// Open connections (see [`SockCensus::open`]).
    pub fn current(&self) -> u64 {
        self.open().map(|(_, _, slot)| slot.sockets).sum()
    }

    pub fn time_wait(&self) -> u64 {
        self.connections()
            .filter(|(state, _, _)| *state == TCP_TIME_WAIT)
            .map(|(_, _, slot)| slot.sockets)
            .sum()
    }

    /// Connections c1m did not see open: accepted before it attached.
    pub fn preexisting(&self) -> u64 {
        self.connections_of(ScanKind::OnTargetPort)
            .filter(|(state, _)| *state != TCP_TIME_WAIT)
            .map(|(_, n)| n)
            .sum()
    }

    fn connections_of(&self, kind: ScanKind) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.slots
            .iter()
            .filter(move |((k, state, _), _)| {
                *k == kind as u32 && *state != TCP_LISTEN && *state != TCP_CLOSE
            })
            .map(|((_, state, _), slot)| (*state, slot.sockets))
    }

    /// Buffers of every target socket, listeners included (a listener's
    /// accept queue holds memory too).
    pub fn buffers(&self) -> Buffers {
        self.slots
            .values()
            .fold(Buffers::default(), |sum, slot| Buffers {
                receive_allocated: sum.receive_allocated + slot.rmem_alloc,
                send_queued: sum.send_queued + slot.wmem_queued,
                forward_alloc: sum.forward_alloc + slot.forward_alloc,
            })
    }

    pub fn kinds(&self) -> SocketKinds {
        let mut kinds = SocketKinds::default();
        for (state, ipv6, slot) in self.connections() {
            let counter = match (state == TCP_TIME_WAIT, ipv6) {
                (false, false) => &mut kinds.full_v4,
                (false, true) => &mut kinds.full_v6,
                (true, false) => &mut kinds.time_wait_v4,
                (true, true) => &mut kinds.time_wait_v6,
            };
            *counter += slot.sockets;
        }
        kinds
    }
}

#[cfg(test)]
pub mod tests {
    use c1m_common::{TCP_ESTABLISHED, sock_scan_index};

    use super::*;

    /// A scan with `n` sockets of each (kind, state, ipv6), each socket
    /// holding `rmem` received bytes.
    pub fn census_of(entries: &[(ScanKind, u32, bool, u64, u64)]) -> SockCensus {
        let mut raw = vec![SockScanSlot::default(); SOCK_SCAN_SLOTS as usize];
        for &(kind, state, ipv6, n, rmem) in entries {
            let slot = &mut raw[sock_scan_index(kind, state, ipv6).unwrap() as usize];
            slot.sockets += n;
            slot.rmem_alloc += n * rmem;
        }
        SockCensus::from_slots(&raw)
    }

    #[test]
    fn counts_connections_not_listeners_and_splits_kinds() {
        let scan = census_of(&[
            (ScanKind::Owned, TCP_LISTEN, false, 1, 0),
            (ScanKind::Owned, TCP_ESTABLISHED, false, 100, 10),
            (ScanKind::Owned, TCP_ESTABLISHED, true, 20, 0),
            (ScanKind::OnTargetPort, TCP_ESTABLISHED, false, 5, 0),
            (ScanKind::OnTargetPort, TCP_TIME_WAIT, true, 7, 0),
        ]);
        // TIME_WAIT is a closed connection's remainder, not a connection.
        assert_eq!(scan.current(), 125);
        assert_eq!(scan.by_state()["ESTABLISHED"], 125);
        assert_eq!(scan.time_wait(), 7);
        assert_eq!(scan.preexisting(), 5);
        assert_eq!(scan.buffers().receive_allocated, 1000);
        let kinds = scan.kinds();
        assert_eq!((kinds.full_v4, kinds.full_v6), (105, 20));
        assert_eq!((kinds.time_wait_v4, kinds.time_wait_v6), (0, 7));
    }
}
