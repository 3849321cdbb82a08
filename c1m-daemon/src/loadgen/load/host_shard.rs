//! `load --shard I/N`: one load spread over N hosts (a Kubernetes Indexed
//! Job, an SSH fan-out) without a coordinator. Each host works out its own
//! part from I and N alone: its share of `--connections` and `--rate`, and
//! a slice of the source (address, port) pairs no other shard uses, so the
//! shards never collide even behind one NAT or on one address.
//!
//! Not to be confused with the per-process shards ([`ShardPlan`]) one load
//! splits itself into on its own box: a host shard may run several.
//!
//! [`ShardPlan`]: crate::loadgen::protocol::ShardPlan

use std::net::IpAddr;

pub use crate::loadgen::protocol::{HostShard, HostShardError, PortRange};

/// Shard `index`'s share of `total` split `count` ways: the shares differ
/// by at most one and add up to `total` exactly (the first `total % count`
/// shards take one more). 3,001 over 3: 1,001, 1,000, 1,000.
pub fn share(total: u64, index: u64, count: u64) -> u64 {
    total / count + u64::from(index < total % count)
}

/// Where a host shard's connections come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSlice {
    /// The source addresses it binds (empty: the kernel's choice).
    pub ips: Vec<IpAddr>,
    /// The ports it binds explicitly, when it shares its addresses with
    /// other shards (`None`: its addresses are its own, the kernel picks
    /// the ports).
    pub ports: Option<PortRange>,
}

/// The addresses and ports shard `shard` uses: every address whose index
/// mod N is I when `listed` has at least N of them (the addresses are then
/// its own); otherwise all of `listed` (or the kernel's choice of address
/// when empty) with the I-th of N disjoint slices of `ephemeral` ports.
pub fn source_slice(shard: HostShard, listed: &[IpAddr], ephemeral: PortRange) -> SourceSlice {
    if listed.len() as u64 >= shard.count {
        return SourceSlice {
            ips: listed
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u64 % shard.count == shard.index)
                .map(|(_, ip)| *ip)
                .collect(),
            ports: None,
        };
    }
    SourceSlice {
        ips: listed.to_vec(),
        ports: Some(port_slice(ephemeral, shard.index, shard.count)),
    }
}

/// The `index`-th of `count` disjoint, contiguous slices of `range`, their
/// sizes differing by at most one; together they cover `range`. 32768-60999
/// (28,232 ports) over 3: 32768-42177, 42178-51588, 51589-60999. Empty
/// (first > last) when the range has fewer ports than `count`.
pub fn port_slice(range: PortRange, index: u64, count: u64) -> PortRange {
    let len = range.len();
    let start = u64::from(range.first) + len * index / count;
    // One past the slice's last port.
    let end = u64::from(range.first) + len * (index + 1) / count;
    if end <= start {
        return PortRange { first: 1, last: 0 };
    }
    PortRange {
        first: start as u16,
        last: (end - 1) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_differ_by_at_most_one_and_sum_to_the_total() {
        assert_eq!(
            (0..3).map(|i| share(3_001, i, 3)).collect::<Vec<_>>(),
            [1_001, 1_000, 1_000]
        );
        for (total, count) in [(0, 1), (7, 7), (5, 8), (1_000_000, 7), (3_001, 3), (13, 4)] {
            let shares: Vec<u64> = (0..count).map(|i| share(total, i, count)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total}/{count}");
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
        }
    }

    #[test]
    fn port_slices_are_disjoint_and_cover_the_range() {
        let range = PortRange {
            first: 32_768,
            last: 60_999,
        };
        let slices: Vec<PortRange> = (0..3).map(|i| port_slice(range, i, 3)).collect();
        assert_eq!(
            slices.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["32768-42177", "42178-51588", "51589-60999"]
        );
        for count in [1, 2, 7, 64, 1000] {
            let slices: Vec<PortRange> = (0..count).map(|i| port_slice(range, i, count)).collect();
            assert_eq!(slices[0].first, range.first);
            assert_eq!(slices.last().unwrap().last, range.last);
            for pair in slices.windows(2) {
                assert_eq!(pair[0].last + 1, pair[1].first, "{count}: {pair:?}");
            }
            assert_eq!(slices.iter().map(|s| s.len()).sum::<u64>(), range.len());
        }
        // Up to the last port, and fewer ports than shards leaves some none.
        let top = PortRange {
            first: 65_534,
            last: 65_535,
        };
        assert_eq!(
            port_slice(top, 1, 2),
            PortRange {
                first: 65_535,
                last: 65_535
            }
        );
        assert!(port_slice(top, 0, 3).is_empty());
        assert_eq!(port_slice(top, 2, 3).len(), 1);
    }

    #[test]
    fn enough_addresses_are_dealt_out_else_ports_are_sliced() {
        let ips: Vec<IpAddr> = (1..=7)
            .map(|n| format!("10.9.0.{n}").parse().unwrap())
            .collect();
        let range = PortRange {
            first: 1_000,
            last: 1_999,
        };
        let shard = |index| HostShard { index, count: 3 };
        let mine = source_slice(shard(1), &ips, range);
        assert_eq!(mine.ports, None);
        assert_eq!(mine.ips, [ips[1], ips[4]]);
        let all: usize = (0..3)
            .map(|i| source_slice(shard(i), &ips, range).ips.len())
            .sum();
        assert_eq!(all, 7);
        // Two addresses for three shards: each keeps both, with its ports.
        let few = source_slice(shard(2), &ips[..2], range);
        assert_eq!(few.ips, &ips[..2]);
        assert_eq!(
            few.ports,
            Some(PortRange {
                first: 1_666,
                last: 1_999
            })
        );
        // No address at all: the kernel's choice, still in its own ports.
        let none = source_slice(shard(0), &[], range);
        assert!(none.ips.is_empty());
        assert_eq!(
            none.ports,
            Some(PortRange {
                first: 1_000,
                last: 1_332
            })
        );
    }
}
