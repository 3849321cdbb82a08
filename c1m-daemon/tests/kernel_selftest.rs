//! Kernel test of `c1m-daemon selftest` at a small scale: it ramps its own
//! echo server, prints a verdict, writes the JSON (a ramp's, with the
//! selftest's fields added: `ramp --baseline` and `diff` read it), and
//! leaves nothing running.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn a_small_selftest_reaches_its_target_with_a_verdict_and_cleans_up() {
    if !kernel_tests_allowed("selftest") {
        return;
    }
    let json_path = std::env::temp_dir().join(format!("c1m-selftest-{}.json", std::process::id()));
    let output = daemon()
        .args(["selftest", "--connections", "3000", "--steps", "3"])
        .args(["--listen", "127.0.0.1:0", "--max-duration", "2m"])
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Reached 3,000 connections"), "{stdout}");
    assert!(stdout.contains("Projected for this box"), "{stdout}");
    assert!(
        stderr.contains("step 3/3") || stderr.contains("ramping"),
        "{stderr}"
    );

    let outcome: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    // Complete: the ramp stopped at nothing short of N.
    assert!(outcome["stop"].is_null(), "{outcome:#}");
    assert_eq!(outcome["reached"], 3000, "{outcome:#}");
    assert!(outcome["ramp_rate"].as_f64().unwrap() > 0.0);
    assert!(
        outcome["cost_per_connection"]["kernel_bytes"]
            .as_u64()
            .unwrap()
            > 1000,
        "{outcome:#}"
    );
    let marginal = outcome["cost_per_connection"]["user_marginal_bytes"]
        .as_f64()
        .unwrap();
    assert!(
        (100.0..8192.0).contains(&marginal),
        "echo's own cost per connection: {marginal}"
    );
    assert!(outcome["load_user_bytes"].as_u64().unwrap() > 0);
    for projection in ["both_ends_local", "server_alone"] {
        let binding = &outcome["projections"][projection]["binding"];
        assert!(
            binding["max_connections"].as_u64().unwrap() > 3000,
            "{outcome:#}"
        );
    }
    assert_eq!(
        outcome["report"]["connections"]["accepted_total"], 3000,
        "{outcome:#}"
    );

    // The echo server and its workers are gone.
    let echo = outcome["target"]["pid"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !std::path::Path::new(&format!("/proc/{echo}")).exists(),
        "echo {echo} still runs"
    );

    // The same JSON is a ramp's: `diff` reads it, and so does `ramp
    // --baseline` for its echo floor.
    let diff = daemon()
        .arg("diff")
        .arg(&json_path)
        .arg(&json_path)
        .output()
        .unwrap();
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let (_echo, line) = spawn_echo_in(&[], &["--workers", "1"]);
    let ready = echo_ready(&line);
    let ramp_json = json_path.with_extension("ramp.json");
    let ramp = daemon()
        .args(["ramp", "--listen", "127.0.0.1:0", "--max-duration", "1m"])
        .args(["--target", &ready.addr.to_string()])
        .args(["--pid", &ready.pid.to_string()])
        .args(["--connections", "300", "--steps", "3", "--hold", "100ms"])
        .arg("--baseline")
        .arg(&json_path)
        .arg("--json")
        .arg(&ramp_json)
        .output()
        .unwrap();
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(&ramp_json)
            .unwrap_or_else(|_| panic!("no ramp JSON: {}", String::from_utf8_lossy(&ramp.stderr))),
    )
    .unwrap();
    let _ = std::fs::remove_file(&json_path);
    let _ = std::fs::remove_file(&ramp_json);
    assert_eq!(ramp.status.code(), Some(0), "{result:#}");
    let floor = &result["floor"];
    assert!(
        floor["source"].as_str().unwrap().starts_with("--baseline"),
        "{floor:#}"
    );
    assert_eq!(
        floor["kernel_bytes"], outcome["cost_per_connection"]["kernel_bytes"],
        "{floor:#}"
    );
    assert_eq!(floor["connections"], 3000, "{floor:#}");
}

#[test]
fn ctrl_c_stops_the_selftest_and_everything_it_started() {
    if !kernel_tests_allowed("selftest interrupt") {
        return;
    }
    let mut child = daemon()
        .args(["selftest", "--connections", "40000", "--steps", "4"])
        .args(["--listen", "127.0.0.1:0", "--rate", "4000/s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard { child };
    let line = stderr.wait_for(Duration::from_secs(30), "the ramp to start", |l| {
        l.contains("ramping the echo server")
    });
    let echo: u32 = line
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no echo pid in {line:?}"));
    stderr.wait_for(Duration::from_secs(30), "a step", |l| l.contains("step "));
    guard.interrupt();
    let mut guard = guard;
    let started = std::time::Instant::now();
    let status = guard.child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(4), "interrupted short of N");
    let mut verdict = String::new();
    std::io::Read::read_to_string(&mut { stdout }, &mut verdict).unwrap();
    assert!(verdict.contains("Stopped at"), "{verdict}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !std::path::Path::new(&format!("/proc/{echo}")).exists(),
        "echo {echo} still runs"
    );
}
