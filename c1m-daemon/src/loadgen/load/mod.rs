//! `c1m-daemon load`: open N connections to a server and hold them, or
//! churn them, reporting progress every second and, when the ramp stops
//! short, the limit behind it and its side.
//!
//! A process holds at most RLIMIT_NOFILE connections, so the load shards
//! itself: it starts as many copies of itself as needed (`--shard-plan`,
//! one JSON plan each), which print their counters as JSON lines; this
//! coordinator sums them.
//!
//! A load too big for one box runs on many, each told its part with
//! `--shard I/N` ([`host_shard`]): its share of the connections and the
//! rate, and source (address, port) pairs of its own.

pub mod diagnose;
pub mod greeting;
pub mod host_shard;
pub mod latency;
pub mod metrics;
mod shard;
pub mod source_ips;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    sync::watch,
};

pub use crate::loadgen::protocol::CloseSide;
use crate::loadgen::protocol::{
    HostShard, LoadEvent, LoadOutcome, LoadProgress, LoadRamped, LoadTotals, PortRange, ShardPlan,
    ShardProgress, Verdict, from_line, to_line,
};
use shard::{ShardCounters, run_shard};

use self::diagnose::{Evidence, ServerFds, diagnose};
use crate::{
    loadgen::child::{spawn_self, terminate_pid},
    runtime::Shutdown,
    system::{
        limits::read_rlimit_nofile,
        memory::open_fds,
        netstat::read_netstat,
        process::descendants,
        process_limits::read_process_limits,
        sysctl::{ephemeral_ports, read_sysctl_numbers, read_sysctl_u64},
    },
};

/// fds a load process keeps for itself.
const FDS_RESERVED: u64 = 64;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub target: SocketAddr,
    /// Connections this process opens: with `--shard`, its share.
    pub connections: u64,
    /// Connects per second of this process: with `--shard`, its share.
    pub rate: Option<u64>,
    pub hold: Duration,
    pub message_bytes: usize,
    pub interval: Duration,
    pub source_ips: Option<Vec<std::net::IpAddr>>,
    pub churn: Option<(CloseSide, Duration)>,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub processes: Option<u64>,
    pub server_pid: Option<u32>,
    pub json: bool,
    /// What each connection says once connected (`--send/--expect`,
    /// `--http`); `None` holds it idle.
    pub greeting: Option<greeting::Greeting>,
    /// `--shard I/N`: the part of a load spread over hosts this one is.
    pub host_shard: Option<HostShard>,
    /// With `host_shard` on fewer source addresses than shards: bind in a
    /// slice of the ephemeral ports (`false`: `--no-port-slice`, the
    /// addresses are not shared, the kernel picks from the whole range).
    pub port_slice: bool,
    /// The connections of the whole load, over every host shard (picking
    /// loopback source addresses for all of them, to deal out).
    pub total_connections: u64,
    /// `--metrics ADDR`: serve Prometheus text at /metrics there.
    pub metrics: Option<SocketAddr>,
}

/// Plan the shards: enough processes for the fd limit, the rate split
/// evenly, each starting at its own place in the source IPs.
/// With a port slice, each process binds in its own part of it (and there
/// are never more processes than ports).
pub fn plan_shards(
    options: &LoadOptions,
    source_ips: &[std::net::IpAddr],
    source_ports: Option<PortRange>,
    nofile: u64,
) -> Vec<ShardPlan> {
    let per_process = nofile.saturating_sub(FDS_RESERVED).max(1);
    let processes = options
        .processes
        .unwrap_or_else(|| options.connections.div_ceil(per_process))
        .clamp(1, options.connections.max(1))
        .min(source_ports.map_or(u64::MAX, |p| p.len().max(1)));
    (0..processes)
        .map(|i| {
            let share =
                options.connections / processes + u64::from(i < options.connections % processes);
            ShardPlan {
                target: options.target,
                connections: share,
                rate: options.rate.map(|r| (r / processes).max(1)),
                message_bytes: options.message_bytes,
                interval: options.interval,
                source_ips: source_ips.to_vec(),
                source_offset: (i as usize * source_ips.len().max(1)) / processes as usize,
                churn: options.churn,
                connect_timeout: options.connect_timeout,
                stall_timeout: options.stall_timeout,
                greeting: options.greeting.clone(),
                source_ports: source_ports.map(|p| host_shard::port_slice(p, i, processes)),
            }
        })
        .collect()
}

/// Where the shards' counters come from.
enum Shards {
    InProcess(Arc<ShardCounters>, tokio::task::JoinHandle<()>),
    Children {
        latest: Vec<watch::Receiver<ShardProgress>>,
        pids: Vec<u32>,
        running: tokio::task::JoinSet<()>,
    },
}

impl Shards {
    fn totals(&self) -> LoadTotals {
        let mut totals = LoadTotals::default();
        match self {
            Shards::InProcess(counters, _) => totals += &counters.progress(),
            Shards::Children { latest, .. } => {
                for shard in latest {
                    totals += &*shard.borrow();
                }
            }
        }
        totals
    }

    fn count(&self) -> u64 {
        match self {
            Shards::InProcess(..) => 1,
            Shards::Children { pids, .. } => pids.len() as u64,
        }
    }

    fn finished(&self) -> bool {
        match self {
            Shards::InProcess(_, task) => task.is_finished(),
            Shards::Children { running, .. } => running.is_empty(),
        }
    }

    async fn reap(&mut self) {
        match self {
            Shards::InProcess(_, task) => {
                let _ = task.await;
            }
            Shards::Children { running, .. } => {
                while running.try_join_next().is_some() {}
                if !running.is_empty() {
                    let _ = running.join_next().await;
                }
            }
        }
    }
}

/// Run the load and print its outcome; the caller decides what a run that
/// [fell short](LoadOutcome::fell_short) means for the exit code.
pub fn run(options: LoadOptions) -> anyhow::Result<LoadOutcome> {
    let runtime = crate::runtime::current_thread()?;
    let outcome = runtime.block_on(coordinate(&options))?;
    print_outcome(&options, &outcome);
    Ok(outcome)
}

/// Ephemeral ports the load holds at once: one per open connection, plus,
/// when it churns and closes first, one per TIME_WAIT socket it leaves
/// (up to tcp_max_tw_buckets; the kernel's port search has to step over
/// them: on one source IP a churn tops out at 14k/s here, on 64 at 31k/s).
/// Over every host shard, so that addresses picked for all can be dealt
/// out.
fn ports_held(options: &LoadOptions, max_tw_buckets: Option<u64>) -> u64 {
    match options.churn {
        Some((CloseSide::Client, _)) => options.total_connections + max_tw_buckets.unwrap_or(0),
        _ => options.total_connections,
    }
}

/// What the coordinator settles before the first connection: the source
/// IPs, the fd limit each shard lives under, and the shards' plans.
struct Setup {
    ports_per_ip: u64,
    source_ips: Vec<IpAddr>,
    /// With `--shard` on shared addresses: the ports this shard binds.
    source_ports: Option<PortRange>,
    nofile: u64,
    plans: Vec<ShardPlan>,
    /// The server's accept-queue overflows before the load, to count ours.
    overflows_before: u64,
}

impl Setup {
    fn read(options: &LoadOptions) -> anyhow::Result<Setup> {
        let ports_per_ip = ephemeral_ports();
        let listed = match &options.source_ips {
            Some(ips) => ips.clone(),
            None => source_ips::auto_source_ips(
                options.target.ip(),
                ports_held(options, read_sysctl_u64("net.ipv4.tcp_max_tw_buckets").ok()),
                ports_per_ip,
            ),
        };
        let (source_ips, source_ports) = match options.host_shard {
            None => (listed, None),
            Some(shard) => host_sources(options, shard, &listed)?,
        };
        let nofile = read_rlimit_nofile().soft;
        let plans = plan_shards(options, &source_ips, source_ports, nofile);
        Ok(Setup {
            ports_per_ip,
            source_ips,
            source_ports,
            nofile,
            plans,
            overflows_before: listen_overflows(),
        })
    }
}

/// A host shard's source addresses and, when it shares them with other
/// shards, its slice of this namespace's ephemeral port range; an error
/// when those cannot hold its share of connections.
fn host_sources(
    options: &LoadOptions,
    shard: HostShard,
    listed: &[IpAddr],
) -> anyhow::Result<(Vec<IpAddr>, Option<PortRange>)> {
    let [low, high] = read_sysctl_numbers::<2>("net.ipv4.ip_local_port_range")
        .context("--shard: reading net.ipv4.ip_local_port_range to split it between the shards")?;
    let ephemeral = PortRange {
        first: u16::try_from(low).unwrap_or(u16::MAX),
        last: u16::try_from(high).unwrap_or(u16::MAX),
    };
    let mut slice = host_shard::source_slice(shard, listed, ephemeral);
    if !options.port_slice {
        slice.ports = None;
    }
    if let Some(ports) = slice.ports {
        let pairs = slice.ips.len().max(1) as u64 * ports.len();
        // A churn reuses its ports; a hold needs one pair per connection.
        if options.churn.is_none() && pairs < options.connections {
            anyhow::bail!(
                "--shard {shard}: this shard's {} connections need as many source (address, port) \
                 pairs, but it has {pairs}: {} address(es) x {} ports (its slice {} of \
                 net.ipv4.ip_local_port_range {ephemeral}, split {} ways because fewer than {} \
                 source addresses were given). Give --source-ips with at least {} addresses (each \
                 shard then has addresses of its own), or widen ip_local_port_range, or run more \
                 shards",
                options.connections,
                slice.ips.len().max(1),
                ports.len(),
                if ports.is_empty() {
                    "(none)".to_owned()
                } else {
                    ports.to_string()
                },
                shard.count,
                shard.count,
                shard.count,
            );
        }
    }
    Ok((slice.ips, slice.ports))
}

/// Where the load stands between ticks of the coordination loop.
#[derive(Default)]
struct Progress {
    peak_open: u64,
    ramp_done: Option<Duration>,
    previous_connected: u64,
    stopping: bool,
    verdict: Option<Verdict>,
}

/// Start the shards, sum their counters every second until they finish
/// (the ramp, the hold, or a signal), and return the outcome.
pub async fn coordinate(options: &LoadOptions) -> anyhow::Result<LoadOutcome> {
    let setup = Setup::read(options)?;
    let (publish, latest) = watch::channel(metrics::LoadSnapshot {
        target: options.connections,
        ..metrics::LoadSnapshot::default()
    });
    if let Some(addr) = options.metrics {
        let shard = options
            .host_shard
            .unwrap_or(HostShard { index: 0, count: 1 });
        let bound = metrics::serve(addr, shard, latest)?;
        eprintln!("c1m load: Prometheus metrics at http://{bound}/metrics");
    }
    if let Some(shard) = options.host_shard {
        eprintln!(
            "c1m load: shard {shard}: {} connections{}, from {}",
            options.connections,
            options.rate.map_or(String::new(), |r| format!(" at {r}/s")),
            describe_sources(&setup),
        );
    }
    let (stop, stopped) = watch::channel(false);
    let mut shards = start_shards(&setup.plans, stopped)?;
    let bar = progress_bar(options);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut shutdown = Shutdown::install()?;
    let mut p = Progress::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            _ = shutdown.recv() => { stop_all(&stop, &shards); p.stopping = true; }
            _ = shards.reap() => {},
        }
        let totals = shards.totals();
        p.peak_open = p.peak_open.max(totals.counts.open);
        // The ramp is over when every shard has finished its part (churn
        // mode has no ramp: its duration is the shards' business).
        if p.ramp_done.is_none() && totals.ramped_shards == shards.count() {
            p.ramp_done = Some(started.elapsed());
            // Diagnose now, while the connections (and the server's fds)
            // are still open.
            if options.churn.is_none() && p.peak_open < options.connections {
                p.verdict = diagnose_ramp(options, &setup, &totals);
            }
            if options.json {
                print_ramped(options, started, &totals, &p);
            }
        }
        if let Some(ramped) = p.ramp_done
            && !p.stopping
            && options.churn.is_none()
            && started.elapsed() >= ramped + options.hold
        {
            stop_all(&stop, &shards);
            p.stopping = true;
        }
        let rate = totals.counts.connected_total - p.previous_connected;
        p.previous_connected = totals.counts.connected_total;
        publish.send_replace(metrics::LoadSnapshot {
            totals: totals.clone(),
            target: options.connections,
            ramped: p.ramp_done.is_some(),
        });
        report_progress(options, &bar, started.elapsed(), &totals, rate);
        if shards.finished() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(outcome(options, &setup, &shards, started, p))
}

/// One shard runs in this process; more run as child processes.
fn start_shards(plans: &[ShardPlan], stopped: watch::Receiver<bool>) -> anyhow::Result<Shards> {
    if plans.len() == 1 {
        let counters = Arc::new(ShardCounters::default());
        let task = tokio::spawn(run_shard(plans[0].clone(), counters.clone(), stopped));
        Ok(Shards::InProcess(counters, task))
    } else {
        spawn_children(plans)
    }
}

/// Why a ramp stopped short, from its errors and the server's state.
fn diagnose_ramp(options: &LoadOptions, setup: &Setup, totals: &LoadTotals) -> Option<Verdict> {
    diagnose(&Evidence {
        failures: totals.counts.failures.clone(),
        stalled: totals.stalled_shards > 0,
        client_nofile: setup.nofile,
        ports_per_ip: setup.ports_per_ip,
        source_ips: setup.source_ips.len(),
        servers_at_fd_limit: options
            .server_pid
            .map(servers_at_fd_limit)
            .unwrap_or_default(),
        listen_overflows: listen_overflows().saturating_sub(setup.overflows_before),
    })
}

/// The `ramped` event of `load --json`.
fn print_ramped(options: &LoadOptions, started: Instant, totals: &LoadTotals, p: &Progress) {
    println!(
        "{}",
        to_line(&LoadEvent::Ramped(LoadRamped {
            elapsed_ms: started.elapsed().as_millis() as u64,
            open: totals.counts.open,
            target: options.connections,
            reached: p.peak_open >= options.connections,
            failures: totals.counts.failures.clone(),
            verdict: p.verdict.clone(),
            connect_latency_us: totals.counts.connect_latency_us.clone(),
            host_shard: options.host_shard,
        }))
    );
}

fn outcome(
    options: &LoadOptions,
    setup: &Setup,
    shards: &Shards,
    started: Instant,
    p: Progress,
) -> LoadOutcome {
    let totals = shards.totals();
    let ramp_seconds = p.ramp_done.unwrap_or(started.elapsed()).as_secs_f64();
    let reached = options.churn.is_none() && p.peak_open >= options.connections;
    LoadOutcome {
        target: options.target,
        requested: options.connections,
        peak_open: p.peak_open,
        reached,
        ramp_seconds,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        ramp_rate: totals.counts.connected_total as f64 / ramp_seconds.max(1e-3),
        processes: shards.count(),
        source_ips: setup.source_ips.len(),
        totals,
        verdict: if reached { None } else { p.verdict },
        churned: options.churn.is_some(),
        host_shard: options.host_shard,
    }
}

/// "3 addresses of its own" / "2 shared addresses, ports 42178-51588".
fn describe_sources(setup: &Setup) -> String {
    let ips = setup.source_ips.len();
    match setup.source_ports {
        None if ips == 0 => "the kernel's choice of address and port".to_owned(),
        None => format!("{ips} source address(es) of its own"),
        Some(ports) if ips == 0 => format!("the kernel's choice of address, ports {ports}"),
        Some(ports) => format!("{ips} shared source address(es), ports {ports}"),
    }
}

fn stop_all(stop: &watch::Sender<bool>, shards: &Shards) {
    let _ = stop.send(true);
    if let Shards::Children { pids, .. } = shards {
        for &pid in pids {
            terminate_pid(pid);
        }
    }
}

fn spawn_children(plans: &[ShardPlan]) -> anyhow::Result<Shards> {
    let mut latest = Vec::new();
    let mut pids = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    for (index, plan) in plans.iter().enumerate() {
        let plan = to_line(plan);
        let mut child = spawn_self(["load", "--shard-plan", &plan], |_| {})
            .with_context(|| format!("starting load shard {index}"))?;
        pids.push(child.id().unwrap_or(0));
        let (publish, receiver) = watch::channel(ShardProgress::default());
        latest.push(receiver);
        let stdout = child.stdout.take().expect("piped");
        running.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match from_line::<ShardProgress>(&line) {
                    Ok(progress) => {
                        publish.send_replace(progress);
                    }
                    Err(err) => log::warn!("load shard {index}: {err}"),
                }
            }
            let _ = child.wait().await;
        });
    }
    Ok(Shards::Children {
        latest,
        pids,
        running,
    })
}

/// A shard started by the coordinator: run the plan, print counters as a
/// JSON line every second and once more at the end.
pub fn run_as_shard(plan_json: &str) -> anyhow::Result<()> {
    let plan: ShardPlan = from_line(plan_json).context("--shard-plan is not a shard plan")?;
    let runtime = crate::runtime::current_thread()?;
    runtime.block_on(async move {
        let counters = Arc::new(ShardCounters::default());
        let (stop, stopped) = watch::channel(false);
        let mut task = tokio::spawn(run_shard(plan, counters.clone(), stopped));
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let mut shutdown = Shutdown::install()?;
        loop {
            tokio::select! {
                _ = ticker.tick() => println!("{}", to_line(&counters.progress())),
                _ = shutdown.recv() => { let _ = stop.send(true); }
                _ = &mut task => break,
            }
        }
        println!("{}", to_line(&counters.progress()));
        Ok(())
    })
}

/// `TcpExt.ListenOverflows + ListenDrops`, box-wide (0 when unreadable).
fn listen_overflows() -> u64 {
    read_netstat().map_or(0, |c| {
        c.get("TcpExt.ListenOverflows").copied().unwrap_or(0)
            + c.get("TcpExt.ListenDrops").copied().unwrap_or(0)
    })
}

/// The server process and its children that are at their fd limit. Counts
/// fds through /proc once, at the end of a run that fell short.
fn servers_at_fd_limit(pid: u32) -> Vec<ServerFds> {
    std::iter::once(pid)
        .chain(descendants(pid).into_iter().map(|(child, _)| child))
        .filter_map(|pid| {
            let nofile_soft = match read_process_limits(pid).ok()?.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => v,
                procfs::process::LimitValue::Unlimited => return None,
            };
            let open_fds = open_fds(pid).ok()?;
            // A server may stop accepting a little before EMFILE (keeping
            // fds for itself), so "at the limit" has a small margin.
            let margin = (nofile_soft / 100).max(16);
            (open_fds + margin >= nofile_soft).then_some(ServerFds {
                pid,
                open_fds,
                nofile_soft,
            })
        })
        .collect()
}

fn progress_bar(options: &LoadOptions) -> ProgressBar {
    use std::io::IsTerminal as _;
    if options.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(options.connections);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} open  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn report_progress(
    options: &LoadOptions,
    bar: &ProgressBar,
    elapsed: Duration,
    totals: &LoadTotals,
    rate: u64,
) {
    if options.json {
        let c = &totals.counts;
        println!(
            "{}",
            to_line(&LoadEvent::Progress(LoadProgress {
                elapsed_ms: elapsed.as_millis() as u64,
                target: options.connections,
                open: c.open,
                connected_total: c.connected_total,
                closed_total: c.closed_total,
                rate_per_second: rate,
                failures: c.failures.clone(),
                messages_ok: c.messages_ok,
                messages_bad: c.messages_bad,
                dropped_by_server: c.dropped_by_server,
                host_shard: options.host_shard,
            }))
        );
    } else if bar.is_hidden() {
        eprintln!(
            "{:>6.1}s  open {:>9}/{}  {:>7}/s  closed {}  failures {:?}",
            elapsed.as_secs_f64(),
            totals.counts.open,
            options.connections,
            rate,
            totals.counts.closed_total,
            totals.counts.failures
        );
    } else {
        bar.set_position(totals.counts.open);
        bar.set_message(format!("{rate}/s  failures {:?}", totals.counts.failures));
    }
}

fn print_outcome(options: &LoadOptions, outcome: &LoadOutcome) {
    if options.json {
        println!("{}", to_line(&LoadEvent::Done(outcome.clone())));
        return;
    }
    let t = &outcome.totals;
    if options.churn.is_some() {
        println!(
            "churned {} connections ({:.0}/s) to {}; failures {:?}",
            t.counts.closed_total,
            t.counts.closed_total as f64 / outcome.elapsed_seconds.max(1e-3),
            outcome.target,
            t.counts.failures
        );
    } else if outcome.reached {
        println!(
            "reached {} connections to {} in {:.1}s ({:.0}/s) with {} process(es), held and closed",
            outcome.peak_open,
            outcome.target,
            outcome.ramp_seconds,
            outcome.ramp_rate,
            outcome.processes
        );
    } else {
        println!(
            "stopped at {} of {} connections to {}; failures {:?}",
            outcome.peak_open, outcome.requested, outcome.target, t.counts.failures
        );
    }
    if let Some(v) = &outcome.verdict {
        println!(
            "limit: {} ({}{}): {}",
            v.limit,
            v.side,
            v.errno
                .as_deref()
                .map_or(String::new(), |e| format!(", {e}")),
            v.explanation
        );
    }
    if t.counts.messages_ok + t.counts.messages_bad > 0 {
        println!(
            "messages echoed: {} ok, {} wrong",
            t.counts.messages_ok, t.counts.messages_bad
        );
    }
    if t.counts.dropped_by_server > 0 {
        println!(
            "the server closed {} held connections",
            t.counts.dropped_by_server
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(connections: u64) -> LoadOptions {
        LoadOptions {
            target: "127.0.0.1:7007".parse().unwrap(),
            connections,
            rate: Some(10_000),
            hold: Duration::from_secs(1),
            message_bytes: 0,
            interval: Duration::from_secs(1),
            source_ips: None,
            churn: None,
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            processes: None,
            server_pid: None,
            json: false,
            greeting: None,
            host_shard: None,
            port_slice: true,
            total_connections: connections,
            metrics: None,
        }
    }

    #[test]
    fn shards_cover_the_connections_within_each_fd_limit() {
        let plans = plan_shards(&options(30_000), &[], None, 20_000);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans.iter().map(|p| p.connections).sum::<u64>(), 30_000);
        assert!(plans.iter().all(|p| p.connections <= 20_000 - FDS_RESERVED));
        assert_eq!(plans[0].rate, Some(5_000));
        assert_eq!(plan_shards(&options(100), &[], None, 20_000).len(), 1);
    }

    #[test]
    fn a_client_closing_churn_counts_its_time_wait_ports() {
        let mut o = options(64);
        assert_eq!(ports_held(&o, Some(131_072)), 64);
        o.churn = Some((CloseSide::Server, Duration::from_secs(1)));
        assert_eq!(ports_held(&o, Some(131_072)), 64, "TIME_WAIT on the server");
        o.churn = Some((CloseSide::Client, Duration::from_secs(1)));
        assert_eq!(ports_held(&o, Some(131_072)), 131_136);
        assert_eq!(ports_held(&o, None), 64);
        // On loopback that spreads the churn over source IPs.
        let ips = source_ips::auto_source_ips(o.target.ip(), ports_held(&o, Some(131_072)), 28_232);
        assert_eq!(ips.len(), 19);
    }

    #[test]
    fn shards_start_at_different_source_ips() {
        let ips: Vec<std::net::IpAddr> = (1..=4)
            .map(|n| format!("127.0.0.{n}").parse().unwrap())
            .collect();
        let mut o = options(4);
        o.processes = Some(2);
        let plans = plan_shards(&o, &ips, None, 20_000);
        assert_eq!((plans[0].source_offset, plans[1].source_offset), (0, 2));
    }

    #[test]
    fn processes_of_a_host_shard_split_its_port_slice() {
        let ports = PortRange {
            first: 42_178,
            last: 51_588,
        };
        let mut o = options(3_000);
        o.processes = Some(3);
        let plans = plan_shards(&o, &[], Some(ports), 20_000);
        let slices: Vec<String> = plans
            .iter()
            .map(|p| p.source_ports.unwrap().to_string())
            .collect();
        assert_eq!(slices, ["42178-45314", "45315-48451", "48452-51588"]);
        // Never more processes than ports.
        let tiny = PortRange {
            first: 50_000,
            last: 50_001,
        };
        assert_eq!(plan_shards(&o, &[], Some(tiny), 20_000).len(), 2);
    }
}
