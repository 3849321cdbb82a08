//! The stepped ramp: one `load --json` child per step (each holds its
//! connections until the ramp ends), the target sampled while it ramps and
//! twice once each step is open, and a stop at the first failure class,
//! the target's exit, memory that would not hold the next step, N, or
//! Ctrl-C. Used for the user's server, the echo floor and the selftest
//! alike.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use super::result::{FailureClass, Step, classify};
use crate::{
    analysis::CeilingInputs,
    api::Snapshot,
    loadgen::{
        child::{spawn_self, terminate},
        load::{
            greeting::{Greeting, escape},
            latency,
            source_ips::auto_source_ips,
        },
        protocol::{LoadEvent, Verdict, from_line},
    },
    model::report::Report,
    monitor::Sampler,
    system::{memory::pss_bytes, process::descendants, sysctl::read_sysctl_numbers},
};

/// After the first failure, the step goes on this long (so the target's
/// own signs of it reach the samples) before the ramp stops.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// At most this many samples wait for two fresh socket walks per step.
const SETTLE_SAMPLES_MAX: u32 = 30;

pub struct Plan {
    pub target: SocketAddr,
    pub connections: u64,
    pub steps: u64,
    pub rate: Option<u64>,
    pub source_ips: Option<Vec<IpAddr>>,
    pub greeting: Option<Greeting>,
    /// Bytes echoed once per connection (the echo floor), else 0.
    pub message_bytes: usize,
    pub connect_timeout: Duration,
    pub hold: Duration,
    pub deadline: tokio::time::Instant,
    /// `floor`, `ramp` or `selftest`, shown on the dashboard.
    pub phase: &'static str,
    pub server_pid: Option<u32>,
}

/// The live view of a ramp, in the API's `selftest` field (the dashboard
/// shows it as the ramp's progress).
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// `floor`, `ramp` or `selftest` (the plan's phase), then `held` or
    /// `stopped`, then `done`.
    pub phase: &'static str,
    pub step: u64,
    pub steps: u64,
    pub target: u64,
    pub established: u64,
    pub rate_per_second: u64,
    pub failures: BTreeMap<String, u64>,
    /// Each finished step with its cost per connection.
    pub costs: Vec<Step>,
}

/// Where samples and progress go.
pub struct Live<'a> {
    pub sampler: Option<&'a mut Sampler>,
    pub publish: &'a watch::Sender<Snapshot>,
    pub interval: Duration,
    pub samples: u64,
}

impl Live<'_> {
    /// Take a sample and publish it with `progress`; whether it walked the
    /// sockets afresh, and when the next one is due.
    fn sample(&mut self, progress: &Progress) -> anyhow::Result<(bool, tokio::time::Instant)> {
        let started = tokio::time::Instant::now();
        let Some(sampler) = self.sampler.as_deref_mut() else {
            return Ok((true, started + self.interval));
        };
        let walked = sampler.sample()?.scan_fresh;
        self.samples += 1;
        let report = sampler.report()?;
        self.publish.send_replace(Snapshot {
            report: Some(Arc::new(report)),
            daemon: Some(sampler.daemon_info(self.interval, self.samples)),
            selftest: Some(serde_json::to_value(progress)?),
        });
        Ok((
            walked,
            started + sampler.next_sample_in(self.interval, started.elapsed()),
        ))
    }

    fn target_alive(&self) -> bool {
        self.sampler.as_ref().is_none_or(|s| s.targets.any_alive())
    }

    /// The target's own memory and open fds now (from the last sample).
    fn memory_and_fds(&mut self) -> Option<(u64, u64)> {
        let sampler = self.sampler.as_deref_mut()?;
        let report = sampler.report().ok()?;
        Some((
            report.target.memory_bytes,
            report.cost_per_connection.open_fds,
        ))
    }
}

/// How a ramp ended.
pub struct Outcome {
    pub reached: u64,
    pub seconds: f64,
    /// The time the load processes spent opening connections (the steps'
    /// ramps, without the samples between them).
    pub ramping_seconds: f64,
    pub steps: Vec<Step>,
    /// Why it stopped short, with the load side's diagnosis when it gave one.
    pub stopped: Option<(FailureClass, Option<Verdict>)>,
    pub errnos: BTreeMap<String, u64>,
    pub latency_us: Vec<u64>,
    /// The final report, every connection still open (with a target pid).
    pub report: Option<Report>,
    /// The inputs of that report's ceiling (the selftest projects them
    /// onto the box).
    pub inputs: Option<CeilingInputs>,
    /// The load processes (steps and their shards) and their own memory
    /// (Pss_Anon + Pss_Shmem) per connection held, measured before release.
    pub load_processes: u64,
    pub load_user_bytes: Option<u64>,
}

/// A load child with its stdout lines.
struct Load {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Its latest counters.
    errnos: BTreeMap<String, u64>,
    latency_us: Vec<u64>,
}

/// How one step ended.
enum StepEnd {
    Ramped,
    Failed(FailureClass, Option<Verdict>),
}

/// Connections of step `k` (1-based) of `steps` towards `n`.
pub fn step_size(n: u64, steps: u64, k: u64) -> u64 {
    n * k / steps - n * (k - 1) / steps
}

/// Source IPs for step `k` on loopback, disjoint from the other steps' so
/// later steps do not search through earlier ones' ports.
/// A ramp whose connections fit the ports of 127.0.0.1 stays on it: some
/// servers accept only 127.0.0.1 as local (redis in protected mode answers
/// `-DENIED` to 127.0.0.2).
fn step_source_ips(n: u64, steps: u64, k: u64, ports: u64) -> String {
    if auto_source_ips(Ipv4Addr::LOCALHOST.into(), n, ports).len() <= 1 {
        return "127.0.0.1".to_owned();
    }
    let per_step = auto_source_ips(Ipv4Addr::LOCALHOST.into(), n.div_ceil(steps), ports)
        .len()
        .max(1) as u32;
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 0)) + 1 + (k as u32 - 1) * per_step;
    format!(
        "{}-{}",
        Ipv4Addr::from(base),
        Ipv4Addr::from(base + per_step - 1)
    )
}

fn load_args(plan: &Plan, size: u64, k: u64, ports: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "load",
        "--json",
        "--target",
        &plan.target.to_string(),
        "--connections",
        &size.to_string(),
        "--hold",
        "24h",
        "--interval",
        "1h",
        "--connect-timeout",
        &format!("{}ms", plan.connect_timeout.as_millis().max(1)),
        "--stall-timeout",
        "10s",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let mut add = |flag: &str, value: String| args.extend([flag.to_owned(), value]);
    if let Some(rate) = plan.rate {
        add("--rate", rate.to_string());
    }
    if let Some(pid) = plan.server_pid {
        add("--server-pid", pid.to_string());
    }
    if plan.message_bytes > 0 {
        add("--message-bytes", plan.message_bytes.to_string());
    }
    match &plan.greeting {
        Some(Greeting::Send { send, expect }) => {
            add("--send", escape(send));
            if !expect.is_empty() {
                add("--expect", escape(expect));
            }
        }
        Some(Greeting::Http { path }) => add("--http", path.clone()),
        None => {}
    }
    match &plan.source_ips {
        Some(ips) => add(
            "--source-ips",
            ips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        None if plan.target.ip().is_loopback() && plan.target.is_ipv4() => add(
            "--source-ips",
            step_source_ips(plan.connections, plan.steps, k, ports),
        ),
        None => {}
    }
    args
}

fn start_load(args: &[String]) -> anyhow::Result<Load> {
    let mut child = spawn_self(args, |_| {})?;
    let stdout = child.stdout.take().expect("piped");
    Ok(Load {
        child,
        lines: BufReader::new(stdout).lines(),
        errnos: BTreeMap::new(),
        latency_us: Vec::new(),
    })
}

/// The class most failures fell into (`Stalled` when none did).
fn dominant(errnos: &BTreeMap<String, u64>) -> FailureClass {
    classify(errnos)
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or(FailureClass::Stalled, |(class, _)| class)
}

/// Run the ramp of `plan`, then release every connection.
pub async fn ramp(plan: &Plan, live: &mut Live<'_>) -> anyhow::Result<Outcome> {
    let n = plan.connections;
    let steps = plan.steps.clamp(1, n.max(1));
    let ports = read_sysctl_numbers::<2>("net.ipv4.ip_local_port_range")
        .map_or(28_232, |[lo, hi]| hi.saturating_sub(lo) + 1);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut progress = Progress {
        phase: plan.phase,
        step: 0,
        steps,
        target: n,
        established: 0,
        rate_per_second: 0,
        failures: BTreeMap::new(),
        costs: Vec::new(),
    };
    // Before any connection: the baseline the per-step costs subtract, and
    // the zero point of the marginal-cost fit.
    let mut next_sample = tokio::time::Instant::now();
    for _ in 0..2 {
        tokio::time::sleep_until(next_sample).await;
        next_sample = live.sample(&progress)?.1;
    }
    let baseline = live.memory_and_fds();
    let started = Instant::now();
    let mut loads: Vec<Load> = Vec::new();
    let mut held = 0u64;
    let mut ramping_seconds = 0.0;
    let mut stopped = None;
    let mut steps_out: Vec<Step> = Vec::new();

    'steps: for k in 1..=steps {
        let size = step_size(n, steps, k);
        progress.step = k;
        loads.push(start_load(&load_args(plan, size, k, ports))?);
        let load = loads.last_mut().expect("just pushed");
        let mut open_now = 0u64;
        let mut first_failure: Option<Instant> = None;
        let end = loop {
            tokio::select! {
                line = load.lines.next_line() => {
                    let Ok(Some(line)) = line else {
                        break StepEnd::Failed(dominant(&load.errnos), None);
                    };
                    let event = match from_line::<LoadEvent>(&line) {
                        Ok(event) => event,
                        Err(err) => {
                            log::warn!("load: {err}");
                            continue;
                        }
                    };
                    let ramped = match event {
                        LoadEvent::Progress(p) => {
                            open_now = p.open;
                            progress.rate_per_second = p.rate_per_second;
                            load.errnos = p.failures;
                            None
                        }
                        LoadEvent::Ramped(r) => {
                            open_now = r.open;
                            load.errnos = r.failures;
                            load.latency_us = r.connect_latency_us;
                            ramping_seconds += r.elapsed_ms as f64 / 1000.0;
                            Some((r.reached, r.verdict))
                        }
                        // Only after the hold, which outlasts the ramp.
                        LoadEvent::Done(_) => None,
                    };
                    if !load.errnos.is_empty() && first_failure.is_none() {
                        first_failure = Some(Instant::now());
                    }
                    match ramped {
                        Some((true, _)) if load.errnos.is_empty() => break StepEnd::Ramped,
                        Some((_, verdict)) => break StepEnd::Failed(dominant(&load.errnos), verdict),
                        None => {}
                    }
                }
                _ = tokio::time::sleep_until(next_sample) => {
                    progress.established = held + open_now;
                    next_sample = live.sample(&progress)?.1;
                    if !live.target_alive() {
                        break StepEnd::Failed(FailureClass::TargetExited, None);
                    }
                    eprintln!(
                        "  {} step {k}/{steps}: {} of {} open, {}/s, failures {:?}",
                        plan.phase, progress.established, n, progress.rate_per_second, load.errnos
                    );
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if first_failure.is_some() => {}
                _ = sigint.recv() => break StepEnd::Failed(FailureClass::Interrupted, None),
                _ = sigterm.recv() => break StepEnd::Failed(FailureClass::Interrupted, None),
                _ = tokio::time::sleep_until(plan.deadline) => break StepEnd::Failed(FailureClass::Interrupted, None),
            }
            if first_failure.is_some_and(|at| at.elapsed() >= FAILURE_GRACE) {
                break StepEnd::Failed(dominant(&load.errnos), None);
            }
        };
        held += open_now;
        progress.established = held;
        progress.failures = sum_errnos(&loads);
        // Settle: two samples that walked the sockets at this count (a walk
        // of a million sockets spans a few samples).
        if live.sampler.is_some() && !matches!(end, StepEnd::Failed(FailureClass::Interrupted, _)) {
            let mut walked = 0;
            for _ in 0..SETTLE_SAMPLES_MAX {
                tokio::time::sleep_until(next_sample).await;
                let (fresh, next) = live.sample(&progress)?;
                next_sample = next;
                walked += u32::from(fresh);
                if walked == 2 || !live.target_alive() {
                    break;
                }
            }
        }
        let step = step_record(
            live,
            baseline,
            held,
            started.elapsed(),
            &loads.last().expect("pushed").errnos,
        );
        progress.costs.push(step.clone());
        steps_out.push(step);
        if let StepEnd::Failed(class, verdict) = end {
            let class = if live.target_alive() {
                class
            } else {
                FailureClass::TargetExited
            };
            stopped = Some((class, verdict));
            break 'steps;
        }
        if !live.target_alive() {
            stopped = Some((FailureClass::TargetExited, None));
            break 'steps;
        }
        // Would the box's memory hold the next step?
        if k < steps
            && let Some(sampler) = live.sampler.as_deref_mut()
            && let Some(ceiling) = sampler.report()?.ceiling
            && ceiling.limits.iter().any(|l| {
                matches!(l.name, "memory" | "cgroup_memory")
                    && l.max_connections
                        .is_some_and(|m| m < step_size(n, steps, k + 1))
            })
        {
            stopped = Some((FailureClass::MemoryPressure, None));
            break 'steps;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.phase = if stopped.is_some() { "stopped" } else { "held" };
    // The report with every connection still open: the ceiling and its
    // evidence as they stand at the stop.
    let (report, inputs) = match live.sampler.as_deref_mut() {
        Some(sampler) => {
            if sampler.targets.any_alive() {
                sampler.final_sample()?;
            }
            let report = sampler.report()?;
            let inputs = sampler.ceiling_inputs(&report);
            (Some(report), Some(inputs))
        }
        None => (None, None),
    };
    // The load side's own memory, every connection still open.
    let load_pids: Vec<u32> = loads
        .iter()
        .filter_map(|l| l.child.id())
        .flat_map(|pid| std::iter::once(pid).chain(descendants(pid).into_iter().map(|(c, _)| c)))
        .collect();
    let load_user: u64 = load_pids.iter().filter_map(|&p| pss_bytes(p).ok()).sum();
    if stopped.is_none() && !plan.hold.is_zero() {
        eprintln!(
            "c1m ramp: {} held: {held} connections open, releasing them in {}",
            plan.phase,
            humantime::format_duration(plan.hold)
        );
        tokio::time::sleep(plan.hold).await;
    }
    let errnos = sum_errnos(&loads);
    let mut latency_us = Vec::new();
    for load in &loads {
        latency::add(&mut latency_us, &load.latency_us);
    }
    // Release every connection.
    for load in &loads {
        terminate(&load.child);
    }
    for load in &mut loads {
        let _ = tokio::time::timeout(Duration::from_secs(30), load.child.wait()).await;
    }
    progress.phase = "done";
    let _ = live.sample(&progress);
    Ok(Outcome {
        reached: held,
        seconds,
        ramping_seconds,
        steps: steps_out,
        stopped,
        errnos,
        latency_us,
        report,
        inputs,
        load_processes: load_pids.len() as u64,
        load_user_bytes: (held > 0).then(|| load_user / held),
    })
}

fn sum_errnos(loads: &[Load]) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for load in loads {
        for (name, n) in &load.errnos {
            *sum.entry(name.clone()).or_insert(0) += n;
        }
    }
    sum
}

/// The step as measured now: the kernel cost from the report, and the
/// target's own memory and fds over the baseline, per connection.
fn step_record(
    live: &mut Live<'_>,
    baseline: Option<(u64, u64)>,
    held: u64,
    elapsed: Duration,
    errnos: &BTreeMap<String, u64>,
) -> Step {
    let report = live.sampler.as_deref_mut().and_then(|s| s.report().ok());
    let per =
        |now: u64, before: u64| (held > 0).then(|| now.saturating_sub(before) as f64 / held as f64);
    let (user_bytes, fds) = match (&report, baseline) {
        (Some(r), Some((memory, fds))) => (
            per(r.target.memory_bytes, memory).map(|b| b.round() as u64),
            per(r.cost_per_connection.open_fds, fds),
        ),
        _ => (None, None),
    };
    Step {
        connections: held,
        seconds: elapsed.as_secs_f64(),
        kernel_bytes: report.as_ref().map(|r| r.cost_per_connection.kernel_bytes),
        user_bytes,
        fds,
        failures: classify(errnos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_to_n() {
        let total: u64 = (1..=7).map(|k| step_size(400, 7, k)).sum();
        assert_eq!(total, 400);
    }

    #[test]
    fn step_source_ips_are_disjoint() {
        assert_eq!(step_source_ips(3000, 3, 3, 28_232), "127.0.0.1");
        assert_eq!(
            step_source_ips(1_000_000, 10, 2, 28_232),
            "127.0.0.16-127.0.0.30"
        );
    }

    #[test]
    fn the_greeting_goes_to_the_load_escaped() {
        let plan = Plan {
            target: "127.0.0.1:6379".parse().unwrap(),
            connections: 400,
            steps: 10,
            rate: None,
            source_ips: None,
            greeting: Some(Greeting::Send {
                send: b"PING\r\n".to_vec(),
                expect: b"+PONG".to_vec(),
            }),
            message_bytes: 0,
            connect_timeout: Duration::from_secs(5),
            hold: Duration::from_secs(1),
            deadline: tokio::time::Instant::now(),
            phase: "ramp",
            server_pid: Some(42),
        };
        let args = load_args(&plan, 40, 2, 28_232).join(" ");
        assert!(args.contains(r"--send PING\r\n --expect +PONG"), "{args}");
        assert!(args.contains("--server-pid 42"), "{args}");
        assert!(args.contains("--source-ips 127.0.0.1"), "{args}");
    }

    #[test]
    fn the_most_failures_name_the_class() {
        let errnos: BTreeMap<String, u64> = [
            ("UnexpectedEof".to_owned(), 9),
            ("ECONNRESET".to_owned(), 2),
        ]
        .into_iter()
        .collect();
        assert_eq!(dominant(&errnos), FailureClass::ClosedAfterAccept);
        assert_eq!(dominant(&BTreeMap::new()), FailureClass::Stalled);
    }
}
