//! `c1m-daemon selftest`: `ramp` with the bundled echo server as the
//! target, sized for N. The same engine ramps it (steps, stop classes,
//! live dashboard, JSON); then what only the selftest says: the box's
//! ceiling projected from the measured costs ("both ends local", "server
//! alone"), and whether the echo server and this box held them all.
//!
//! Its JSON is the ramp's ([`RampResult`]) with the selftest's own fields
//! added, so `ramp --baseline` and `diff` read it as a ramp.
//!
//! Exit codes: 0 reached N, 4 stopped short (a limit, Ctrl-C, the echo
//! server exiting).

use std::time::Duration;

use anyhow::Context as _;
use bytesize::ByteSize;
use serde::Serialize;
use tokio::sync::watch;

use super::{
    assemble, client_line,
    engine::{self, Live, Plan},
    environment, floor,
    result::{Ceiling, RampResult, Target, record},
    stop_lines,
};
use crate::{
    analysis::{CeilingInputs, analyze},
    api::{self, Snapshot},
    cli::SelftestArgs,
    exit::Exit,
    human::human_count,
    model::report::Report,
    monitor::Sampler,
    system::process::TargetProcess,
};

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

/// `selftest --json`: the ramp's JSON and what only the selftest adds.
#[derive(Debug, Serialize)]
pub struct SelftestResult {
    #[serde(flatten)]
    pub ramp: RampResult,
    /// Connections per second while the load opened them (the steps'
    /// ramps, without the samples between them).
    pub ramp_rate: f64,
    pub echo_workers: u64,
    pub load_processes: u64,
    /// Userspace bytes per connection of the load side (its kernel objects
    /// are the same kinds as the server's).
    pub load_user_bytes: Option<u64>,
    pub projections: Projections,
    /// The echo server's report at the stop, every connection still open
    /// (as `report --json`).
    pub report: Report,
}

/// The ceiling projected for this box from the costs measured, processes
/// added as needed.
#[derive(Debug, Serialize)]
pub struct Projections {
    /// Both ends local, as the ramp ran: two sockets and two files per
    /// connection.
    pub both_ends_local: Ceiling,
    /// The server alone, its clients elsewhere (the memory the load side
    /// held counted as free).
    pub server_alone: Ceiling,
}

pub fn run(args: &SelftestArgs) -> anyhow::Result<Exit> {
    let runtime = crate::runtime::current_thread()?;
    let result = runtime.block_on(selftest(args))?;
    println!("{}", result.ramp.verdict);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("(JSON written to {})", path.display());
    }
    Ok(if result.ramp.stop.is_none() {
        Exit::Ok
    } else {
        Exit::LimitHit
    })
}

async fn selftest(args: &SelftestArgs) -> anyhow::Result<SelftestResult> {
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let n = match args.connections {
        Some(n) => n.max(1),
        None => {
            let m = crate::system::meminfo::read_meminfo().context("reading /proc/meminfo")?;
            default_connections(
                m.mem_available.unwrap_or(m.mem_free),
                m.s_reclaimable.unwrap_or(0),
            )
        }
    };
    let deadline = tokio::time::Instant::now() + args.max_duration;
    let listener = api::bind(args.listen).await?;
    let access = api::access::Access::new(listener.local_addr()?, args.token.clone())?;
    let api_addr = listener.local_addr()?;

    let echo = floor::start_echo(n).await?;
    let ready = echo.ready.clone();
    let echo_process = TargetProcess::resolve(ready.pid)?;
    let mut sampler = Sampler::start(vec![echo_process.clone()], true, None)?;
    // Both ends on this box: the load side's files count against its
    // limits too.
    sampler.files_per_connection = 2.0;
    let (publish, latest) = watch::channel(Snapshot::default());
    api::serve_in_background(listener, latest, access)?;
    eprintln!(
        "c1m selftest: ramping the echo server (pid {}, {} worker(s), {}) to {} connections in {} \
         steps; dashboard at http://{api_addr}/; Ctrl-C stops",
        ready.pid,
        ready.workers,
        ready.addr,
        human_count(n),
        args.steps.min(n)
    );
    let environment = environment::read_environment(Some(ready.pid));
    let plan = Plan {
        target: ready.addr,
        connections: n,
        steps: args.steps,
        rate: args.rate,
        source_ips: None,
        greeting: None,
        message_bytes: 1,
        connect_timeout: Duration::from_secs(5),
        hold: Duration::ZERO,
        deadline,
        phase: "selftest",
        server_pid: Some(ready.pid),
    };
    let mut live = Live {
        sampler: Some(&mut sampler),
        publish: &publish,
        interval: Duration::from_secs(1),
        samples: 0,
    };
    let outcome = engine::ramp(&plan, &mut live).await;
    drop(sampler);
    floor::stop_echo(echo).await;
    let outcome = outcome?;

    let target = Target {
        addr: ready.addr.to_string(),
        pid: Some(ready.pid),
        name: Some(echo_process.comm),
    };
    let ramp = assemble(
        &outcome,
        started_at,
        target,
        "echoes one byte once".to_owned(),
        n,
        None,
        environment,
    )?;
    let mut result = finish(ramp, &outcome, ready.workers)?;
    result.ramp.verdict = verdict_text(&result);
    Ok(result)
}

/// The selftest's record from the ramp's: the projections and the
/// load side's figures (the verdict left to [`verdict_text`]).
fn finish(
    ramp: RampResult,
    outcome: &engine::Outcome,
    echo_workers: u64,
) -> anyhow::Result<SelftestResult> {
    let report = outcome
        .report
        .clone()
        .context("the selftest's ramp has no report")?;
    let inputs = outcome
        .inputs
        .as_ref()
        .context("the selftest's ramp has no ceiling inputs")?;
    let (both, alone) = box_projections(inputs, outcome.reached, outcome.load_user_bytes);
    Ok(SelftestResult {
        ramp_rate: outcome.reached as f64 / outcome.ramping_seconds.max(1e-3),
        echo_workers,
        load_processes: outcome.load_processes,
        load_user_bytes: outcome.load_user_bytes,
        projections: Projections {
            both_ends_local: record(&analyze(&both))?,
            server_alone: record(&analyze(&alone))?,
        },
        report,
        ramp,
    })
}

/// The verdict as printed and kept in the JSON.
fn verdict_text(r: &SelftestResult) -> String {
    let ramp = &r.ramp;
    let mut lines = match &ramp.stop {
        None => vec![format!(
            "Reached {} connections in {:.0} s (ramping at {:.0}/s): the echo server and this box \
             held them all.",
            human_count(ramp.reached),
            ramp.seconds,
            r.ramp_rate
        )],
        Some(_) => stop_lines(ramp),
    };
    if let Some(c) = &ramp.cost_per_connection {
        lines.push(format!(
            "Echo server, per connection: kernel {}, userspace {}, {:.2} fds. Load side: \
             userspace {} (kernel: the same socket objects).",
            ByteSize(c.kernel_bytes),
            ByteSize(c.user_per_connection().unwrap_or(0.0).round() as u64),
            c.fds_per_connection().unwrap_or(0.0),
            r.load_user_bytes
                .map_or("unknown".into(), |b| ByteSize(b).to_string())
        ));
    }
    lines.extend(client_line(ramp));
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
        projected(&r.projections.both_ends_local),
        projected(&r.projections.server_alone)
    ));
    if let Some(ceiling) = &ramp.ceiling {
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
    fn the_selftest_json_reads_back_as_a_ramp_for_baseline_and_diff() {
        let outcome = engine::Outcome {
            reached: 400,
            seconds: 5.0,
            ramping_seconds: 2.0,
            steps: vec![],
            stopped: None,
            errnos: Default::default(),
            latency_us: vec![],
            report: Some(crate::model::report::tests::sample_report()),
            inputs: Some(CeilingInputs {
                connections: 400,
                kernel_bytes: Some(3_000.0),
                user_bytes: Some(1_000.0),
                mem_available: Some(1 << 30),
                ..Default::default()
            }),
            load_processes: 3,
            load_user_bytes: Some(900),
        };
        let target = Target {
            addr: "127.0.0.1:7007".into(),
            pid: Some(42),
            name: Some("c1m-daemon".into()),
        };
        let ramp = assemble(
            &outcome,
            "2025-01-01T00:00:00Z".into(),
            target,
            "echoes one byte once".into(),
            400,
            None,
            Default::default(),
        )
        .unwrap();
        let mut result = finish(ramp, &outcome, 1).unwrap();
        result.ramp.verdict = verdict_text(&result);
        assert!(
            result
                .ramp
                .verdict
                .contains("the echo server and this box held them all"),
            "{}",
            result.ramp.verdict
        );
        assert_eq!(result.ramp_rate, 200.0);

        let path = std::env::temp_dir().join(format!("c1m-selftest-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let baseline = floor::read_baseline(&path);
        let _ = std::fs::remove_file(&path);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "projections",
            "load_user_bytes",
            "report",
            "cost_per_connection",
        ] {
            assert!(!json[field].is_null(), "{field}: {json:#}");
        }
        let floor = baseline.unwrap();
        let cost = result.ramp.cost_per_connection.as_ref().unwrap();
        assert_eq!(floor.kernel_bytes, Some(cost.kernel_bytes));
        assert_eq!(floor.connections, 400);
        // `diff` reads it as the ramp it is.
        let read: RampResult = serde_json::from_str(&text).unwrap();
        assert_eq!(read, result.ramp);
        assert!(super::super::diff::changes(&read, &result.ramp).is_empty());
    }
}
