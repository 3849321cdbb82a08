//! End to end: `c1m-daemon ramp` against real Debian servers on loopback.
//! redis with a low maxclients ramped past it stops there and names
//! redis.maxclients; nginx answering `--http /` reaches N and prices
//! userspace per connection as the test's own PSS measurement does, the
//! echo floor beside it; `diff` names what changed between two runs; a
//! run without --pid reports the client side and says what it could not
//! see.

mod common;

use std::{
    path::PathBuf,
    process::{Output, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("c1m-ramp-{}-{name}", std::process::id()))
}

fn ramp(args: &[&str], json: &PathBuf) -> (Output, Value) {
    let output = daemon()
        .args(["ramp", "--listen", "127.0.0.1:0", "--max-duration", "3m"])
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("running c1m-daemon ramp");
    let text = std::fs::read_to_string(json).unwrap_or_else(|_| {
        panic!(
            "no JSON written: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, serde_json::from_str(&text).unwrap())
}

fn redis_ramp(cap: u64, json: &PathBuf) -> Option<(Output, Value)> {
    let server = redis::start(cap)?;
    let result = ramp(
        &[
            "--target",
            &server.addr.to_string(),
            "--pid",
            &server.pid.to_string(),
            "--connections",
            "400",
            "--send",
            r"PING\r\n",
            "--expect",
            "+PONG",
            "--no-floor",
        ],
        json,
    );
    Some(result)
}

#[test]
fn redis_past_maxclients_stops_at_the_cap_and_diff_names_the_change() {
    if !kernel_tests_allowed("ramp redis") {
        return;
    }
    let (a, b) = (temp("redis-300.json"), temp("redis-350.json"));
    let Some((output, result)) = redis_ramp(300, &a) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{result:#}");
    let reached = result["reached"].as_f64().unwrap();
    assert!(
        (reached - 300.0).abs() <= 3.0,
        "reached {reached}: {result:#}"
    );
    assert_eq!(result["stop"]["limit"], "redis.maxclients", "{result:#}");
    assert_eq!(
        result["stop"]["reason"], "closed_after_accept",
        "{result:#}"
    );
    assert!(
        result["stop"]["evidence"].as_array().unwrap().len() >= 2,
        "{result:#}"
    );
    assert_eq!(result["ceiling"]["binding"]["name"], "redis.maxclients");
    assert!(stdout.contains("the limit: redis.maxclients"), "{stdout}");
    let steps = result["steps"].as_array().unwrap();
    assert!(steps.len() >= 8, "{result:#}");
    assert!(steps[3]["kernel_bytes"].as_u64().unwrap() > 1000);
    assert!(result["environment"]["sysctls"]["net.core.somaxconn"].is_string());
    eprintln!(
        "redis: reached {reached} in {:.1} s; per connection: kernel {}, userspace {} (marginal {})",
        result["seconds"].as_f64().unwrap(),
        result["cost_per_connection"]["kernel_bytes"],
        result["cost_per_connection"]["user_bytes"],
        result["cost_per_connection"]["user_marginal_bytes"]
    );

    // A higher cap: diff names it.
    let Some((_, second)) = redis_ramp(350, &b) else {
        return;
    };
    assert_eq!(second["stop"]["limit"], "redis.maxclients", "{second:#}");
    let diff = daemon().arg("diff").arg(&a).arg(&b).output().unwrap();
    let text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(0), "{text}");
    assert!(text.contains("ceiling.redis.maxclients"), "{text}");
    assert!(text.contains("300 (") && text.contains("350 ("), "{text}");
    assert!(text.contains("reached"), "{text}");
    let json = daemon()
        .arg("diff")
        .arg("--json")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let changes: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        changes["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["what"] == "ceiling.redis.maxclients"),
        "{changes:#}"
    );
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
}

/// Pss_Anon + Pss_Shmem of a process (what c1m counts as its own memory).
fn pss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Pss_Anon:") || l.starts_with("Pss_Shmem:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * 1024
}

#[test]
fn nginx_over_http_reaches_n_and_prices_userspace_like_pss_with_the_floor() {
    if !kernel_tests_allowed("ramp nginx") {
        return;
    }
    let Some(server) = nginx::start(2048) else {
        return;
    };
    let processes = || {
        let mut pids = server.workers();
        pids.push(server.pid);
        pids
    };
    let before: u64 = processes().into_iter().map(pss).sum();
    let json = temp("nginx.json");
    let html = temp("nginx.html");
    let mut child = daemon()
        .args(["ramp", "--listen", "127.0.0.1:0", "--max-duration", "3m"])
        .args(["--target", &server.addr.to_string()])
        .args(["--pid", &server.pid.to_string()])
        .args(["--connections", "500", "--steps", "5", "--http", "/"])
        .args(["--hold", "3s", "--json"])
        .arg(&json)
        .arg("--report")
        .arg(&html)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let mut guard = ChildGuard { child };
    stderr.wait_for(Duration::from_secs(150), "the ramp to hold", |l| {
        l.contains("ramp held")
    });
    let after: u64 = processes().into_iter().map(pss).sum();
    let status = guard.child.wait().unwrap();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut { stdout }, &mut printed).unwrap();
    assert_eq!(status.code(), Some(0), "{printed}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(result["reached"], 500, "{result:#}");
    assert!(result["stop"].is_null(), "{result:#}");
    let truth = after.saturating_sub(before) as f64 / 500.0;
    let cost = &result["cost_per_connection"];
    let measured = match (
        cost["user_marginal_bytes"].as_f64(),
        cost["user_marginal_r2"].as_f64(),
    ) {
        (Some(m), Some(r2)) if r2 >= 0.9 => m,
        _ => cost["user_bytes"].as_f64().unwrap(),
    };
    assert!(
        (measured - truth).abs() <= 0.25 * truth,
        "userspace per connection: c1m {measured:.0} B, PSS ground truth {truth:.0} B: {cost:#}"
    );
    let floor = &result["floor"];
    assert!(floor["kernel_bytes"].as_u64().unwrap() > 1000, "{floor:#}");
    assert!(floor["user_bytes"].as_f64().is_some(), "{floor:#}");
    assert!(printed.contains("echo floor"), "{printed}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("ramp-data") && !page.contains("<script src"),
        "HTML"
    );
    eprintln!(
        "nginx: reached 500 in {:.1} s; per connection: kernel {} B, userspace {measured:.0} B \
         (PSS truth {truth:.0} B), fds {}; floor: kernel {} B, userspace {:.0} B ({}); report {} bytes",
        result["seconds"].as_f64().unwrap(),
        cost["kernel_bytes"],
        cost["fds_marginal"],
        floor["kernel_bytes"],
        floor["user_bytes"].as_f64().unwrap(),
        floor["source"],
        page.len()
    );
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&html);
}

#[test]
fn without_a_pid_the_ramp_reports_the_client_side_and_what_it_could_not_see() {
    // No eBPF here: a remote-style ramp only connects.
    let (_echo, line) = spawn_echo_in(&[], &["--workers", "1"]);
    let json = temp("remote.json");
    let (output, result) = ramp(
        &[
            "--target",
            &echo_address(&line).to_string(),
            "--connections",
            "300",
            "--steps",
            "3",
            "--hold",
            "100ms",
        ],
        &json,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(result["reached"], 300, "{result:#}");
    assert!(result["cost_per_connection"].is_null());
    assert!(result["ceiling"].is_null());
    assert!(result["floor"].is_null());
    let latency = &result["connect_latency_us"];
    assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
    assert!(
        result["not_measured"]
            .as_str()
            .unwrap()
            .contains("server side"),
        "{result:#}"
    );
    assert!(stdout.contains("Not measured"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
    assert_eq!(result["steps"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_file(&json);
}
