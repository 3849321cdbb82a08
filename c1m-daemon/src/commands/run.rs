//! `c1m-daemon run --pid <PID>`: attach, follow the target's sockets, print
//! a line per interval until Ctrl-C, `--duration`, or the target's exit.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use super::EXIT_TARGET_GONE;
use crate::{
    cli::RunArgs,
    ebpf::probes::{KernelLogger, Probes},
    model::transitions::TransitionCounts,
    system::process::TargetProcess,
    target::TargetSet,
};

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let targets = TargetProcess::resolve_all(&args.pids)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(args, targets))
}

async fn watch(args: &RunArgs, named: Vec<TargetProcess>) -> anyhow::Result<ExitCode> {
    let mut probes = Probes::attach(args.attach, !args.no_children)?;
    let mut targets = TargetSet::start(named, !args.no_children, &mut probes)?;
    if let Some(logger) = probes.take_logger() {
        forward_kernel_logs(logger);
    }

    let children = match &probes.children {
        Ok(mode) => json!({"followed": true, "attach_mode": mode}),
        Err(why) => json!({"followed": false, "reason": why}),
    };
    if args.json {
        println!(
            "{}",
            json!({"event": "attached", "attach_mode": probes.attach_mode,
                   "children": children, "pids": targets.pids()})
        );
    } else {
        println!(
            "c1m: watching pid {} through {}; Ctrl-C to stop",
            targets.describe_named(),
            probes.attach_mode
        );
        match &probes.children {
            Ok(mode) => println!("child processes followed through {mode}"),
            Err(why) => println!("child processes NOT followed: {why}"),
        }
        println!("(counts cover sockets the target opened or accepted since c1m attached)");
    }

    let started = Instant::now();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut previous = TransitionCounts::default();

    loop {
        // `biased`: when a tick and the deadline are both due, take the tick
        // and stop after printing it, rather than printing twice.
        let stop = tokio::select! {
            biased;
            _ = ticker.tick() => deadline.is_some_and(|at| tokio::time::Instant::now() >= at),
            _ = sigint.recv() => true,
            _ = sigterm.recv() => true,
            _ = sleep_until(deadline) => true,
        };
        targets.refresh(&mut probes)?;
        let totals = probes.read_transitions()?;
        let drops = probes.read_drops()?;
        let pids = targets.pids();
        print_sample(
            args.json,
            started.elapsed(),
            &pids,
            &totals,
            &previous,
            &drops,
        );
        previous = totals;
        if stop {
            return Ok(ExitCode::SUCCESS);
        }
        if !targets.any_alive() {
            eprintln!(
                "c1m-daemon: target pid {} exited after {:.0?}; nothing left to watch. \
                 Restart the server and run c1m again with its new pid.",
                targets.describe_named(),
                started.elapsed()
            );
            return Ok(ExitCode::from(EXIT_TARGET_GONE));
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn print_sample(
    json: bool,
    elapsed: Duration,
    pids: &[u32],
    totals: &TransitionCounts,
    previous: &TransitionCounts,
    drops: &BTreeMap<&'static str, u64>,
) {
    let delta = totals.since(previous);
    let by_state = totals.current_by_state();
    let established = by_state.get("ESTABLISHED").copied().unwrap_or(0);
    if json {
        println!(
            "{}",
            json!({
                "event": "sample",
                "elapsed_ms": elapsed.as_millis() as u64,
                "pids": pids,
                "established": established,
                "by_state": by_state,
                "established_total": totals.established_total(),
                "transitions": delta.named(),
                "transitions_total": totals.named(),
                "drops": drops,
            })
        );
        return;
    }
    let changes: Vec<String> = delta
        .named()
        .into_iter()
        .map(|(name, n)| format!("{name} +{n}"))
        .collect();
    let dropped: u64 = drops.values().sum();
    println!(
        "{:>7.1}s  ESTABLISHED {:<8} {}{}",
        elapsed.as_secs_f64(),
        established,
        if changes.is_empty() {
            "no transitions".to_owned()
        } else {
            changes.join(", ")
        },
        if dropped > 0 {
            format!("  DROPPED {dropped} (see --json)")
        } else {
            String::new()
        }
    );
}

/// Kernel-side messages (first loss per CPU) go to the daemon's log.
fn forward_kernel_logs(logger: KernelLogger) {
    // SAFETY: the fd is the logger's ring buffer map, owned by the logger
    // and open for as long as the AsyncFd (which owns the logger) lives.
    let Ok(mut logger) = (unsafe { AsyncFd::register(logger) }) else {
        log::warn!("cannot poll kernel-side log messages");
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
