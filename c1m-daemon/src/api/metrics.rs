//! `GET /metrics`: the latest report in Prometheus text exposition, so one
//! Prometheus can scrape the daemons of many boxes. Names carry the `c1m_`
//! prefix and their unit; labels take values from small fixed sets (TCP
//! state, limit name, cost component, drop reason), never per connection
//! or per port.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::Snapshot;

type Labels = Vec<(&'static str, String)>;

/// A registry filled from one snapshot (built per scrape: the daemon's
/// state lives in the report, the registry is only its rendering).
pub fn render(snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("c1m");
    if let Some(r) = &snapshot.report {
        let gauge =
            |registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64| {
                let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
                g.set(value);
                match unit {
                    Some(unit) => registry.register_with_unit(name, help, unit, g),
                    None => registry.register(name, help, g),
                }
            };
        let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
            let c: Counter = Counter::default();
            c.inc_by(value);
            registry.register(name, help, c);
        };
        let c = &r.connections;
        let by_state = Family::<Labels, Gauge>::default();
        for (state, n) in &c.by_state {
            by_state
                .get_or_create(&vec![("state", (*state).to_owned())])
                .set(*n as i64);
        }
        registry.register(
            "connections",
            "Open connections of the target by TCP state",
            by_state,
        );
        gauge(
            &mut registry,
            "connections_open",
            "Open connections of the target",
            None,
            c.current as f64,
        );
        counter(
            &mut registry,
            "connections_accepted",
            "Connections the target accepted since c1m attached",
            c.accepted_total,
        );
        counter(
            &mut registry,
            "connections_connected",
            "Connections the target opened since c1m attached",
            c.connected_total,
        );
        counter(
            &mut registry,
            "connections_closed",
            "Connections of the target that closed since c1m attached",
            c.closed_total,
        );

        let tw = &r.time_wait;
        gauge(
            &mut registry,
            "time_wait_sockets",
            "TIME_WAIT sockets of the target",
            None,
            tw.current as f64,
        );
        counter(
            &mut registry,
            "time_wait_entered",
            "Active closes of the target that entered TIME_WAIT",
            tw.entered_total,
        );
        gauge(
            &mut registry,
            "time_wait_steady_state_sockets",
            "TIME_WAIT count the close rate is heading to",
            None,
            tw.steady_state,
        );
        if let Some(max) = tw.max_buckets {
            gauge(
                &mut registry,
                "time_wait_buckets_max",
                "net.ipv4.tcp_max_tw_buckets",
                None,
                max as f64,
            );
        }

        let cost = &r.cost_per_connection;
        gauge(
            &mut registry,
            "cost_kernel",
            "Kernel bytes per connection",
            Some(Unit::Bytes),
            cost.kernel_bytes as f64,
        );
        let components = Family::<Labels, Gauge>::default();
        for (component, bytes) in &cost.kernel_breakdown {
            components
                .get_or_create(&vec![("component", (*component).to_owned())])
                .set(*bytes as i64);
        }
        registry.register_with_unit(
            "cost_kernel_component",
            "Kernel bytes per connection by object",
            Unit::Bytes,
            components,
        );
        if let Some(user) = cost.user_bytes {
            gauge(
                &mut registry,
                "cost_user",
                "Userspace bytes per connection (average)",
                Some(Unit::Bytes),
                user as f64,
            );
        }
        if let Some(marginal) = cost.user_marginal_bytes {
            gauge(
                &mut registry,
                "cost_user_marginal",
                "Userspace bytes per additional connection",
                Some(Unit::Bytes),
                marginal,
            );
        }
        gauge(
            &mut registry,
            "target_open_fds",
            "Open file descriptors of the target",
            None,
            cost.open_fds as f64,
        );
        gauge(
            &mut registry,
            "target_memory",
            "The target's own memory (Pss_Anon + Pss_Shmem)",
            Some(Unit::Bytes),
            r.target.memory_bytes as f64,
        );

        if let Some(ceiling) = &r.ceiling {
            let allowed = Family::<Labels, Gauge>::default();
            let exceeded = Family::<Labels, Gauge>::default();
            for limit in &ceiling.limits {
                let kind = serde_json::to_value(limit.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let labels = vec![("limit", limit.name.to_owned()), ("kind", kind)];
                if let Some(max) = limit.max_connections {
                    allowed
                        .get_or_create(&labels)
                        .set(max.min(i64::MAX as u64) as i64);
                }
                exceeded
                    .get_or_create(&labels)
                    .set(i64::from(limit.exceeded));
            }
            registry.register(
                "ceiling_connections",
                "Connections each limit allows",
                allowed,
            );
            registry.register(
                "ceiling_exceeded",
                "1 when a limit is being hit now",
                exceeded,
            );
            if let Some(binding) = &ceiling.binding {
                // Where the binding limit is set (a config file and line, a
                // sysctl): one series, so the label's values stay few.
                let info = Family::<Labels, Gauge>::default();
                let kind = serde_json::to_value(binding.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                info.get_or_create(&vec![
                    ("limit", binding.name.to_owned()),
                    ("kind", kind),
                    ("source", binding.source.clone()),
                ])
                .set(1);
                registry.register(
                    "binding_limit_info",
                    "The limit that binds now, its kind and where it is set (value 1)",
                    info,
                );
            }
            if let Some(max) = ceiling.binding.as_ref().and_then(|b| b.max_connections) {
                gauge(
                    &mut registry,
                    "ceiling_binding_connections",
                    "Connections the binding limit allows",
                    None,
                    max as f64,
                );
            }
        }
        let drops = Family::<Labels, Counter>::default();
        for (reason, n) in &r.drops {
            drops
                .get_or_create(&vec![("reason", (*reason).to_owned())])
                .inc_by(*n);
        }
        registry.register(
            "drops",
            "Events the kernel side could not record, by reason",
            drops,
        );
    }
    if let Some(d) = &snapshot.daemon {
        let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        g.set(d.rss_bytes as f64);
        registry.register_with_unit(
            "daemon_resident_memory",
            "c1m-daemon's resident memory",
            Unit::Bytes,
            g,
        );
        let cpu: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        cpu.inc_by(d.cpu_seconds);
        registry.register_with_unit("daemon_cpu", "c1m-daemon's CPU time", Unit::Seconds, cpu);
        let samples: Counter = Counter::default();
        samples.inc_by(d.samples);
        registry.register("daemon_samples", "Samples taken", samples);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
