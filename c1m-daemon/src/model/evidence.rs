//! What the target's own sockets showed over the last few seconds: the
//! evidence that a limit is being hit by this target, now.
//!
//! A limit is "being hit" only on the target's own signs, within a sliding
//! window: connections it refused (closed right after accepting them,
//! without reading), its listeners' accept queues full or dropping, its own
//! `accept()` failures. Namespace-wide counters (`ListenOverflows`) move for
//! every process of the namespace and stay moved: they are context, never
//! proof. When the pressure stops, the window empties and the evidence with
//! it.

use std::{collections::BTreeMap, time::Duration};

use c1m_common::ListenerSlot;
use serde::Serialize;

use super::{sample::Sample, sock_census::SockCensus};

/// How far back "now" reaches.
pub const EVIDENCE_WINDOW: Duration = Duration::from_secs(10);

/// How long the count must have held still to be a plateau: the ramp that
/// led up to it may sit in the evidence window too.
pub const PLATEAU: Duration = Duration::from_secs(3);

/// The least time the samples of a plateau must span.
pub const PLATEAU_MIN_SPAN: Duration = Duration::from_secs(2);

/// One listener of the target, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListenerQueue {
    pub port: u16,
    pub ipv6: bool,
    /// Connections waiting to be accepted, and the queue's length.
    pub queued: u32,
    pub queue_max: u32,
    /// Connections it dropped (queue full) within the window.
    pub dropped: u64,
    /// The fewest connections waiting in its queue over the last
    /// [`PLATEAU`]: above zero, the queue is not draining (a server at its
    /// cap stops accepting; haproxy at maxconn does).
    pub stuck: u32,
}

/// The evidence over the window ending at the last sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WindowEvidence {
    /// The window's actual length (shorter right after attach).
    pub seconds: f64,
    /// Accepted connections the target closed within a second.
    pub closed_after_accept: u64,
    /// Of those, closed without reading a byte: refusals.
    pub refused: u64,
    /// Accepted connections closed unread at any age (a server at its cap
    /// reclaiming idle ones, or an idle timeout).
    pub closed_unread: u64,
    /// `accept()` failures of the target, by errno name.
    pub accept_errors: BTreeMap<&'static str, u64>,
    /// The target's listeners (from the last walk), with their drops in
    /// the window.
    pub listeners: Vec<ListenerQueue>,
    /// Fewest and most connections held (accepted, not closing) in the
    /// samples of the last [`PLATEAU`]: a server at its cap holds still
    /// while it refuses.
    pub connections_min: u64,
    pub connections_max: u64,
    /// How long those samples span: a plateau needs at least
    /// [`PLATEAU_MIN_SPAN`] of them (a first sample or two right after a
    /// fast ramp say nothing about holding still).
    pub steady_seconds: f64,
    /// Whether the counts needed are there (false without a socket walk:
    /// listener queues unknown).
    pub listeners_known: bool,
}

impl WindowEvidence {
    /// Connections dropped by the target's full accept queues.
    pub fn listener_drops(&self) -> u64 {
        self.listeners.iter().map(|l| l.dropped).sum()
    }

    /// Listeners whose queue is full now.
    pub fn full_listeners(&self) -> impl Iterator<Item = &ListenerQueue> {
        self.listeners
            .iter()
            .filter(|l| l.queue_max > 0 && l.queued >= l.queue_max)
    }

    /// Connections waiting in the target's accept queues (counted among
    /// its connections, but not accepted yet).
    pub fn queued(&self) -> u64 {
        self.listeners.iter().map(|l| u64::from(l.queued)).sum()
    }

    pub fn accept_error(&self, name: &str) -> u64 {
        self.accept_errors.get(name).copied().unwrap_or(0)
    }

    /// The count held still lately (within 1%, or 2 connections).
    pub fn plateau(&self) -> bool {
        let spread = self.connections_max - self.connections_min;
        self.steady_seconds >= PLATEAU_MIN_SPAN.as_secs_f64()
            && spread <= (self.connections_max / 100).max(2)
    }

    /// Turning new connections away right now, by the target's own signs:
    /// refusing them, or not accepting (queues dropping, full, or not
    /// draining while the count holds still).
    pub fn turning_away(&self) -> bool {
        self.refused > 0
            || self.listener_drops() > 0
            || self.full_listeners().next().is_some()
            || (self.plateau() && self.listeners.iter().any(|l| l.stuck > 0))
    }
}

/// The accept errors c1m counts, as event name -> errno name.
const ACCEPT_ERRORS: [(&str, &str); 3] = [
    ("accept_emfile", "EMFILE"),
    ("accept_enfile", "ENFILE"),
    ("accept_enomem", "ENOMEM"),
];

/// The evidence over the last [`EVIDENCE_WINDOW`] of `samples`.
pub fn window_evidence(samples: &[Sample]) -> WindowEvidence {
    let Some(last) = samples.last() else {
        return WindowEvidence::default();
    };
    let since = last.at_seconds - EVIDENCE_WINDOW.as_secs_f64();
    // The newest sample at or before the window's start is the baseline;
    // right after attach, the first sample is.
    let start = samples
        .iter()
        .rev()
        .find(|s| s.at_seconds <= since)
        .unwrap_or(&samples[0]);
    // The last PLATEAU seconds, and at least the last two samples.
    let recent_since = last.at_seconds - PLATEAU.as_secs_f64();
    let recent = samples
        .iter()
        .rposition(|s| s.at_seconds <= recent_since)
        .unwrap_or(0)
        .min(samples.len().saturating_sub(2));
    let counts: Vec<u64> = samples[recent..].iter().map(Sample::held).collect();
    let recent_scans: Vec<&SockCensus> = samples[recent..]
        .iter()
        .filter(|s| s.scan_fresh)
        .filter_map(|s| s.census.as_ref())
        .collect();
    let moved = |name: &str| {
        let at = |s: &Sample| s.events.get(name).copied().unwrap_or(0);
        at(last).saturating_sub(at(start))
    };
    let listeners = match (&last.census, &start.census) {
        (Some(now), before) => now
            .listeners
            .iter()
            .map(|l| ListenerQueue {
                port: l.port,
                ipv6: l.family == AF_INET6,
                queued: l.queued,
                queue_max: l.queue_max,
                dropped: before
                    .as_ref()
                    .and_then(|b| matching(&b.listeners, l))
                    .map_or(0, |b| u64::from(l.drops.saturating_sub(b.drops))),
                // Over at least two walks: one walk of a busy queue says
                // nothing about whether it drains.
                stuck: if recent_scans.len() >= 2 {
                    recent_scans
                        .iter()
                        .map(|scan| matching(&scan.listeners, l).map_or(0, |m| m.queued))
                        .min()
                        .unwrap_or(0)
                } else {
                    0
                },
            })
            .collect(),
        (None, _) => Vec::new(),
    };
    WindowEvidence {
        seconds: last.at_seconds - start.at_seconds,
        closed_after_accept: moved("closed_after_accept"),
        refused: moved("refused_unread"),
        closed_unread: moved("closed_unread"),
        accept_errors: ACCEPT_ERRORS
            .iter()
            .map(|(event, errno)| (*errno, moved(event)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        listeners,
        connections_min: counts.iter().copied().min().unwrap_or(0),
        connections_max: counts.iter().copied().max().unwrap_or(0),
        steady_seconds: last.at_seconds - samples[recent].at_seconds,
        listeners_known: last.census.is_some(),
    }
}

const AF_INET6: u16 = 10;

/// The same listener in an earlier walk (a listener that appeared since has
/// no baseline: its drops count from the next walk on).
fn matching<'a>(before: &'a [ListenerSlot], now: &ListenerSlot) -> Option<&'a ListenerSlot> {
    before
        .iter()
        .find(|b| b.port == now.port && b.family == now.family && b.queue_max == now.queue_max)
}

#[cfg(test)]
mod tests {
    use c1m_common::{ScanKind, TCP_ESTABLISHED};

    use super::*;
    use crate::model::{sock_census::tests::census_of, transitions::TransitionCounts};

    fn sample(at: f64, connections: u64, refused: u64, drops: u32) -> Sample {
        let mut scan = census_of(&[(ScanKind::Owned, TCP_ESTABLISHED, false, connections, 0)]);
        scan.listeners = vec![ListenerSlot {
            port: 6379,
            family: 2,
            queued: 0,
            queue_max: 511,
            drops,
        }];
        Sample {
            at_seconds: at,
            transitions: TransitionCounts::default(),
            census: Some(scan),
            scan_fresh: true,
            user_bytes: 0,
            open_fds: 0,
            threads: 0,
            events: [
                ("refused_unread", refused),
                ("closed_after_accept", refused),
            ]
            .into(),
            connection_fds: None,
            conntrack: None,
            dialled_closes: BTreeMap::new(),
        }
    }

    #[test]
    fn refusals_count_within_the_window_only() {
        // 40 refusals long ago, then 12 in the last 10 s while holding 500.
        let samples: Vec<Sample> = (0..=30)
            .map(|i| {
                let refused = if i < 5 {
                    40 * i / 5
                } else if i < 21 {
                    40
                } else {
                    40 + 12
                };
                sample(i as f64, 500, refused, 0)
            })
            .collect();
        let e = window_evidence(&samples);
        assert_eq!(e.seconds, 10.0);
        assert_eq!(e.refused, 12);
        assert!(e.plateau() && e.turning_away());
        // Once the refusals stop, the window empties.
        let later: Vec<Sample> = (0..=45).map(|i| sample(i as f64, 500, 52, 0)).collect();
        let e = window_evidence(&later);
        assert_eq!(e.refused, 0);
        assert!(!e.turning_away());
    }

    #[test]
    fn a_queue_that_does_not_drain_at_a_steady_count_is_turning_away() {
        // haproxy at maxconn: 50 connections wait, none is accepted.
        let samples: Vec<Sample> = (0..=6)
            .map(|i| {
                let mut s = sample(i as f64, 250, 0, 0);
                s.census.as_mut().unwrap().listeners[0].queued = 50;
                s
            })
            .collect();
        let e = window_evidence(&samples);
        assert_eq!(e.listeners[0].stuck, 50);
        assert_eq!(e.queued(), 50);
        assert!(e.turning_away());
        // A queue that empties between walks is a busy server, not a cap.
        let samples: Vec<Sample> = (0..=6)
            .map(|i| {
                let mut s = sample(i as f64, 250, 0, 0);
                s.census.as_mut().unwrap().listeners[0].queued = (i % 2) * 50;
                s
            })
            .collect();
        assert!(!window_evidence(&samples).turning_away());
    }

    #[test]
    fn listener_drops_are_the_listeners_own_in_the_window() {
        let samples: Vec<Sample> = (0..=20).map(|i| sample(i as f64, 100, 0, 7 * i)).collect();
        let e = window_evidence(&samples);
        assert_eq!(e.listener_drops(), 70);
        assert_eq!(e.listeners[0].port, 6379);
    }

    #[test]
    fn a_growing_count_is_no_plateau() {
        let samples: Vec<Sample> = (0..=10).map(|i| sample(i as f64, 100 * i, 0, 0)).collect();
        let e = window_evidence(&samples);
        assert_eq!((e.connections_min, e.connections_max), (700, 1000));
        assert!(!e.plateau());
        // A ramp that ended 3 s ago and has held still since is one, though
        // the ramp is still in the evidence window.
        let samples: Vec<Sample> = (0..=10)
            .map(|i| sample(i as f64, 100 * i.min(6), 0, 0))
            .collect();
        let e = window_evidence(&samples);
        assert_eq!((e.connections_min, e.connections_max), (600, 600));
        assert!(e.plateau());
    }
}
