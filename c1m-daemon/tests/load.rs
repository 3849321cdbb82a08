//! End-to-end tests of `c1m-daemon load` against `c1m-daemon echo`, both
//! run as a user would, on loopback.

mod common;

use std::{process::Stdio, time::Duration};

use c1m_daemon::protocol::{LoadEvent, LoadOutcome, Side, from_line};
use common::*;

fn address(line: &str) -> String {
    echo_address(line).to_string()
}

/// The outcome in a `done` line, if `line` is one.
fn done_outcome(line: &str) -> Option<LoadOutcome> {
    match from_line::<LoadEvent>(line) {
        Ok(LoadEvent::Done(outcome)) => Some(outcome),
        _ => None,
    }
}

/// Run `load --json` to the end; (exit code, the `done` line's outcome).
fn load(args: &[&str]) -> (Option<i32>, LoadOutcome) {
    let output = daemon()
        .args(["load", "--json"])
        .args(args)
        .output()
        .expect("running load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let done = stdout.lines().find_map(done_outcome).unwrap_or_else(|| {
        panic!(
            "no done line: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), done)
}

#[test]
fn thirty_thousand_connections_shard_both_sides_and_all_echo() {
    // Past 20000 fds per process (RLIMIT_NOFILE here) on both sides.
    let (_echo, line) = spawn_echo_in(&[], &["--connections", "30000"]);
    let workers = echo_ready(&line).workers;
    assert!(workers >= 2, "{line}");
    let (code, done) = load(&[
        "--target",
        &address(&line),
        "--connections",
        "30000",
        "--processes",
        "2",
        "--message-bytes",
        "16",
        "--interval",
        "2s",
        "--hold",
        "3s",
        "--connect-timeout",
        "20s",
    ]);
    assert_eq!(code, Some(0), "{done:#?}");
    assert!(done.reached, "{done:#?}");
    assert_eq!(done.peak_open, 30000, "{done:#?}");
    assert_eq!(done.processes, 2, "{done:#?}");
    let t = &done.totals.counts;
    assert!(t.messages_ok >= 30000, "{done:#?}");
    assert_eq!(t.messages_bad, 0, "{done:#?}");
    assert_eq!(t.dropped_by_server, 0, "{done:#?}");
    assert_eq!(t.closed_total, 30000, "{done:#?}");
}

#[test]
fn a_server_at_its_fd_limit_is_named_as_the_limit() {
    let (echo, line) = spawn_echo_in(
        &["prlimit", "--nofile=1000:1000", "--"],
        &["--workers", "1"],
    );
    let (code, done) = load(&[
        "--target",
        &address(&line),
        "--connections",
        "1500",
        "--message-bytes",
        "8",
        "--hold",
        "1s",
        "--connect-timeout",
        "2s",
        "--stall-timeout",
        "3s",
        "--server-pid",
        &echo.pid().to_string(),
    ]);
    assert_eq!(code, Some(4), "{done:#?}");
    assert!(!done.reached, "{done:#?}");
    let peak = done.peak_open;
    // The server holds about 1000: its limit, minus its own fds.
    assert!((950..=1000).contains(&peak), "{done:#?}");
    let verdict = done.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.side, Side::Server, "{done:#?}");
    assert_eq!(verdict.limit, "nofile", "{done:#?}");
    assert_eq!(verdict.errno.as_deref(), Some("EMFILE"), "{done:#?}");
}

#[test]
fn load_refuses_bad_input_with_one_clear_line() {
    let output = daemon()
        .args([
            "load",
            "--target",
            "127.0.0.1:1",
            "--source-ips",
            "127.0.0.x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("127.0.0.2-127.0.0.64"), "{stderr}");

    let output = daemon()
        .args(["load", "--target", "127.0.0.1:1", "--connections", "3"])
        .args(["--hold", "100ms", "--stall-timeout", "1s", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""limit":"listener""#), "{stdout}");
    assert!(stdout.contains("ECONNREFUSED"), "{stdout}");
}

#[test]
fn ctrl_c_stops_a_sharded_load_and_its_shards() {
    let (_echo, line) = spawn_echo_in(&[], &["--workers", "1"]);
    let mut child = daemon()
        .args([
            "load",
            "--json",
            "--target",
            &address(&line),
            "--connections",
            "2000",
        ])
        .args(["--processes", "2", "--hold", "60s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = LineReader::new(child.stdout.take().unwrap());
    let guard = ChildGuard { child };
    lines.wait_for(Duration::from_secs(30), "the ramp", |l| {
        l.contains(r#""event":"ramped""#)
    });
    let shards: Vec<u32> = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        guard.pid(),
        guard.pid()
    ))
    .unwrap()
    .split_whitespace()
    .map(|p| p.parse().unwrap())
    .collect();
    assert_eq!(shards.len(), 2, "two shard processes");
    guard.interrupt();
    let done = lines.wait_for(Duration::from_secs(30), "done", |l| {
        done_outcome(l).is_some()
    });
    let done = done_outcome(&done).unwrap();
    assert_eq!(done.peak_open, 2000, "{done:#?}");
    std::thread::sleep(Duration::from_millis(500));
    for shard in shards {
        assert!(
            !std::path::Path::new(&format!("/proc/{shard}")).exists(),
            "shard {shard} still runs"
        );
    }
}
