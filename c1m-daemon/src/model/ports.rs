//! Ephemeral ports in use per (source address, destination) pair: what the
//! port limit and its forecast weigh. A pair holds a port for each open
//! dialled connection (the walks count them) and for each of its closes
//! into TIME_WAIT in the last 60 s (the state probe counts them per pair:
//! a TIME_WAIT socket has no owner a walk could tell).

use std::collections::BTreeMap;

use super::{
    report::TIME_WAIT_SECONDS,
    sample::Sample,
    sock_census::{Pair, PairUse},
};

/// The pairs in use at `samples[index]`: those with open connections and
/// those whose closes still hold TIME_WAIT ports. `None` when the sample
/// has no walk (open connections per pair are unknown).
///
/// E.g. a pair with 100 open connections that closed 1,500 in the last
/// 60 s holds 1,600 ports.
pub fn pairs_at(samples: &[Sample], index: usize) -> Option<Vec<PairUse>> {
    let now = &samples[index];
    let census = now.census.as_ref()?;
    // Counts since attach: the baseline is the newest sample at least 60 s
    // older, else attach itself (zero).
    let start = samples[..=index]
        .iter()
        .rev()
        .find(|s| now.at_seconds - s.at_seconds >= TIME_WAIT_SECONDS);
    let mut pairs: BTreeMap<Pair, PairUse> = census
        .outbound
        .iter()
        .map(|p| ((p.source, p.destination), PairUse { time_wait: 0, ..*p }))
        .collect();
    for (&(source, destination), &closes) in &now.dialled_closes {
        let before = start
            .and_then(|s| s.dialled_closes.get(&(source, destination)))
            .copied()
            .unwrap_or(0);
        let time_wait = closes.saturating_sub(before);
        if time_wait == 0 {
            continue;
        }
        pairs
            .entry((source, destination))
            .or_insert(PairUse {
                source,
                destination,
                open: 0,
                time_wait: 0,
            })
            .time_wait = time_wait;
    }
    Some(pairs.into_values().collect())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::model::{sock_census::SockCensus, transitions::TransitionCounts};

    fn pair(source: u8) -> Pair {
        (
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
            SocketAddr::from(([10, 0, 0, 5], 5432)),
        )
    }

    fn sample(at: f64, open: &[(Pair, u64)], closes: &[(Pair, u64)]) -> Sample {
        let census = SockCensus {
            outbound: open
                .iter()
                .map(|&((source, destination), open)| PairUse {
                    source,
                    destination,
                    open,
                    time_wait: 0,
                })
                .collect(),
            ..SockCensus::default()
        };
        Sample {
            at_seconds: at,
            transitions: TransitionCounts::default(),
            census: Some(census),
            scan_fresh: true,
            user_bytes: 0,
            open_fds: 0,
            threads: 1,
            events: BTreeMap::new(),
            connection_fds: None,
            conntrack: None,
            dialled_closes: closes.iter().copied().collect(),
        }
    }

    #[test]
    fn a_pair_holds_its_open_connections_and_its_last_minute_of_closes() {
        let samples = [
            sample(0.0, &[(pair(1), 10)], &[]),
            sample(30.0, &[(pair(1), 100)], &[(pair(1), 400)]),
            // 70 s: the baseline is the 0 s sample (the newest >= 60 s old).
            sample(70.0, &[(pair(1), 100)], &[(pair(1), 1_500), (pair(2), 7)]),
        ];
        let at_30 = pairs_at(&samples, 1).unwrap();
        assert_eq!(at_30.len(), 1);
        assert_eq!(
            (at_30[0].open, at_30[0].time_wait, at_30[0].ports()),
            (100, 400, 500)
        );
        let at_70 = pairs_at(&samples, 2).unwrap();
        let find = |p: Pair| {
            *at_70
                .iter()
                .find(|u| (u.source, u.destination) == p)
                .unwrap()
        };
        assert_eq!(find(pair(1)).ports(), 1_600);
        // A pair with only closes (a churn whose connections are all gone
        // between walks) is in use too.
        assert_eq!((find(pair(2)).open, find(pair(2)).time_wait), (0, 7));
    }

    #[test]
    fn closes_older_than_a_minute_hold_no_port() {
        let samples = [
            sample(0.0, &[], &[(pair(1), 500)]),
            sample(61.0, &[], &[(pair(1), 500)]),
        ];
        assert!(pairs_at(&samples, 1).unwrap().is_empty());
    }

    #[test]
    fn no_walk_no_pairs() {
        let mut s = sample(0.0, &[], &[]);
        s.census = None;
        assert_eq!(pairs_at(&[s], 0), None);
    }
}
