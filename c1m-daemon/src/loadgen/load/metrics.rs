//! `load --metrics ADDR`: the load's own counters as Prometheus text at
//! `GET /metrics` while it runs, so the shards of a load spread over many
//! hosts (`--shard I/N`) are summed by the Prometheus that scrapes them:
//! `sum(c1m_load_connections_open)` is the whole load's open connections.
//! Every series carries `shard="I"` and `shards="N"` (0 and 1 without
//! `--shard`); failures are labelled by the name the load counts them
//! under (`errno="ECONNREFUSED"`, as in the JSON's `failures`).

use std::{borrow::Cow, net::SocketAddr};

use anyhow::Context as _;
use axum::{Router, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;

use crate::loadgen::protocol::{HostShard, LoadTotals};

/// What a scrape renders: the load's totals now, and what it aims for.
#[derive(Debug, Clone, Default)]
pub struct LoadSnapshot {
    pub totals: LoadTotals,
    /// Connections this load (this shard) opens and holds.
    pub target: u64,
    /// Every process has finished its ramp.
    pub ramped: bool,
}

/// Bind `addr` now (so a taken port is an error before the first connect)
/// and serve `/metrics` from the latest snapshot until the process ends.
/// Returns the bound address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    shard: HostShard,
    latest: watch::Receiver<LoadSnapshot>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("--metrics {addr}: cannot listen there; give a free address, e.g. 0.0.0.0:9809")
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let snapshot = latest.borrow().clone();
            async move {
                match render(shard, &snapshot) {
                    Ok(text) => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot render metrics",
                    )
                        .into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            log::warn!("load --metrics {bound}: {err}");
        }
    });
    Ok(bound)
}

/// The exposition of one snapshot (a registry built per scrape, as the
/// daemon's `/metrics` does).
pub fn render(shard: HostShard, s: &LoadSnapshot) -> Result<String, std::fmt::Error> {
    let labels = [
        (Cow::Borrowed("shard"), Cow::Owned(shard.index.to_string())),
        (Cow::Borrowed("shards"), Cow::Owned(shard.count.to_string())),
    ];
    let mut registry = Registry::with_prefix_and_labels("c1m_load", labels.into_iter());
    let c = &s.totals.counts;
    gauge(
        &mut registry,
        "connections_open",
        "Connections this load shard holds open now",
        c.open,
    );
    gauge(
        &mut registry,
        "connections_target",
        "Connections this load shard opens and holds (its share of the total)",
        s.target,
    );
    gauge(
        &mut registry,
        "ramped",
        "1 once every process of this shard has finished its ramp",
        u64::from(s.ramped),
    );
    counter(
        &mut registry,
        "connection_attempts",
        "Connects this load shard started",
        c.attempts,
    );
    counter(
        &mut registry,
        "connections_connected",
        "Connections this load shard opened (answered, with a greeting or messages)",
        c.connected_total,
    );
    counter(
        &mut registry,
        "connections_closed",
        "Connections this load shard closed or lost",
        c.closed_total,
    );
    counter(
        &mut registry,
        "connections_dropped_by_server",
        "Held connections the server closed or reset",
        c.dropped_by_server,
    );
    let failures = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (errno, n) in &c.failures {
        failures
            .get_or_create(&vec![("errno", errno.clone())])
            .inc_by(*n);
    }
    registry.register(
        "connection_failures",
        "Failed connects and connections, by errno (as the JSON's failures)",
        failures,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_carries_the_shard_and_failures_their_errno() {
        let mut s = LoadSnapshot {
            target: 1_001,
            ramped: true,
            ..LoadSnapshot::default()
        };
        s.totals.counts.open = 1_000;
        s.totals.counts.attempts = 1_003;
        s.totals.counts.failures.insert("ECONNREFUSED".into(), 3);
        let text = render(HostShard { index: 2, count: 3 }, &s).unwrap();
        assert!(
            text.contains(r#"c1m_load_connections_open{shard="2",shards="3"} 1000"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"c1m_load_connection_failures_total{shard="2",shards="3",errno="ECONNREFUSED"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"c1m_load_connection_attempts_total{shard="2",shards="3"} 1003"#));
        assert!(text.contains(r#"c1m_load_connections_target{shard="2",shards="3"} 1001"#));
    }
}
