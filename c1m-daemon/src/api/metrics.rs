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
use serde::Serialize;

use super::Snapshot;
use crate::{
    model::{
        ceiling::Ceiling,
        report::{Connections, Cost, Report, TimeWait},
    },
    monitor::DaemonInfo,
};

type Labels = Vec<(&'static str, String)>;

/// A registry filled from one snapshot (built per scrape: the daemon's
/// state lives in the report, the registry is only its rendering). One
/// helper per report section, registered in the order of the exposition.
pub fn render(snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("c1m");
    if let Some(r) = &snapshot.report {
        register_connections(&mut registry, &r.connections);
        register_time_wait(&mut registry, &r.time_wait);
        register_cost(&mut registry, r);
        if let Some(ceiling) = &r.ceiling {
            register_ceiling(&mut registry, ceiling);
        }
        register_drops(&mut registry, r);
        register_netstat(&mut registry, r);
    }
    if let Some(d) = &snapshot.daemon {
        register_daemon(&mut registry, d);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn register_connections(registry: &mut Registry, c: &Connections) {
    gauge_family(
        registry,
        "connections",
        "Open connections of the target by TCP state",
        None,
        "state",
        c.by_state.iter().map(|(state, n)| (*state, *n as i64)),
    );
    gauge(
        registry,
        "connections_open",
        "Open connections of the target",
        None,
        c.current as f64,
    );
    counter(
        registry,
        "connections_accepted",
        "Connections the target accepted since c1m attached",
        c.accepted_total,
    );
    counter(
        registry,
        "connections_connected",
        "Connections the target opened since c1m attached",
        c.connected_total,
    );
    counter(
        registry,
        "connections_closed",
        "Connections of the target that closed since c1m attached",
        c.closed_total,
    );
}

fn register_time_wait(registry: &mut Registry, tw: &TimeWait) {
    gauge(
        registry,
        "time_wait_sockets",
        "TIME_WAIT sockets of the target",
        None,
        tw.current as f64,
    );
    counter(
        registry,
        "time_wait_entered",
        "Active closes of the target that entered TIME_WAIT",
        tw.entered_total,
    );
    gauge(
        registry,
        "time_wait_steady_state_sockets",
        "TIME_WAIT count the close rate is heading to",
        None,
        tw.steady_state,
    );
    if let Some(max) = tw.max_buckets {
        gauge(
            registry,
            "time_wait_buckets_max",
            "net.ipv4.tcp_max_tw_buckets",
            None,
            max as f64,
        );
    }
}

/// The cost per connection, then the target's totals it is derived from.
fn register_cost(registry: &mut Registry, r: &Report) {
    let cost: &Cost = &r.cost_per_connection;
    gauge(
        registry,
        "cost_kernel",
        "Kernel bytes per connection",
        Some(Unit::Bytes),
        cost.kernel_bytes as f64,
    );
    gauge_family(
        registry,
        "cost_kernel_component",
        "Kernel bytes per connection by object",
        Some(Unit::Bytes),
        "component",
        cost.kernel_breakdown
            .iter()
            .map(|(component, bytes)| (*component, *bytes as i64)),
    );
    if let Some(user) = cost.user_bytes {
        gauge(
            registry,
            "cost_user",
            "Userspace bytes per connection (average)",
            Some(Unit::Bytes),
            user as f64,
        );
    }
    if let Some(marginal) = cost.user_marginal_bytes {
        gauge(
            registry,
            "cost_user_marginal",
            "Userspace bytes per additional connection",
            Some(Unit::Bytes),
            marginal,
        );
    }
    gauge(
        registry,
        "target_open_fds",
        "Open file descriptors of the target",
        None,
        cost.open_fds as f64,
    );
    gauge(
        registry,
        "target_memory",
        "The target's own memory (Pss_Anon + Pss_Shmem)",
        Some(Unit::Bytes),
        r.target.memory_bytes as f64,
    );
}

fn register_ceiling(registry: &mut Registry, ceiling: &Ceiling) {
    let allowed = Family::<Labels, Gauge>::default();
    let exceeded = Family::<Labels, Gauge>::default();
    for limit in &ceiling.limits {
        let labels = vec![
            ("limit", limit.name.to_owned()),
            ("kind", json_word(limit.kind)),
        ];
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
    let exhaustion = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for f in &ceiling.forecasts {
        exhaustion
            .get_or_create(&vec![("limit", f.limit.to_owned())])
            .set(f.seconds);
    }
    // Named as the issue and the alert rule spell it (not `_seconds` last).
    registry.register(
        "seconds_to_exhaustion",
        "Seconds until a limit runs out at the growth of the last minute (only limits that a \
         growing quantity runs out)",
        exhaustion,
    );
    if let Some(binding) = &ceiling.binding {
        // Where the binding limit is set (a config file and line, a
        // sysctl): one series, so the label's values stay few.
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![
            ("limit", binding.name.to_owned()),
            ("kind", json_word(binding.kind)),
            ("source", binding.source.clone()),
        ])
        .set(1);
        registry.register(
            "binding_limit_info",
            "The limit that binds now, its kind and where it is set (value 1)",
            info,
        );
        if let Some(max) = binding.max_connections {
            gauge(
                registry,
                "ceiling_binding_connections",
                "Connections the binding limit allows",
                None,
                max as f64,
            );
        }
    }
}

/// The target namespace's netstat counters, as node_exporter would name
/// them (`node_netstat_TcpExt_ListenOverflows` there) under `c1m_netstat_`.
const NETSTAT_METRICS: &[(&str, &str, &str)] = &[
    (
        "TcpExt.ListenOverflows",
        "netstat_listen_overflows",
        "Connections dropped because an accept queue was full (target's namespace)",
    ),
    (
        "TcpExt.ListenDrops",
        "netstat_listen_drops",
        "Connections dropped by listeners for any reason (target's namespace)",
    ),
    (
        "TcpExt.TCPTimeWaitOverflow",
        "netstat_tcp_timewait_overflow",
        "Closes that got no TIME_WAIT socket: tcp_max_tw_buckets reached (target's namespace)",
    ),
    (
        "TcpExt.TCPMemoryPressures",
        "netstat_tcp_memory_pressures",
        "Times TCP entered memory pressure (tcp_mem)",
    ),
    (
        "TcpExt.TCPAbortOnMemory",
        "netstat_tcp_abort_on_memory",
        "Connections aborted for lack of TCP memory or too many orphans",
    ),
    (
        "TcpExt.TCPReqQFullDrop",
        "netstat_tcp_reqq_full_drop",
        "SYNs dropped because a SYN queue was full (target's namespace)",
    ),
    (
        "TcpExt.TCPReqQFullDoCookies",
        "netstat_tcp_reqq_full_do_cookies",
        "SYNs answered with syncookies because a SYN queue was full (target's namespace)",
    ),
    (
        "NfConntrack.insert_failed",
        "conntrack_insert_failed",
        "New connections whose conntrack entry could not be inserted (target's namespace)",
    ),
    (
        "NfConntrack.drop",
        "conntrack_drop",
        "Packets dropped because the conntrack table was full (target's namespace)",
    ),
    (
        "NfConntrack.early_drop",
        "conntrack_early_drop",
        "Conntrack entries evicted early to make room in a full table (target's namespace)",
    ),
];

fn register_netstat(registry: &mut Registry, r: &Report) {
    for (counter_name, name, help) in NETSTAT_METRICS {
        if let Some(value) = r.netstat.get(counter_name) {
            counter(registry, name, help, *value);
        }
    }
}

fn register_drops(registry: &mut Registry, r: &Report) {
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

fn register_daemon(registry: &mut Registry, d: &DaemonInfo) {
    gauge(
        registry,
        "daemon_resident_memory",
        "c1m-daemon's resident memory",
        Some(Unit::Bytes),
        d.rss_bytes as f64,
    );
    let cpu: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
    cpu.inc_by(d.cpu_seconds);
    registry.register_with_unit("daemon_cpu", "c1m-daemon's CPU time", Unit::Seconds, cpu);
    counter(registry, "daemon_samples", "Samples taken", d.samples);
    gauge(
        registry,
        "daemon_bpf_memory",
        "Kernel memory c1m's BPF maps and programs pin (memlock)",
        Some(Unit::Bytes),
        d.bpf_memory_bytes as f64,
    );
    // One series per c1m program (a fixed set of a dozen names).
    let runs = Family::<Labels, Counter>::default();
    let run_time = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    for p in &d.programs {
        let labels = vec![("program", p.name.clone())];
        runs.get_or_create(&labels).inc_by(p.runs);
        run_time
            .get_or_create(&labels)
            .inc_by(p.run_ns as f64 / 1e9);
    }
    registry.register(
        "daemon_program_runs",
        "Runs of each of c1m's kernel programs (while run-time stats are on)",
        runs,
    );
    registry.register_with_unit(
        "daemon_program_run",
        "Time spent in each of c1m's kernel programs",
        Unit::Seconds,
        run_time,
    );
}

fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(value);
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, g),
        None => registry.register(name, help, g),
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// A gauge family with one label (`label`) whose values come from a small
/// fixed set (TCP state, cost component).
fn gauge_family<'a>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    label: &'static str,
    values: impl Iterator<Item = (&'a str, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (value, n) in values {
        family
            .get_or_create(&vec![(label, value.to_owned())])
            .set(n);
    }
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family),
        None => registry.register(name, help, family),
    }
}

/// The word a unit enum serializes to in the JSON API (e.g. a limit's kind).
fn json_word(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
