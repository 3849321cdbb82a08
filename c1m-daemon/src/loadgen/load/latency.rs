//! Connect latencies as a histogram the shards can add up: buckets of a
//! quarter octave of microseconds (at most 19% wide), counted with atomics
//! on the connect path, shipped in the shards' progress lines, summed by
//! whoever reads them, and read as percentiles.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Quarter octaves from 1 µs to 2^32 µs (over an hour).
pub const BUCKETS: usize = 128;

/// Bucket of a latency in microseconds: floor(4 log2(us)).
fn bucket(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((4.0 * (us as f64).log2()) as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in microseconds.
fn upper_us(bucket: usize) -> u64 {
    2f64.powf((bucket + 1) as f64 / 4.0).ceil() as u64
}

#[derive(Debug)]
pub struct LatencyCounters([AtomicU64; BUCKETS]);

impl Default for LatencyCounters {
    fn default() -> Self {
        LatencyCounters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl LatencyCounters {
    pub fn record(&self, latency: Duration) {
        self.0[bucket(latency.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts by bucket, trailing empty buckets left out (a short line).
    pub fn snapshot(&self) -> Vec<u64> {
        let mut counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        while counts.last() == Some(&0) {
            counts.pop();
        }
        counts
    }
}

/// Add histogram `other` into `sum`.
pub fn add(sum: &mut Vec<u64>, other: &[u64]) {
    if sum.len() < other.len() {
        sum.resize(other.len(), 0);
    }
    for (s, o) in sum.iter_mut().zip(other) {
        *s += o;
    }
}

/// The `p`-th percentile (0-100) in microseconds (its bucket's upper
/// bound), `None` for an empty histogram.
pub fn percentile_us(histogram: &[u64], p: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(upper_us(i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_within_a_bucket() {
        let counters = LatencyCounters::default();
        for us in 1..=1000u64 {
            counters.record(Duration::from_micros(us));
        }
        let h = counters.snapshot();
        let p50 = percentile_us(&h, 50.0).unwrap();
        assert!((500..=600).contains(&p50), "{p50}");
        let p99 = percentile_us(&h, 99.0).unwrap();
        assert!((990..=1200).contains(&p99), "{p99}");
        assert_eq!(percentile_us(&[], 50.0), None);
        let mut sum = vec![1];
        add(&mut sum, &h);
        assert_eq!(sum.iter().sum::<u64>(), 1001);
    }
}
