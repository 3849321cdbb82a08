//! `c1m-daemon report --pid <PID>`: sample the target for a while, then
//! print one report of its connections and what each one costs.

use bytesize::ByteSize;

use crate::{
    cli::ReportArgs,
    exit::Exit,
    human::human_count,
    model::{
        ceiling::Ceiling,
        report::{Report, TimeWaitSource},
    },
    monitor::Sampler,
};

use super::target::resolve_target;

pub fn report(args: &ReportArgs) -> anyhow::Result<Exit> {
    let (named, cgroup) = resolve_target(&args.pids, &args.cgroup)?;
    let mut sampler = Sampler::start_on(named, cgroup, !args.no_children, None)?;
    eprintln!(
        "c1m: attached through {}; sampling pid {} for {:?} (connections opened from now on count)",
        sampler.attach_mode(),
        sampler.describe_targets(),
        args.duration
    );
    if let Some(why) = sampler.walks_unavailable() {
        eprintln!("c1m: socket walks unavailable ({why}): counts come from state changes only");
    }
    loop {
        sampler.sample()?;
        if sampler.elapsed() >= args.duration || !sampler.any_alive() {
            break;
        }
        std::thread::sleep(args.interval.min(args.duration));
    }
    sampler.final_sample()?;
    let report = sampler.report()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, sampler.describe_targets());
    }
    if !report.target.alive {
        eprintln!(
            "c1m-daemon: target pid {} exited after {:.0?}; the report holds the last data seen \
             while it ran (`target.alive` is false).",
            sampler.describe_targets(),
            sampler.elapsed()
        );
        return Ok(Exit::TargetGone);
    }
    Ok(Exit::Ok)
}

/// The report for a human, one helper per section.
fn print_summary(r: &Report, target: String) {
    print_target(r, &target);
    print_connections(r);
    print_cost(r);
    let dropped: u64 = r.drops.values().sum();
    println!("drops        {dropped} {:?}", r.drops);
    if let Some(ceiling) = &r.ceiling {
        print_ceiling(ceiling);
    }
}

fn print_target(r: &Report, target: &str) {
    println!(
        "c1m report for pid {target} (processes {:?})",
        r.target.pids
    );
    if !r.target.alive {
        println!("target       exited: the figures below are the last seen while it ran");
    }
    if !r.target.exited.is_empty() {
        let exited: Vec<String> = r
            .target
            .exited
            .iter()
            .map(|p| format!("{} ({})", p.pid, p.comm))
            .collect();
        println!("exited       while watched: {}", exited.join(", "));
    }
}

/// Open connections and TIME_WAIT.
fn print_connections(r: &Report) {
    let c = &r.connections;
    println!(
        "connections  {} open {:?}; accepted {}, connected {}, closed {}{}",
        c.current,
        c.by_state,
        c.accepted_total,
        c.connected_total,
        c.closed_total,
        if c.preexisting > 0 {
            format!("; {} open from before c1m attached", c.preexisting)
        } else {
            String::new()
        }
    );
    println!(
        "TIME_WAIT    {}{} now, {} entered, {:.1}/s -> heading to {:.0} of {} buckets",
        if r.time_wait.current_source == TimeWaitSource::Walk {
            ""
        } else {
            "~"
        },
        r.time_wait.current,
        r.time_wait.entered_total,
        r.time_wait.per_second,
        r.time_wait.steady_state,
        r.time_wait
            .max_buckets
            .map_or("unknown".to_owned(), |b| b.to_string())
    );
}

/// What one connection costs: kernel, userspace, buffers, fds.
fn print_cost(r: &Report) {
    let cost = &r.cost_per_connection;
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
    if let Some(b) = &r.kernel_buffers {
        println!(
            "socket buffers now: {} received, {} queued to send, {} reserved",
            ByteSize(b.receive_allocated),
            ByteSize(b.send_queued),
            ByteSize(b.forward_alloc)
        );
    }
    if let Some(fds) = cost.fds {
        println!(
            "                {fds:.2} fds on average, {} per additional connection ({} open)",
            cost.fds_marginal
                .map_or("unknown".to_owned(), |m| format!("{m:.2}")),
            cost.open_fds
        );
    }
}

/// The verdict, where the binding limit is set, and every limit.
fn print_ceiling(ceiling: &Ceiling) {
    println!("{}", ceiling.verdict);
    if let Some(binding) = &ceiling.binding {
        println!("  set at: {}", binding.source);
        for seen in &binding.evidence {
            println!("  seen:   {seen}");
        }
        println!("  remedy: {}", binding.remedy);
    }
    if let Some(nearest) = ceiling.forecasts.first() {
        println!("  soonest: {}", nearest.basis);
    }
    println!("limits, tightest first:");
    for l in &ceiling.limits {
        let allows = match l.max_connections {
            Some(n) => human_count(n),
            None => "-".to_owned(),
        };
        let hit = if l.exceeded { "  BEING HIT" } else { "" };
        println!(
            "  {:<11} {:<28} {allows:>9}  {}{hit}",
            format!("{:?}", l.kind).to_lowercase(),
            l.name,
            l.source
        );
    }
}
