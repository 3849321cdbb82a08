//! `c1m-daemon report --pid <PID>`: sample the target for a while, then
//! print one report of its connections and what each one costs.

use std::{process::ExitCode, time::Instant};

use anyhow::Context as _;
use bytesize::ByteSize;

use crate::{
    cli::ReportArgs,
    ebpf::probes::Probes,
    model::report::{Context, Report, Sample, build_report},
    system::{
        memory::{open_fds, pss_bytes, uses_epoll},
        process::TargetProcess,
        slabinfo::read_slabinfo,
        sysctl::read_sysctl_u64,
    },
    target::TargetSet,
};

pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let named = TargetProcess::resolve_all(&args.pids)?;
    let mut probes = Probes::attach(None, !args.no_children)?;
    let mut targets = TargetSet::start(named, !args.no_children, &mut probes)?;
    let epoll = targets.pids().into_iter().any(uses_epoll);
    eprintln!(
        "c1m: attached through {}; sampling pid {} for {:?} (connections opened from now on count)",
        probes.attach_mode,
        targets.describe_named(),
        args.duration
    );

    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        targets.refresh(&mut probes)?;
        let pids = targets.pids();
        // A process exiting between listing and reading counts as zero.
        samples.push(Sample {
            at_seconds: started.elapsed().as_secs_f64(),
            transitions: probes.read_transitions()?,
            user_bytes: pids.iter().filter_map(|&p| pss_bytes(p).ok()).sum(),
            open_fds: pids.iter().filter_map(|&p| open_fds(p).ok()).sum(),
        });
        if started.elapsed() >= args.duration || !targets.any_alive() {
            break;
        }
        std::thread::sleep(args.interval.min(args.duration));
    }

    let slabs = read_slabinfo().context("sizing kernel objects")?;
    let report = build_report(
        &samples,
        Context {
            pids: targets.pids(),
            alive: targets.any_alive(),
            slabs: &slabs,
            uses_epoll: epoll,
            max_tw_buckets: read_sysctl_u64("net.ipv4.tcp_max_tw_buckets").ok(),
            drops: probes.read_drops()?,
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, targets.describe_named());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &Report, target: String) {
    let c = &r.connections;
    let cost = &r.cost_per_connection;
    println!(
        "c1m report for pid {target} (processes {:?})",
        r.target.pids
    );
    println!(
        "connections  {} open {:?}; accepted {}, connected {}, closed {}",
        c.current, c.by_state, c.accepted_total, c.connected_total, c.closed_total
    );
    println!(
        "TIME_WAIT    ~{} now, {} entered, {:.1}/s -> heading to {:.0} of {} buckets",
        r.time_wait.current,
        r.time_wait.entered_total,
        r.time_wait.per_second,
        r.time_wait.steady_state,
        r.time_wait
            .max_buckets
            .map_or("unknown".to_owned(), |b| b.to_string())
    );
    let parts: Vec<String> = cost
        .kernel_breakdown
        .iter()
        .map(|(k, v)| format!("{k} {}", ByteSize(*v)))
        .collect();
    println!(
        "per connection: kernel {} ({}){}",
        ByteSize(cost.kernel_bytes),
        parts.join(", "),
        if cost.kernel_unknown.is_empty() {
            String::new()
        } else {
            format!(" + unknown size: {}", cost.kernel_unknown.join(", "))
        }
    );
    match (
        cost.user_bytes,
        cost.user_marginal_bytes,
        cost.user_marginal_r2,
    ) {
        (Some(avg), Some(marginal), Some(r2)) => println!(
            "                userspace {} on average, {} per additional connection (r2 {r2:.2})",
            ByteSize(avg),
            ByteSize(marginal.max(0.0) as u64)
        ),
        (Some(avg), _, _) => println!(
            "                userspace {} on average (no ramp seen: marginal cost unknown)",
            ByteSize(avg)
        ),
        _ => println!("                userspace: no open connections to divide by"),
    }
    if let Some(fds) = cost.fds {
        println!("                {fds:.2} fds ({} open)", cost.open_fds);
    }
    let dropped: u64 = r.drops.values().sum();
    println!("drops        {dropped} {:?}", r.drops);
}
