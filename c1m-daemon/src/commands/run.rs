//! `c1m-daemon run --pid <PID>`: attach, follow the target's sockets, print
//! a line per interval and serve the latest report over HTTP, until Ctrl-C,
//! `--duration`, or the target's exit. Without `--pid`: the host overview
//! (`top.rs`).

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::io::unix::AsyncFd;

use crate::{
    api::{self, Snapshot},
    cli::RunArgs,
    ebpf::probes::KernelLogger,
    exit::Exit,
    loadgen::protocol::{ChildrenFollowed, RunAttached, RunEvent, RunSample},
    model::{report::Report, transitions::TransitionCounts},
    monitor::Sampler,
    runtime::Shutdown,
    system::{cgroup_target::CgroupSpec, process::TargetProcess},
};

use super::target::resolve_target;

pub fn run(args: &RunArgs) -> anyhow::Result<Exit> {
    if args.pids.is_empty() && args.cgroup.cgroup.is_none() && args.cgroup.container.is_none() {
        return super::top::serve(args);
    }
    let (named, cgroup) = resolve_target(&args.pids, &args.cgroup)?;
    let runtime = crate::runtime::current_thread()?;
    runtime.block_on(watch(args, named, cgroup))
}

async fn watch(
    args: &RunArgs,
    named: Vec<TargetProcess>,
    cgroup: Option<CgroupSpec>,
) -> anyhow::Result<Exit> {
    // Bind first: a busy port fails before anything is attached.
    let listener = api::bind(args.listen).await?;
    let access = api::access::Access::new(listener.local_addr()?, args.token.clone())?;
    let api_addr = listener.local_addr()?;
    let mut sampler = Sampler::start_on(named, cgroup, !args.no_children, args.attach)?;
    if let Some(logger) = sampler.take_kernel_logger() {
        forward_kernel_logs(logger);
    }
    let (publish, latest) = tokio::sync::watch::channel(Snapshot::default());
    api::serve_in_background(listener, latest, access)?;

    if args.json {
        println!("{}", attached_event(&sampler, api_addr).to_line());
    } else {
        println!(
            "c1m: watching pid {} through {}; Ctrl-C to stop",
            sampler.describe_targets(),
            sampler.attach_mode()
        );
        match sampler.children() {
            Ok(mode) => println!("child processes followed through {mode}"),
            Err(why) => println!("child processes NOT followed: {why}"),
        }
        println!("report served at http://{api_addr}/api/v1/report");
        println!(
            "(transition counts cover sockets the target opened or accepted since c1m attached)"
        );
    }

    // Samples keep the interval; the socket walks (about a second per
    // million sockets) run less often when slow, so c1m spends at most a
    // fifth of a core on them.
    let mut next_sample = tokio::time::Instant::now() + args.interval;
    let mut shutdown = Shutdown::install()?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut previous = TransitionCounts::default();
    let mut samples_taken = 0u64;

    loop {
        // `biased`: when a tick and the deadline are both due, take the tick
        // and stop after printing it, rather than printing twice.
        let stop = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(next_sample) => {
                deadline.is_some_and(|at| tokio::time::Instant::now() >= at)
            }
            _ = shutdown.recv() => true,
            _ = sleep_until(deadline) => true,
        };
        let sample_started = tokio::time::Instant::now();
        let totals = sampler.sample()?.transitions.clone();
        samples_taken += 1;
        let report = sampler.report()?;
        next_sample =
            sample_started + sampler.next_sample_in(args.interval, sample_started.elapsed());
        print_sample(args.json, sampler.elapsed(), &report, &totals, &previous);
        publish.send_replace(Snapshot {
            report: Some(Arc::new(report)),
            daemon: Some(sampler.daemon_info(args.interval, samples_taken)),
            selftest: None,
        });
        previous = totals;
        if stop {
            return Ok(Exit::Ok);
        }
        if !sampler.any_alive() {
            eprintln!(
                "c1m-daemon: target pid {} exited after {:.0?}; nothing left to watch. \
                 Restart the server and run c1m again with its new pid.",
                sampler.describe_targets(),
                sampler.elapsed()
            );
            return Ok(Exit::TargetGone);
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
    report: &Report,
    totals: &TransitionCounts,
    previous: &TransitionCounts,
) {
    let delta = totals.since(previous);
    let c = &report.connections;
    let established = c.by_state.get("ESTABLISHED").copied().unwrap_or(0);
    if json {
        let sample = RunEvent::Sample(RunSample {
            elapsed_ms: elapsed.as_millis() as u64,
            pids: report.target.pids.clone(),
            connections: c.current,
            established,
            by_state: words(&c.by_state),
            established_total: totals.established_total(),
            transitions: delta.named(),
            transitions_total: totals.named(),
            drops: words(&report.drops),
            ceiling: report.ceiling.as_ref().map(|c| c.verdict.clone()),
        });
        println!("{}", sample.to_line());
        return;
    }
    let changes: Vec<String> = delta
        .named()
        .into_iter()
        .map(|(name, n)| format!("{name} +{n}"))
        .collect();
    let dropped: u64 = report.drops.values().sum();
    let ceiling = report.ceiling.as_ref().map_or("", |c| c.verdict.as_str());
    println!(
        "{:>7.1}s  connections {:<8} ESTABLISHED {:<8} {}{}\n          {ceiling}",
        elapsed.as_secs_f64(),
        c.current,
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

/// The `attached` line of `run --json`.
fn attached_event(sampler: &Sampler, api_addr: SocketAddr) -> RunEvent {
    let attach_mode = serde_json::to_value(sampler.attach_mode())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    RunEvent::Attached(RunAttached {
        attach_mode,
        children: match sampler.children() {
            Ok(mode) => ChildrenFollowed {
                followed: true,
                attach_mode: Some((*mode).to_owned()),
                reason: None,
            },
            Err(why) => ChildrenFollowed {
                followed: false,
                attach_mode: None,
                reason: Some(why.clone()),
            },
        },
        pids: sampler.pids(),
        api: format!("http://{api_addr}/api/v1/report"),
    })
}

fn words(counts: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
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
