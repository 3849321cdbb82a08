//! `c1m-daemon selftest`: the bundled echo server as the target, the load
//! generator ramping it in steps, c1m's probes sampling it at each step,
//! and a verdict: how far this box went, what stopped it, what one
//! connection costs, and the ceiling projected for the box.
//!
//! Every process it starts (echo workers, load shards) dies with it: they
//! are its children with PR_SET_PDEATHSIG, are signalled by pid on stop,
//! and are killed when their handles drop.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
    sync::watch,
};

use crate::{
    analysis::{CeilingInputs, analyze},
    api::{self, Snapshot},
    exit::Exit,
    loadgen::{
        child::{spawn_self, terminate},
        load::source_ips::auto_source_ips,
        protocol::{EchoEvent, EchoReady, LoadEvent, Phase, Verdict, from_line},
    },
    model::{ceiling::Ceiling, report::Report},
    monitor::Sampler,
    runtime::Shutdown,
    system::{
        memory::pss_bytes, process::TargetProcess, process::descendants, sysctl::ephemeral_ports,
    },
};

pub struct SelftestOptions {
    pub connections: Option<u64>,
    pub rate: Option<u64>,
    pub steps: u64,
    pub json_path: Option<PathBuf>,
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub max_duration: Duration,
    pub interval: Duration,
}

/// What one connection is budgeted at when choosing the default N, for
/// both ends on this box: ~3.7 KiB of kernel objects and ~1.2 KiB of
/// userspace per end, plus slack.
const BUDGET_PER_CONNECTION: u64 = 12 * 1024;

/// A default N this box can plausibly reach: 70% of the memory budget at
/// the budgeted cost, rounded down to 10,000, between 1,000 and 4,000,000.
pub fn default_connections(mem_available: u64, reclaimable_slab: u64) -> u64 {
    let budget = mem_available.saturating_sub(reclaimable_slab) as f64 * 0.7;
    let n = (budget / BUDGET_PER_CONNECTION as f64) as u64 / 10_000 * 10_000;
    n.clamp(1_000, 4_000_000)
}

/// Connections of step `k` (1-based) of `steps` towards `n`.
pub fn step_size(n: u64, steps: u64, k: u64) -> u64 {
    n * k / steps - n * (k - 1) / steps
}

/// Source IPs for each step, disjoint, so later steps do not compete with
/// earlier ones for ports: `127.0.0.a-127.0.0.b`.
fn step_source_ips(n: u64, steps: u64, k: u64, ports: u64) -> String {
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

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub step: u64,
    pub steps: u64,
    pub target: u64,
    pub established: u64,
    pub rate_per_second: u64,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub requested: u64,
    pub reached: u64,
    pub complete: bool,
    pub seconds: f64,
    pub ramp_rate: f64,
    /// Why the ramp stopped short, from the load side's diagnosis.
    pub stopped_by: Option<Verdict>,
    pub interrupted: bool,
    pub echo_pid: u32,
    pub echo_workers: u64,
    pub load_processes: u64,
    pub server_cost: Value,
    /// Userspace bytes per connection of the load side (its kernel objects
    /// are the same kinds as the server's).
    pub load_user_bytes: Option<u64>,
    /// Ceiling of the echo server as it ran (its processes' limits).
    pub server_ceiling: Option<Ceiling>,
    /// Projected for this box, processes added as needed: both ends local.
    pub box_ceiling_both_ends: Ceiling,
    /// ... and the server alone (clients elsewhere).
    pub box_ceiling_server_only: Ceiling,
    pub verdict: String,
    pub report: Report,
}

pub fn run(options: SelftestOptions) -> anyhow::Result<Exit> {
    let runtime = crate::runtime::current_thread()?;
    let outcome = runtime.block_on(selftest(&options))?;
    println!("{}", outcome.verdict);
    if let Some(path) = &options.json_path {
        let text = serde_json::to_string_pretty(&outcome)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("(written to {})", path.display());
    }
    Ok(if outcome.complete {
        Exit::Ok
    } else {
        Exit::LimitHit
    })
}

/// A child process of the selftest with its stdout lines.
struct Started {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn start(args: &[String]) -> anyhow::Result<Started> {
    let mut child = spawn_self(args, |_| {})?;
    let stdout = child.stdout.take().expect("piped");
    Ok(Started {
        child,
        lines: BufReader::new(stdout).lines(),
    })
}

async fn selftest(options: &SelftestOptions) -> anyhow::Result<Outcome> {
    let n = match options.connections {
        Some(n) => n,
        None => {
            let m = crate::system::meminfo::read_meminfo().context("reading /proc/meminfo")?;
            default_connections(
                m.mem_available.unwrap_or(m.mem_free),
                m.s_reclaimable.unwrap_or(0),
            )
        }
    };
    let steps = options.steps.clamp(1, n);
    let listener = api::bind(options.listen).await?;
    let access = api::access::Access::new(listener.local_addr()?, options.token.clone())?;
    let api_addr = listener.local_addr()?;

    // The echo server, planned for N.
    let mut echo = start(&[
        "echo".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--connections".into(),
        n.to_string(),
        "--json".into(),
    ])?;
    let line = tokio::time::timeout(Duration::from_secs(30), echo.lines.next_line())
        .await
        .context("the echo server did not start within 30 s")??
        .context("the echo server exited at start")?;
    let EchoEvent::Listening(EchoReady {
        addr,
        pid,
        workers: echo_workers,
        ..
    }) = from_line(&line)?
    else {
        bail!("unexpected first line from the echo server: {line:?}");
    };

    let mut sampler = Sampler::start(vec![TargetProcess::resolve(pid)?], true, None)?;
    sampler.files_per_connection = 2.0;
    let (publish, latest) = watch::channel(Snapshot::default());
    api::serve_in_background(listener, latest, access)?;
    eprintln!(
        "c1m selftest: ramping the echo server (pid {pid}, {echo_workers} worker(s), {addr}) to {} \
         connections in {steps} steps; dashboard at http://{api_addr}/; Ctrl-C stops",
        crate::human::human_count(n)
    );

    let ports = ephemeral_ports();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.max_duration;
    let mut shutdown = Shutdown::install()?;
    // Sampling stretches its interval when a sample is slow (about a second
    // per million sockets), so it never takes more than a fifth of a core.
    let mut next_sample = tokio::time::Instant::now();
    let mut loads: Vec<Started> = Vec::new();
    let mut held = 0u64;
    let mut ramp_seconds = 0.0;
    let mut stopped_by = None;
    let mut interrupted = false;
    let mut progress = Progress {
        phase: Phase::Ramp,
        step: 0,
        steps,
        target: n,
        established: 0,
        rate_per_second: 0,
        failures: Default::default(),
    };
    let interval = options.interval;
    let mut samples_taken = 0u64;
    let mut publish_report = |sampler: &mut Sampler,
                              progress: &Progress,
                              next_sample: &mut tokio::time::Instant|
     -> anyhow::Result<bool> {
        let started = tokio::time::Instant::now();
        let walked = sampler.sample()?.scan_fresh;
        samples_taken += 1;
        let report = sampler.report()?;
        publish.send_replace(Snapshot {
            report: Some(Arc::new(report)),
            daemon: Some(sampler.daemon_info(interval, samples_taken)),
            selftest: Some(serde_json::to_value(progress)?),
        });
        *next_sample = started + sampler.next_sample_in(interval, started.elapsed());
        Ok(walked)
    };

    const SETTLE_SAMPLES_MAX: u32 = 30;
    'steps: for k in 1..=steps {
        let size = step_size(n, steps, k);
        progress.step = k;
        let mut args: Vec<String> = [
            "load",
            "--json",
            "--target",
            &addr.to_string(),
            "--connections",
            &size.to_string(),
            "--message-bytes",
            "1",
            "--interval",
            "1h",
            "--hold",
            "24h",
            "--stall-timeout",
            "10s",
            "--server-pid",
            &pid.to_string(),
            "--source-ips",
            &step_source_ips(n, steps, k, ports),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if let Some(rate) = options.rate {
            args.extend(["--rate".to_owned(), rate.to_string()]);
        }
        loads.push(start(&args)?);
        let load = loads.last_mut().expect("just pushed");
        loop {
            tokio::select! {
                line = load.lines.next_line() => {
                    let Ok(Some(line)) = line else {
                        stopped_by = None;
                        break 'steps;
                    };
                    match from_line::<LoadEvent>(&line) {
                        Ok(LoadEvent::Progress(p)) => {
                            progress.established = held + p.open;
                            progress.rate_per_second = p.rate_per_second;
                            progress.failures = p.failures;
                        }
                        Ok(LoadEvent::Ramped(ramped)) => {
                            held += ramped.open;
                            ramp_seconds += ramped.elapsed_ms as f64 / 1000.0;
                            progress.established = held;
                            progress.failures = ramped.failures;
                            if !ramped.reached {
                                stopped_by = ramped.verdict;
                                break 'steps;
                            }
                            break;
                        }
                        Ok(LoadEvent::Done(_)) => {}
                        Err(err) => log::warn!("load: {err}"),
                    }
                }
                _ = tokio::time::sleep_until(next_sample) => {
                    publish_report(&mut sampler, &progress, &mut next_sample)?;
                    eprintln!(
                        "  step {k}/{steps}: {} of {} open, {}/s, failures {:?}",
                        progress.established, n, progress.rate_per_second, progress.failures
                    );
                }
                _ = shutdown.recv() => { interrupted = true; break 'steps; }
                _ = tokio::time::sleep_until(deadline) => { interrupted = true; break 'steps; }
            }
        }
        // Settle: two samples at this step that walked the sockets, for the
        // marginal-cost fit (at a million sockets a walk spans a few
        // samples; the bound keeps a stuck walker from holding the ramp).
        let mut walked = 0;
        for _ in 0..SETTLE_SAMPLES_MAX {
            tokio::time::sleep_until(next_sample).await;
            walked += u32::from(publish_report(&mut sampler, &progress, &mut next_sample)?);
            if walked == 2 {
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.phase = Phase::Done;
    publish_report(&mut sampler, &progress, &mut next_sample)?;
    sampler.final_sample()?;
    let report = sampler.report()?;

    // The load side's own memory, measured before it lets go.
    let load_pids: Vec<u32> = loads
        .iter()
        .filter_map(|l| l.child.id())
        .flat_map(|pid| std::iter::once(pid).chain(descendants(pid).into_iter().map(|(c, _)| c)))
        .collect();
    let load_user: u64 = load_pids.iter().filter_map(|&p| pss_bytes(p).ok()).sum();
    let load_user_bytes = (held > 0).then(|| load_user / held);
    // The limits as they stand with every connection still open.
    let inputs = sampler.ceiling_inputs(&report);

    for load in &loads {
        terminate(&load.child);
    }
    for load in &mut loads {
        let _ = tokio::time::timeout(Duration::from_secs(30), load.child.wait()).await;
    }
    terminate(&echo.child);
    let _ = tokio::time::timeout(Duration::from_secs(30), echo.child.wait()).await;

    let (both, server_only) = box_projections(&inputs, held, load_user_bytes);
    let box_both = analyze(&both);
    let box_server = analyze(&server_only);
    let complete = held >= n && !interrupted;
    let verdict = verdict_text(
        n,
        held,
        seconds,
        ramp_seconds,
        interrupted,
        stopped_by.as_ref(),
        &report,
        load_user_bytes,
        &box_both,
        &box_server,
    );
    Ok(Outcome {
        requested: n,
        reached: held,
        complete,
        seconds,
        ramp_rate: held as f64 / ramp_seconds.max(1e-3),
        stopped_by,
        interrupted,
        echo_pid: pid,
        echo_workers,
        load_processes: load_pids.len() as u64,
        server_cost: serde_json::to_value(&report.cost_per_connection)?,
        load_user_bytes,
        server_ceiling: report.ceiling.clone(),
        box_ceiling_both_ends: box_both,
        box_ceiling_server_only: box_server,
        verdict,
        report,
    })
}

#[allow(clippy::too_many_arguments)]
fn verdict_text(
    n: u64,
    held: u64,
    seconds: f64,
    ramp_seconds: f64,
    interrupted: bool,
    stopped_by: Option<&Verdict>,
    report: &Report,
    load_user_bytes: Option<u64>,
    both: &Ceiling,
    server: &Ceiling,
) -> String {
    use crate::human::human_count;
    use bytesize::ByteSize;
    let mut lines = Vec::new();
    let rate = held as f64 / ramp_seconds.max(1e-3);
    lines.push(if held >= n && !interrupted {
        format!(
            "Reached {} connections in {seconds:.0} s (ramping at {rate:.0}/s): the echo server and this box held them all.",
            human_count(n)
        )
    } else if let Some(v) = stopped_by {
        format!(
            "Stopped at {} of {} connections after {seconds:.0} s: {} on the {} ({}): {}.",
            human_count(held),
            human_count(n),
            v.limit,
            v.side,
            v.errno.as_deref().unwrap_or("no errno"),
            v.explanation
        )
    } else {
        format!(
            "Stopped at {} of {} connections after {seconds:.0} s ({}).",
            human_count(held),
            human_count(n),
            if interrupted { "interrupted or out of time" } else { "the load ended" }
        )
    });
    let c = &report.cost_per_connection;
    lines.push(format!(
        "Echo server, per connection: kernel {}, userspace {}, {:.2} fds. Load side: userspace {} (kernel: the same socket objects).",
        ByteSize(c.kernel_bytes),
        ByteSize(c.user_marginal_bytes.unwrap_or(c.user_bytes.unwrap_or(0) as f64).max(0.0) as u64),
        c.fds_marginal.or(c.fds).unwrap_or(0.0),
        load_user_bytes.map_or("unknown".into(), |b| ByteSize(b).to_string())
    ));
    // The count each projection allows: its tightest counted limit (a rate
    // limit being hit, like TIME_WAIT overflow, does not cap a count).
    let projected = |c: &Ceiling| {
        c.limits
            .iter()
            .find_map(|l| {
                l.max_connections
                    .map(|n| format!("{} ({})", human_count(n), l.name))
            })
            .unwrap_or_else(|| "unknown".into())
    };
    lines.push(format!(
        "Projected for this box: {} with both ends local, {} for the server alone.",
        projected(both),
        projected(server)
    ));
    if let Some(ceiling) = &report.ceiling {
        lines.push(format!("Echo server as configured: {}", ceiling.verdict));
    }
    lines.join("\n")
}

/// The limits for this box from the costs measured with `held`
/// connections open: (both ends local, as the ramp ran: two sockets and two
/// files per connection; the server alone, as if its clients were elsewhere).
fn box_projections(
    measured: &CeilingInputs,
    held: u64,
    load_user_bytes: Option<u64>,
) -> (CeilingInputs, CeilingInputs) {
    let mut server_only = measured.clone();
    server_only.processes.clear();
    server_only.files_per_connection = 1.0;
    let mut both = server_only.clone();
    // The server alone would not share the box with the load side: the
    // memory its sockets and processes held (measured while all were open)
    // would be free too.
    if let (Some(available), Some(kernel)) = (server_only.mem_available, server_only.kernel_bytes) {
        let load_side = held as f64 * (kernel + load_user_bytes.unwrap_or(0) as f64);
        server_only.mem_available = Some(available + load_side as u64);
    }
    both.files_per_connection = 2.0;
    if let (Some(kernel), Some(user)) = (both.kernel_bytes, both.user_bytes) {
        both.kernel_bytes = Some(kernel * 2.0);
        both.user_bytes = Some(user + load_user_bytes.unwrap_or(0) as f64);
    }
    (both, server_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_alone_gets_the_load_sides_memory_back() {
        let measured = CeilingInputs {
            connections: 1_000,
            kernel_bytes: Some(3_000.0),
            user_bytes: Some(1_000.0),
            mem_available: Some(10_000_000),
            ..Default::default()
        };
        let (both, alone) = box_projections(&measured, 1_000, Some(500));
        assert_eq!(alone.mem_available, Some(10_000_000 + 1_000 * 3_500));
        assert_eq!(
            (alone.kernel_bytes, alone.user_bytes),
            (Some(3_000.0), Some(1_000.0))
        );
        assert_eq!(alone.files_per_connection, 1.0);
        assert_eq!(both.mem_available, Some(10_000_000));
        assert_eq!(
            (both.kernel_bytes, both.user_bytes),
            (Some(6_000.0), Some(1_500.0))
        );
        assert_eq!(both.files_per_connection, 2.0);
    }

    #[test]
    fn default_n_follows_memory() {
        // 24 GiB: well over a million.
        let n = default_connections(24 << 30, 0);
        assert!((1_000_000..2_000_000).contains(&n), "{n}");
        assert_eq!(n % 10_000, 0);
        assert_eq!(default_connections(0, 0), 1_000);
        assert_eq!(default_connections(1 << 50, 0), 4_000_000);
    }

    #[test]
    fn steps_add_up_to_n() {
        let total: u64 = (1..=7).map(|k| step_size(1000, 7, k)).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn step_source_ips_are_disjoint_ranges() {
        assert_eq!(
            step_source_ips(1_000_000, 10, 1, 28_232),
            "127.0.0.1-127.0.0.15"
        );
        assert_eq!(
            step_source_ips(1_000_000, 10, 2, 28_232),
            "127.0.0.16-127.0.0.30"
        );
        assert_eq!(step_source_ips(3000, 3, 3, 28_232), "127.0.0.3-127.0.0.3");
    }
}
