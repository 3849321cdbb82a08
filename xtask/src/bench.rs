//! `cargo xtask bench <what>`: benchmarks that print numbers (never timed
//! tests). Each runs the release binary on loopback, bounded in time, and
//! ends every process it started.
//!
//! - `overhead`: connect/close churn against the echo server without c1m,
//!   with `c1m-daemon run` watching it, and without again; the overhead is
//!   the drop in churn rate.
//! - `scale [--connections N]`: N connections held by the echo server while
//!   `run` watches it: the time one walk of every socket and fd takes (the
//!   API's `daemon.walk_ms`), and the daemon's memory per tracked socket
//!   (its RSS and the kernel map).
//! - `top [--connections N]`: N connections held by the echo server and
//!   the load generator (2N sockets) while `top --json` refreshes every
//!   second for 15 s: the time and CPU of one refresh.
//! - `ramp [--connections N]`: `selftest` to N: ramp rate and verdict.
//! - `soak [--connections N] [--minutes M]`: N connections held for M
//!   minutes with `run` sampling every second: late samples and losses.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::protocol::{EchoEvent, LoadEvent, LoadOutcome, from_line};

pub struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child by pid, then reap it.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn daemon(root: &Path) -> PathBuf {
    root.join("target/release/c1m-daemon")
}

/// Start the echo server; (guard, address, pid).
fn echo(root: &Path, connections: u64) -> anyhow::Result<(Guard, String, u32)> {
    let mut child = Command::new(daemon(root))
        .args([
            "echo",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--connections",
            &connections.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the echo server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let EchoEvent::Listening(ready) = from_line(&line)? else {
        bail!("echo printed {line:?} first");
    };
    let (addr, pid) = (ready.addr.to_string(), ready.pid);
    Ok((Guard(child), addr, pid))
}

/// `run --json` on `pid`; the guard and its API address.
fn watch(root: &Path, pid: u32, extra: &[&str]) -> anyhow::Result<(Guard, String)> {
    let mut child = Command::new(daemon(root))
        .args([
            "run",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--pid",
            &pid.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting c1m-daemon run")?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let attached: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("run printed {line:?}"))?;
    let api = attached["api"].as_str().unwrap_or_default().to_owned();
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok((Guard(child), api))
}

fn load_json(root: &Path, args: &[&str]) -> anyhow::Result<LoadOutcome> {
    let output = Command::new(daemon(root))
        .args(["load", "--json"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .context("running c1m-daemon load")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| match from_line(l) {
            Ok(LoadEvent::Done(outcome)) => Some(outcome),
            _ => None,
        })
        .context("load printed no result")
}

/// The churn the overhead bench measures: `load --churn --close client`,
/// 64 connections at a time (over the source IPs load picks on loopback).
fn churn_args(addr: &str) -> [&str; 7] {
    [
        "--target",
        addr,
        "--churn",
        "--close",
        "client",
        "--connections",
        "64",
    ]
}

/// A churn (its default duration) to warm up caches and fill the TIME_WAIT
/// buckets, so every measured run starts from the same steady state.
fn churn_warm_up(root: &Path, addr: &str) -> anyhow::Result<()> {
    load_json(root, &churn_args(addr)).map(drop)
}

/// A measured churn: (connections per second, connections made).
fn churn_measured(root: &Path, addr: &str, seconds: u64) -> anyhow::Result<(f64, u64)> {
    let duration = format!("{seconds}s");
    let done = load_json(
        root,
        &[&churn_args(addr)[..], &["--duration", &duration]].concat(),
    )?;
    let closed = done.totals.counts.closed_total;
    let elapsed = done.elapsed_seconds;
    Ok((closed as f64 / elapsed, closed))
}

/// Churn rate over `seconds` after a warm-up (so TIME_WAIT and the caches
/// are in their steady state).
fn churn_rate(root: &Path, addr: &str, seconds: u64) -> anyhow::Result<f64> {
    churn_warm_up(root, addr)?;
    Ok(churn_measured(root, addr, seconds)?.0)
}

pub fn overhead(root: &Path, seconds: u64) -> anyhow::Result<()> {
    let (_echo, addr, pid) = echo(root, 10_000)?;
    let before = churn_rate(root, &addr, seconds)?;
    let (watcher, api) = watch(root, pid, &[])?;
    churn_warm_up(root, &addr)?;
    // What c1m counted during the measured run, against what the load made.
    std::thread::sleep(Duration::from_secs(2));
    let at_start = http_get_json(&api)?;
    let (with, churned) = churn_measured(root, &addr, seconds)?;
    std::thread::sleep(Duration::from_secs(3));
    let at_end = http_get_json(&api)?;
    drop(watcher);
    let after = churn_rate(root, &addr, seconds)?;
    let without = (before + after) / 2.0;
    let counted = |report: &serde_json::Value, total: &str| {
        report["connections"][total].as_u64().unwrap_or(0)
    };
    let accepted = counted(&at_end, "accepted_total") - counted(&at_start, "accepted_total");
    let closed = counted(&at_end, "closed_total") - counted(&at_start, "closed_total");
    println!("churn without c1m: {before:.0}/s, then {after:.0}/s (mean {without:.0}/s)");
    println!("churn with c1m run watching the server: {with:.0}/s");
    println!(
        "overhead: {:.1}% lower rate with c1m attached",
        100.0 * (without - with) / without
    );
    println!(
        "c1m counted {accepted} accepted and {closed} closed of the {churned} connections churned \
         while it watched; drops: {}",
        at_end["drops"]
    );
    Ok(())
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Kernel memory of the daemon's OWNED_SOCKS map (fdinfo `memlock`, which
/// counts the elements in use for maps without preallocation).
fn owned_socks_map_bytes(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("max_entries:\t4194304"))
        .filter_map(|info| {
            info.lines()
                .find(|l| l.starts_with("memlock:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0)
}

pub fn scale(root: &Path, connections: u64) -> anyhow::Result<()> {
    let (_echo, addr, pid) = echo(root, connections + 10_000)?;
    let (watcher, api) = watch(root, pid, &["--interval", "1s"])?;
    let daemon_pid = watcher.0.id();
    std::thread::sleep(Duration::from_secs(2));
    let (rss0, map0) = (rss_bytes(daemon_pid), owned_socks_map_bytes(daemon_pid));
    let started = Instant::now();
    let mut load = Guard(
        Command::new(daemon(root))
            .args([
                "load",
                "--target",
                &addr,
                "--connections",
                &connections.to_string(),
            ])
            .args(["--hold", "120s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    // Wait for the report to show them all (bounded).
    let report = loop {
        std::thread::sleep(Duration::from_secs(2));
        let report = http_get_json(&api)?;
        if report["connections"]["current"].as_u64() >= Some(connections)
            || started.elapsed() > Duration::from_secs(300)
        {
            break report;
        }
    };
    std::thread::sleep(Duration::from_secs(5));
    let (rss1, map1) = (rss_bytes(daemon_pid), owned_socks_map_bytes(daemon_pid));
    let tracked = report["connections"]["accepted_total"]
        .as_u64()
        .unwrap_or(0)
        .max(1);
    // The walk of every socket and fd, as the daemon timed it (the API's
    // `daemon.walk_ms`), from a report taken with all of them open.
    let report = http_get_json(&api)?;
    let walk_ms = report["daemon"]["walk_ms"].as_u64();
    println!(
        "connections held: {} (tracked by run since attach: {tracked})",
        report["connections"]["current"]
    );
    match walk_ms {
        Some(ms) => println!("one walk of every socket and fd: {ms} ms"),
        None => println!("one walk of every socket and fd: not measured (no BPF iterators)"),
    }
    println!(
        "daemon RSS: {} -> {} bytes: {:.1} bytes per tracked socket",
        rss0,
        rss1,
        (rss1 as f64 - rss0 as f64) / tracked as f64
    );
    println!(
        "kernel map OWNED_SOCKS: {} -> {} bytes: {:.1} bytes per tracked socket",
        map0,
        map1,
        (map1 as f64 - map0 as f64) / tracked as f64
    );
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(load.0.id() as i32, libc::SIGTERM) };
    let _ = load.0.wait();
    Ok(())
}

fn http_get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').context("bad API url")?;
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
        bail!("API answered {}", text.lines().next().unwrap_or(""));
    }
    Ok(serde_json::from_str(body)?)
}

/// N connections held for `minutes` with `run` sampling every second:
/// the daemon's RSS over time, the gaps between its samples, its drops.
pub fn soak(root: &Path, connections: u64, minutes: u64) -> anyhow::Result<()> {
    let (_echo, addr, pid) = echo(root, connections + connections / 10)?;
    let mut load = Guard(
        Command::new(daemon(root))
            .args([
                "load",
                "--target",
                &addr,
                "--connections",
                &connections.to_string(),
            ])
            .args(["--hold", &format!("{}s", minutes * 60 + 600)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut child = Command::new(daemon(root))
        .args([
            "run",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
        ])
        .args(["--pid", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let daemon_pid = child.id();
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let watcher = Guard(child);
    let started = Instant::now();
    let end = Duration::from_secs(minutes * 60);
    let (mut last_ms, mut max_gap_ms, mut samples, mut rss_warm, mut rss_max) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut drops = serde_json::Value::Null;
    let mut connections_seen = 0;
    // Samples after warm-up, and those that came more than half an
    // interval late (a walk of every socket ran in the sample before).
    let (mut timed, mut late) = (0u64, 0u64);
    for line in lines {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        if event["event"] != "sample" {
            continue;
        }
        let ms = event["elapsed_ms"].as_u64().unwrap_or(0);
        samples += 1;
        connections_seen = event["connections"].as_u64().unwrap_or(0);
        if connections_seen >= connections && rss_warm == 0 {
            rss_warm = rss_bytes(daemon_pid);
        } else if rss_warm > 0 {
            max_gap_ms = max_gap_ms.max(ms - last_ms);
            timed += 1;
            late += u64::from(ms - last_ms > 1500);
            rss_max = rss_max.max(rss_bytes(daemon_pid));
        }
        last_ms = ms;
        drops = event["drops"].clone();
        if started.elapsed() >= end {
            break;
        }
    }
    drop(watcher);
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(load.0.id() as i32, libc::SIGTERM) };
    let _ = load.0.wait();
    println!("held {connections_seen} connections for {minutes} min with run sampling every 1s");
    println!(
        "samples: {samples}; after warm-up {timed}, of which {late} more than 0.5 s late; \
         longest gap {max_gap_ms} ms"
    );
    println!("daemon RSS after warm-up: {rss_warm} bytes, highest later: {rss_max} bytes");
    println!("drops at the end: {drops}");
    Ok(())
}

pub fn ramp(root: &Path, connections: u64) -> anyhow::Result<()> {
    let status = Command::new(daemon(root))
        .args([
            "selftest",
            "--listen",
            "127.0.0.1:0",
            "--connections",
            &connections.to_string(),
        ])
        .args(["--json", "target/bench-ramp.json"])
        .current_dir(root)
        .status()?;
    // Its JSON (a `ramp --json` with the selftest's fields), not its words.
    let path = root.join("target/bench-ramp.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("selftest (exit {status}) wrote no {}", path.display()))?;
    let result: serde_json::Value = serde_json::from_str(&text)?;
    let cost = &result["cost_per_connection"];
    println!(
        "reached {} of {} in {:.1} s, ramping at {:.0}/s; stop: {}",
        result["reached"],
        result["requested"],
        result["seconds"].as_f64().unwrap_or(0.0),
        result["ramp_rate"].as_f64().unwrap_or(0.0),
        result["stop"]["reason"].as_str().unwrap_or("none"),
    );
    println!(
        "echo per connection: kernel {} B, userspace marginal {:.0} B; load side userspace {} B",
        cost["kernel_bytes"],
        cost["user_marginal_bytes"].as_f64().unwrap_or(0.0),
        result["load_user_bytes"],
    );
    println!("(selftest exit {status}; details in target/bench-ramp.json)");
    Ok(())
}

/// `top --json --interval 1s` for 15 s over N connections held on
/// loopback (echo + load, 2N sockets): refresh time and CPU.
pub fn top(root: &Path, connections: u64) -> anyhow::Result<()> {
    let (_echo, addr, _pid) = echo(root, connections)?;
    let _load = Guard(
        Command::new(daemon(root))
            .args(["load", "--target", &addr])
            .args(["--connections", &connections.to_string(), "--hold", "300s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the load")?,
    );
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let once = Command::new(daemon(root))
            .args(["top", "--once", "--json"])
            .output()
            .context("running top --once")?;
        let overview: serde_json::Value = serde_json::from_slice(&once.stdout)
            .with_context(|| String::from_utf8_lossy(&once.stderr).into_owned())?;
        if overview["totals"]["connections"].as_u64() >= Some(2 * connections) {
            break;
        }
        if started.elapsed() > Duration::from_secs(240) {
            bail!(
                "the load did not open {connections} connections in 240 s: {}",
                overview["totals"]
            );
        }
    }
    let mut top = Guard(
        Command::new(daemon(root))
            .args(["top", "--json", "--interval", "1s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting top")?,
    );
    let stdout = top.0.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_secs(15));
    // SAFETY: SIGINT to our own child (it stops like on Ctrl-C).
    unsafe { libc::kill(top.0.id() as i32, libc::SIGINT) };
    let _ = top.0.wait();
    let docs = reader.join().expect("reader thread");
    if docs.len() < 3 {
        bail!("top printed {} documents in 15 s", docs.len());
    }
    let mut refresh: Vec<f64> = docs
        .iter()
        .filter_map(|d| d["daemon"]["refresh_ms"].as_f64())
        .collect();
    refresh.sort_by(f64::total_cmp);
    let cpu = |d: &serde_json::Value| d["daemon"]["cpu_seconds"].as_f64().unwrap_or(0.0);
    let cpu_per_refresh = (cpu(&docs[docs.len() - 1]) - cpu(&docs[0])) / (docs.len() - 1) as f64;
    let last = &docs[docs.len() - 1];
    println!(
        "sockets walked: {} ({} connections in {} processes)",
        last["totals"]["sockets"], last["totals"]["connections"], last["totals"]["processes"]
    );
    println!(
        "one refresh: min {:.1} ms, median {:.1} ms, max {:.1} ms over {} refreshes",
        refresh[0],
        refresh[refresh.len() / 2],
        refresh[refresh.len() - 1],
        refresh.len()
    );
    println!(
        "CPU per refresh: {:.1} ms ({:.0}% of a core at one refresh a second); RSS {} bytes",
        cpu_per_refresh * 1000.0,
        cpu_per_refresh * 100.0,
        last["daemon"]["rss_bytes"]
    );
    Ok(())
}
