//! Time to exhaustion: for every limit a rate can run out (ephemeral ports
//! per (source, destination), TIME_WAIT buckets, conntrack, and the limits
//! counted in connections: nofile, file_max, memory, cgroup_memory,
//! tcp_mem), when it runs out at the growth of the last
//! [`FORECAST_WINDOW_SECONDS`] (least squares over the samples). Only a
//! quantity that grows gets a forecast: flat or shrinking, none.

use std::collections::BTreeMap;

use super::inputs::CeilingInputs;
use crate::{
    human::{human_count, human_seconds},
    model::{
        ceiling::{Forecast, Limit},
        ports::pairs_at,
        regression::fit_line,
        report::{TIME_WAIT_SECONDS, time_wait_entries},
        sample::Sample,
        sock_census::Pair,
    },
};

/// The growth rate is fitted over the samples of the last minute.
pub const FORECAST_WINDOW_SECONDS: f64 = 60.0;

/// Limits whose allowance is counted in connections: they run out at the
/// growth of the open connections.
const COUNTED_IN_CONNECTIONS: &[&str] =
    &["nofile", "file_max", "memory", "cgroup_memory", "tcp_mem"];

/// The forecasts, soonest first, one per limit.
pub fn forecasts(samples: &[Sample], i: &CeilingInputs, limits: &[Limit]) -> Vec<Forecast> {
    let mut out: Vec<Forecast> = limits
        .iter()
        .filter(|l| !l.exceeded)
        .filter_map(|l| match l.name {
            "ephemeral_ports" => ephemeral_ports(samples, i),
            "time_wait_buckets" => time_wait_buckets(samples, i),
            "conntrack" => conntrack(samples, i),
            name if COUNTED_IN_CONNECTIONS.contains(&name) => connections(samples, i, l),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    out
}

/// Indices of the samples in the forecast window.
fn recent(samples: &[Sample]) -> std::ops::Range<usize> {
    let Some(last) = samples.last() else {
        return 0..0;
    };
    let first = samples
        .iter()
        .position(|s| last.at_seconds - s.at_seconds <= FORECAST_WINDOW_SECONDS)
        .unwrap_or(samples.len());
    first..samples.len()
}

/// The growth per second of `value` over the window, when it grows: at
/// least two samples over a second apart, a positive slope, and at least
/// one unit more over the window (noise on a flat count is not growth).
fn growth(samples: &[Sample], value: impl Fn(usize) -> Option<f64>) -> Option<f64> {
    let points: Vec<(f64, f64)> = recent(samples)
        .filter_map(|index| Some((samples[index].at_seconds, value(index)?)))
        .collect();
    let span = points.last()?.0 - points.first()?.0;
    if span < 1.0 {
        return None;
    }
    let slope = fit_line(&points)?.slope;
    (slope > 0.0 && slope * span >= 1.0).then_some(slope)
}

fn rate_words(rate: f64) -> String {
    if rate >= 10.0 {
        human_count(rate.round() as u64)
    } else {
        format!("{rate:.1}")
    }
}

/// A limit counted in connections runs out when the open connections
/// reach its `max_connections`.
fn connections(samples: &[Sample], i: &CeilingInputs, l: &Limit) -> Option<Forecast> {
    let max = l.max_connections?;
    let headroom = max.checked_sub(i.connections).filter(|h| *h > 0)?;
    let rate = growth(samples, |index| Some(samples[index].connections() as f64))?;
    let seconds = headroom as f64 / rate;
    Some(Forecast {
        limit: l.name,
        seconds,
        rate_per_second: rate,
        basis: format!(
            "{} runs out in {} at {} more connections/s ({} open, {} allowed)",
            l.name,
            human_seconds(seconds),
            rate_words(rate),
            human_count(i.connections),
            human_count(max)
        ),
    })
}

/// The target's closes of the last 60 s that went through TIME_WAIT, by
/// the `sample`'s cumulative count `entries`.
fn in_last_minute(samples: &[Sample], index: usize, entries: impl Fn(&Sample) -> u64) -> u64 {
    let now = &samples[index];
    let start = samples[..=index]
        .iter()
        .rev()
        .find(|s| now.at_seconds - s.at_seconds >= TIME_WAIT_SECONDS);
    entries(now).saturating_sub(start.map_or(0, &entries))
}

fn dialled_time_wait(s: &Sample) -> u64 {
    s.events.get("dialled_time_wait").copied().unwrap_or(0)
}

/// The target's TIME_WAIT sockets at a sample, as the report counts them:
/// the walk's, plus its dialled connections' active closes of the last
/// 60 s; without a walk, all its active closes of the last 60 s.
fn time_wait_at(samples: &[Sample], index: usize) -> u64 {
    match &samples[index].census {
        Some(scan) => scan.time_wait() + in_last_minute(samples, index, dialled_time_wait),
        None => in_last_minute(samples, index, |s| time_wait_entries(&s.transitions)),
    }
}

/// TIME_WAIT buckets: the target's TIME_WAIT count heads for close rate x
/// 60 s and stops there, so they run out only when that steady state is
/// over the limit.
fn time_wait_buckets(samples: &[Sample], i: &CeilingInputs) -> Option<Forecast> {
    let max = i.tw_max_buckets?;
    if i.tw_steady_state <= max as f64 {
        return None;
    }
    let headroom = max.checked_sub(i.tw_current).filter(|h| *h > 0)?;
    let rate = growth(samples, |index| Some(time_wait_at(samples, index) as f64))?;
    let seconds = headroom as f64 / rate;
    Some(Forecast {
        limit: "time_wait_buckets",
        seconds,
        rate_per_second: rate,
        basis: format!(
            "TIME_WAIT buckets run out in {} at {} more TIME_WAIT sockets/s ({} of {} \
             buckets, heading for {})",
            human_seconds(seconds),
            rate_words(rate),
            human_count(i.tw_current),
            human_count(max),
            human_count(i.tw_steady_state.round() as u64)
        ),
    })
}

fn conntrack(samples: &[Sample], i: &CeilingInputs) -> Option<Forecast> {
    let table = i.conntrack?;
    let headroom = table.max.checked_sub(table.used).filter(|h| *h > 0)?;
    let rate = growth(samples, |index| samples[index].conntrack.map(|n| n as f64))?;
    let seconds = headroom as f64 / rate;
    Some(Forecast {
        limit: "conntrack",
        seconds,
        rate_per_second: rate,
        basis: format!(
            "conntrack entries run out in {} at {} more entries/s ({} of {})",
            human_seconds(seconds),
            rate_words(rate),
            human_count(table.used),
            human_count(table.max)
        ),
    })
}

/// Ports each pair holds at a sample: (open, TIME_WAIT), as
/// [`pairs_at`] counts them. `None` when the sample has no walk.
fn ports_at(samples: &[Sample], index: usize) -> Option<BTreeMap<Pair, (u64, u64)>> {
    Some(
        pairs_at(samples, index)?
            .into_iter()
            .map(|p| ((p.source, p.destination), (p.open, p.time_wait)))
            .collect(),
    )
}

/// Ephemeral ports, per (source, destination): a pair runs out when its
/// open connections and the TIME_WAIT its closes leave fill its range. The
/// TIME_WAIT part stops growing at the pair's close rate x 60 s, so a pair
/// whose open connections do not grow runs out only when that steady state
/// does not fit. The soonest pair is the forecast.
fn ephemeral_ports(samples: &[Sample], i: &CeilingInputs) -> Option<Forecast> {
    let out = i.outbound.as_ref()?;
    let ports = out.ports_per_pair;
    let window = recent(samples);
    let by_sample: Vec<Option<BTreeMap<Pair, (u64, u64)>>> = window
        .clone()
        .map(|index| ports_at(samples, index))
        .collect();
    let now = by_sample.last()?.as_ref()?;
    let first = &samples[window.start];
    let last = samples.last()?;
    let span = last.at_seconds - first.at_seconds;
    // A pair's closes into TIME_WAIT per second over the window.
    let closes_per_second = |pair: &Pair| {
        let closes = |s: &Sample| s.dialled_closes.get(pair).copied().unwrap_or(0);
        if span > 0.0 {
            closes(last).saturating_sub(closes(first)) as f64 / span
        } else {
            0.0
        }
    };
    now.iter()
        .filter_map(|(pair, &(open, time_wait))| {
            let used = open + time_wait;
            let headroom = ports.checked_sub(used).filter(|h| *h > 0)?;
            let rate = pair_growth(samples, &by_sample, window.start, pair, |open, tw| {
                open + tw
            })?;
            let open_grows =
                pair_growth(samples, &by_sample, window.start, pair, |open, _| open).is_some();
            let steady = open as f64 + closes_per_second(pair) * TIME_WAIT_SECONDS;
            if !open_grows && steady < ports as f64 {
                return None;
            }
            let seconds = headroom as f64 / rate;
            Some(Forecast {
                limit: "ephemeral_ports",
                seconds,
                rate_per_second: rate,
                basis: format!(
                    "ephemeral ports for {} -> {} run out in {} at {} more ports/s in use \
                     ({} of {} ports: {} open, {} in TIME_WAIT)",
                    pair.0,
                    pair.1,
                    human_seconds(seconds),
                    rate_words(rate),
                    human_count(used),
                    human_count(ports),
                    human_count(open),
                    human_count(time_wait)
                ),
            })
        })
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
}

/// The growth of `part(open, time_wait)` of one pair over the window
/// (`by_sample` holds the window's samples from `start` on).
fn pair_growth(
    samples: &[Sample],
    by_sample: &[Option<BTreeMap<Pair, (u64, u64)>>],
    start: usize,
    pair: &Pair,
    part: fn(u64, u64) -> u64,
) -> Option<f64> {
    growth(samples, |index| {
        let map = by_sample.get(index.checked_sub(start)?)?.as_ref()?;
        let (open, time_wait) = map.get(pair).copied().unwrap_or((0, 0));
        Some(part(open, time_wait) as f64)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use c1m_common::*;

    use super::*;
    use crate::{
        analysis::inputs::{Capacity, Outbound},
        model::{
            ceiling::LimitKind,
            sock_census::{PairUse, tests::census_of},
            transitions::TransitionCounts,
        },
    };

    fn sample(at: f64, connections: u64) -> Sample {
        Sample {
            at_seconds: at,
            transitions: TransitionCounts::default(),
            census: Some(census_of(&[(
                ScanKind::Owned,
                TCP_ESTABLISHED,
                false,
                connections,
                0,
            )])),
            scan_fresh: true,
            user_bytes: 0,
            open_fds: connections,
            threads: 1,
            events: BTreeMap::new(),
            connection_fds: None,
            conntrack: None,
            dialled_closes: BTreeMap::new(),
        }
    }

    fn limit(name: &'static str, max: Option<u64>) -> Limit {
        Limit {
            kind: LimitKind::Kernel,
            name,
            source: String::new(),
            value: None,
            used: None,
            per_connection: None,
            max_connections: max,
            exceeded: false,
            evidence: Vec::new(),
            explanation: String::new(),
            remedy: String::new(),
        }
    }

    #[test]
    fn a_growing_count_runs_out_at_its_headroom_over_its_rate() {
        // 100 connections/s for the last 30 s, 3,000 open, nofile at 4,000:
        // 1,000 left, 10 s.
        let samples: Vec<_> = (0..=30).map(|t| sample(t as f64, t * 100)).collect();
        let i = CeilingInputs {
            connections: 3000,
            ..CeilingInputs::default()
        };
        let f = forecasts(&samples, &i, &[limit("nofile", Some(4000))]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].limit, "nofile");
        assert!((f[0].rate_per_second - 100.0).abs() < 1e-6);
        assert!((f[0].seconds - 10.0).abs() < 1e-6);
        assert_eq!(
            f[0].basis,
            "nofile runs out in 10 s at 100 more connections/s (3,000 open, 4,000 allowed)"
        );
    }

    #[test]
    fn only_the_last_minute_sets_the_rate() {
        // A fast ramp long ago, then 10/s over the last minute.
        let mut samples: Vec<_> = (0..10).map(|t| sample(t as f64, t * 1000)).collect();
        samples.extend((0..=60).map(|t| sample(100.0 + t as f64, 10_000 + t * 10)));
        let i = CeilingInputs {
            connections: 10_600,
            ..CeilingInputs::default()
        };
        let f = forecasts(&samples, &i, &[limit("memory", Some(11_600))]);
        assert!((f[0].rate_per_second - 10.0).abs() < 1e-6, "{f:?}");
        assert!((f[0].seconds - 100.0).abs() < 1e-6);
    }

    #[test]
    fn a_flat_or_shrinking_count_has_no_forecast() {
        let i = CeilingInputs {
            connections: 500,
            ..CeilingInputs::default()
        };
        let limits = [limit("nofile", Some(1000)), limit("tcp_mem", Some(900))];
        let flat: Vec<_> = (0..30).map(|t| sample(t as f64, 500 + t % 2)).collect();
        assert!(forecasts(&flat, &i, &limits).is_empty());
        let shrinking: Vec<_> = (0..30).map(|t| sample(t as f64, 800 - t * 10)).collect();
        assert!(forecasts(&shrinking, &i, &limits).is_empty());
        // A limit already hit, or not counted, has none either.
        let growing: Vec<_> = (0..30).map(|t| sample(t as f64, t * 10)).collect();
        let mut hit = limit("nofile", Some(1000));
        hit.exceeded = true;
        assert!(forecasts(&growing, &i, &[hit, limit("memory", None)]).is_empty());
    }

    #[test]
    fn forecasts_are_soonest_first() {
        let samples: Vec<_> = (0..=10).map(|t| sample(t as f64, t * 10)).collect();
        let i = CeilingInputs {
            connections: 100,
            ..CeilingInputs::default()
        };
        let f = forecasts(
            &samples,
            &i,
            &[limit("memory", Some(10_100)), limit("nofile", Some(200))],
        );
        let names: Vec<_> = f.iter().map(|f| f.limit).collect();
        assert_eq!(names, ["nofile", "memory"]);
        assert!((f[1].seconds - 1000.0).abs() < 1e-6);
    }

    /// A client dialling one destination: `open` connections held and
    /// `closed` active closes so far (each leaves a TIME_WAIT for 60 s).
    fn dialling(at: f64, open: u64, closed: u64) -> Sample {
        let mut s = sample(at, open);
        let scan = s.census.as_mut().unwrap();
        let source = "10.0.0.1".parse().unwrap();
        let destination = "10.0.0.5:5432".parse().unwrap();
        scan.outbound = vec![PairUse {
            source,
            destination,
            open,
            time_wait: 0,
        }];
        s.events.insert("dialled_time_wait", closed);
        s.dialled_closes.insert((source, destination), closed);
        s
    }

    fn ports(per_pair: u64) -> CeilingInputs {
        CeilingInputs {
            outbound: Some(Outbound {
                ports_per_pair: per_pair,
                pairs: Vec::new(),
            }),
            ..CeilingInputs::default()
        }
    }

    #[test]
    fn churn_runs_ports_out_when_its_time_wait_does_not_fit() {
        // 100 open, 300 closes/s for 20 s: 6,000 in TIME_WAIT, heading for
        // 18,000, in a range of 10,000: 3,900 left at 300/s, 13 s.
        let samples: Vec<_> = (0..=20).map(|t| dialling(t as f64, 100, t * 300)).collect();
        let f = forecasts(
            &samples,
            &ports(10_000),
            &[limit("ephemeral_ports", Some(10_100))],
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!((f[0].rate_per_second - 300.0).abs() < 1e-6);
        assert!((f[0].seconds - 13.0).abs() < 1e-6);
        assert_eq!(
            f[0].basis,
            "ephemeral ports for 10.0.0.1 -> 10.0.0.5:5432 run out in 13 s at 300 more ports/s \
             in use (6,100 of 10,000 ports: 100 open, 6,000 in TIME_WAIT)"
        );
        // The same churn in a range of 28,232 levels off at 18,100: none.
        let f = forecasts(
            &samples,
            &ports(28_232),
            &[limit("ephemeral_ports", Some(28_332))],
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn held_connections_run_ports_out_without_churn() {
        let samples: Vec<_> = (0..=10).map(|t| dialling(t as f64, t * 50, 0)).collect();
        let f = forecasts(
            &samples,
            &ports(1000),
            &[limit("ephemeral_ports", Some(1000))],
        );
        assert!((f[0].seconds - 10.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn time_wait_buckets_run_out_only_above_their_steady_state() {
        // 1,000 active closes/s for 10 s: 10,000 in TIME_WAIT, heading for
        // 60,000 against 32,768 buckets: 22,768 left, 22.8 s.
        let samples: Vec<_> = (0..=10)
            .map(|t| {
                let mut s = sample(t as f64, 10);
                s.census = None;
                s.transitions.add(TCP_FIN_WAIT2, TCP_CLOSE, t * 1000);
                s
            })
            .collect();
        let mut i = CeilingInputs {
            tw_max_buckets: Some(32_768),
            tw_steady_state: 60_000.0,
            tw_current: 10_000,
            ..CeilingInputs::default()
        };
        let limits = [limit("time_wait_buckets", None)];
        let f = forecasts(&samples, &i, &limits);
        assert!((f[0].seconds - 22.768).abs() < 1e-6, "{f:?}");
        assert!((f[0].rate_per_second - 1000.0).abs() < 1e-6);
        i.tw_max_buckets = Some(262_144);
        assert!(forecasts(&samples, &i, &limits).is_empty());
    }

    #[test]
    fn conntrack_counts_its_own_entries() {
        let samples: Vec<_> = (0..=10)
            .map(|t| {
                let mut s = sample(t as f64, 10);
                s.conntrack = Some(1000 + t * 200);
                s
            })
            .collect();
        let i = CeilingInputs {
            conntrack: Some(Capacity {
                max: 65_536,
                used: 3000,
            }),
            ..CeilingInputs::default()
        };
        let f = forecasts(&samples, &i, &[limit("conntrack", Some(62_546))]);
        assert!((f[0].rate_per_second - 200.0).abs() < 1e-6, "{f:?}");
        assert!((f[0].seconds - 62_536.0 / 200.0).abs() < 1e-6);
    }
}
