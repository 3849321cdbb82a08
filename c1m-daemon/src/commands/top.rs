//! `c1m-daemon top` (the processes that hold TCP sockets on this host, a
//! table per refresh) and `run` without a target, which serves the same
//! overview at `/` and `/api/v1/overview`. Both start from nothing the user
//! must know: each row names the `run --pid` that watches it.

use std::{io::IsTerminal as _, sync::Arc, time::Duration};

use crate::{
    api,
    cli::{RunArgs, TopArgs},
    exit::Exit,
    human::human_count,
    model::overview::{Overview, ProcessRow},
    monitor::overview::OverviewSource,
    runtime::Shutdown,
};

pub fn top(args: &TopArgs) -> anyhow::Result<Exit> {
    let mut source = OverviewSource::start()?;
    let clear = !args.once && !args.json && std::io::stdout().is_terminal();
    let runtime = crate::runtime::current_thread()?;
    runtime.block_on(async {
        let mut shutdown = Shutdown::install()?;
        loop {
            let started = tokio::time::Instant::now();
            let overview = source.refresh()?;
            if args.json {
                println!("{}", serde_json::to_string(&overview)?);
            } else {
                if clear {
                    // Home and clear, as top(1) does.
                    print!("\x1b[H\x1b[2J");
                }
                println!("{}", render_table(&overview, args.rows));
            }
            if args.once {
                return Ok(Exit::Ok);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_refresh(started, args.interval)) => {}
                _ = shutdown.recv() => return Ok(Exit::Ok),
            }
        }
    })
}

/// When to refresh next: after `interval`, but walks (most of a refresh)
/// take at most a fifth of the time, so c1m spends at most a fifth of a
/// core on them on a host where one takes longer than a fifth of the
/// interval (a million sockets).
fn next_refresh(started: tokio::time::Instant, interval: Duration) -> tokio::time::Instant {
    started + interval.max(started.elapsed() * 5)
}

/// `run` without a target: the overview served at `/` and
/// `/api/v1/overview`, and a line per refresh.
pub fn serve(args: &RunArgs) -> anyhow::Result<Exit> {
    if args.no_children || args.attach.is_some() {
        anyhow::bail!(
            "--no-children and --attach choose how a target is watched; give its --pid \
             (without one, `run` serves the host overview)"
        );
    }
    let runtime = crate::runtime::current_thread()?;
    runtime.block_on(async {
        // Bind first: a busy port fails before anything is loaded.
        let listener = api::bind(args.listen).await?;
        let api_addr = listener.local_addr()?;
        let access = api::access::Access::new(api_addr, args.token.clone())?;
        let mut source = OverviewSource::start()?;
        let (publish, latest) = tokio::sync::watch::channel(None);
        api::serve_router_in_background(api::overview::router(latest), listener, access)?;
        let banner = format!(
            "c1m: no target: the processes holding TCP sockets on this host, at \
             http://{api_addr}/ (JSON: /api/v1/overview); Ctrl-C to stop\n\
             watch one of them: c1m-daemon run --pid <PID> (each row names its own)"
        );
        // With --json, stdout carries only the documents.
        if args.json {
            eprintln!("{banner}");
        } else {
            println!("{banner}");
        }
        let mut shutdown = Shutdown::install()?;
        let begun = tokio::time::Instant::now();
        let deadline = args.duration.map(|d| begun + d);
        loop {
            let started = tokio::time::Instant::now();
            let overview = Arc::new(source.refresh()?);
            if args.json {
                println!("{}", serde_json::to_string(&*overview)?);
            } else {
                println!("{}", summary_line(begun.elapsed(), &overview));
            }
            publish.send_replace(Some(overview));
            if deadline.is_some_and(|at| tokio::time::Instant::now() >= at) {
                return Ok(Exit::Ok);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_refresh(started, args.interval)) => {}
                _ = shutdown.recv() => return Ok(Exit::Ok),
            }
        }
    })
}

fn summary_line(elapsed: Duration, overview: &Overview) -> String {
    let busiest = overview.processes.first().map_or(String::new(), |row| {
        format!(
            "; most: pid {} ({}) {} connections",
            row.pid,
            row.comm,
            human_count(row.connections)
        )
    });
    format!(
        "{:>7.1}s  {} processes, {} connections, TIME_WAIT {}{busiest}",
        elapsed.as_secs_f64(),
        overview.totals.processes,
        human_count(overview.totals.connections),
        human_count(overview.totals.time_wait),
    )
}

/// The table `top` prints: a header line, a row per process (at most
/// `rows`), the host's ownerless sockets, and how they were attributed.
pub fn render_table(overview: &Overview, rows: usize) -> String {
    let t = &overview.totals;
    let attributed: u64 = overview.processes.iter().map(|p| p.time_wait).sum();
    let mut out = format!(
        "c1m top: {} processes hold {} TCP connections in network namespace {}; \
         TIME_WAIT {} ({} on listening ports, {} the host's); refresh {:.0} ms\n",
        t.processes,
        human_count(t.connections),
        overview
            .netns
            .map_or_else(|| "?".to_owned(), |ns| ns.to_string()),
        human_count(t.time_wait),
        human_count(attributed),
        human_count(overview.host.time_wait),
        overview.daemon.refresh_ms,
    );
    out.push_str(&format!(
        "{:>8}  {:<22} {:>7}  {:<28} {:<16} {:>6}  {:>9}  {:>13}  {:<20} {:<24} WATCH\n",
        "PID",
        "COMMAND",
        "CONNS",
        "STATES",
        "LISTENING",
        "TW",
        "KBUF",
        "FDS/NOFILE",
        "NEAREST LIMIT",
        "CGROUP"
    ));
    for row in overview.processes.iter().take(rows) {
        out.push_str(&render_row(row));
        out.push('\n');
    }
    if overview.processes.len() > rows {
        out.push_str(&format!(
            "{:>8}  ({} more processes; --rows or --json for all)\n",
            "",
            overview.processes.len() - rows
        ));
    }
    out.push_str(&format!(
        "{:>8}  {:<22} {:>7}  {:<28} {:<16} {:>6}\n",
        "-",
        "(host)",
        "",
        states(&overview.host.by_state),
        "",
        human_count(overview.host.time_wait)
    ));
    if overview.other_namespaces.sockets > 0 {
        out.push_str(&format!(
            "({} sockets of {} processes in other network namespaces not shown)\n",
            human_count(overview.other_namespaces.sockets),
            overview.other_namespaces.processes
        ));
    }
    out.push_str(overview.attribution);
    out
}

fn render_row(row: &ProcessRow) -> String {
    let command = match &row.exe {
        Some(exe) if !exe.starts_with(&row.comm) && !row.comm.starts_with(exe.as_str()) => {
            format!("{} ({exe})", row.comm)
        }
        _ => row.comm.clone(),
    };
    let listening = match row.listening.as_slice() {
        [] => "-".to_owned(),
        [a] => format!(":{a}"),
        [a, b] => format!(":{a},:{b}"),
        [a, b, rest @ ..] => format!(":{a},:{b} +{}", rest.len()),
    };
    let fds = match row.nofile {
        Some(u64::MAX) => format!("{}/unlim", human_count(row.fds)),
        Some(nofile) => format!("{}/{}", human_count(row.fds), human_count(nofile)),
        None => format!("{}/?", human_count(row.fds)),
    };
    let nearest = row.nearest_limit.as_ref().map_or("-".to_owned(), |l| {
        format!("{} +{}", l.name, human_count(l.headroom))
    });
    let cgroup = row
        .cgroup
        .as_deref()
        .map_or("-".to_owned(), |c| tail(c, 24));
    format!(
        "{:>8}  {:<22} {:>7}  {:<28} {:<16} {:>6}  {:>9}  {:>13}  {:<20} {:<24} {}",
        row.pid,
        tail(&command, 22),
        human_count(row.connections),
        states(&row.by_state),
        listening,
        human_count(row.time_wait),
        bytesize::ByteSize(row.kernel_buffer_bytes).to_string(),
        fds,
        nearest,
        cgroup,
        row.watch
    )
}

/// States but TIME_WAIT (a column of its own), short names.
fn states(by_state: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = by_state
        .iter()
        .filter(|(name, n)| name.as_str() != "TIME_WAIT" && **n > 0)
        .map(|(name, n)| {
            let short = match name.as_str() {
                "ESTABLISHED" => "EST",
                other => other,
            };
            format!("{short} {}", human_count(*n))
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The last `width` characters (paths and names keep their distinctive end).
fn tail(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        text.to_owned()
    } else {
        let kept: String = text.chars().skip(count - width + 1).collect();
        format!("…{kept}")
    }
}
