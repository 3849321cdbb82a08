//! Kernel tests of what one connection costs, through `run`'s HTTP API:
//! a server whose per-connection memory is known (the echo server with
//! `--state-bytes`), ramped in steps.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use common::*;
use serde_json::Value;

const STATE_BYTES: f64 = 16384.0;

/// What c1m counts as a process's own memory: Pss_Anon + Pss_Shmem.
fn pss_bytes(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kib = |field: &str| -> f64 {
        rollup
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    (kib("Pss_Anon:") + kib("Pss_Shmem:")) * 1024.0
}

fn report(api: &str) -> Value {
    let (status, body) = http_get(api, "/api/v1/report");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn user_bytes_per_connection_match_what_the_server_allocates() {
    if !kernel_tests_allowed("user bytes") {
        return;
    }
    let (echo, line) = spawn_echo_in(&[], &["--workers", "1", "--state-bytes", "16KiB"]);
    let addr = echo_address(&line);
    let baseline = pss_bytes(echo.pid());
    let (_run, _lines, api) = spawn_run_with_api(echo.pid(), &[]);

    let mut held = Vec::new();
    for _step in 0..4 {
        for _ in 0..250 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"x").unwrap();
            let mut echo_byte = [0u8; 1];
            s.read_exact(&mut echo_byte).unwrap();
            held.push(s);
        }
        // Settle: several samples (200 ms apart) at each step.
        std::thread::sleep(Duration::from_millis(800));
    }
    let json = report(&api);
    let n = held.len() as f64;
    let cost = &json["cost_per_connection"];
    assert_eq!(json["connections"]["current"], 1000, "{json:#}");

    let marginal = cost["user_marginal_bytes"].as_f64().unwrap();
    assert!(
        (marginal - STATE_BYTES).abs() / STATE_BYTES < 0.10,
        "marginal {marginal} vs {STATE_BYTES}: {json:#}"
    );
    let expected_average = STATE_BYTES + baseline / n;
    let average = cost["user_bytes"].as_f64().unwrap();
    assert!(
        (average - expected_average).abs() / expected_average < 0.10,
        "average {average} vs {expected_average}: {json:#}"
    );
    assert!(cost["user_marginal_r2"].as_f64().unwrap() > 0.9, "{json:#}");
    assert!(
        json["daemon"]["attach_mode"]
            .as_str()
            .unwrap()
            .contains("inet_sock_set_state")
    );
    assert!(json["daemon"]["samples"].as_u64().unwrap() > 5);
    // A thousand sockets walk in well under the 200 ms interval: every
    // sample walked, so the report's last walk is a moment old.
    let walk_age = json["daemon"]["walk_age_ms"].as_u64().unwrap();
    assert!(walk_age < 1000, "{json:#}");
    assert!(
        json["daemon"]["walk_ms"].as_u64().unwrap() < 200,
        "{json:#}"
    );
    // c1m's own cost: the state probe ran for every transition of the
    // thousand connections (both ends: at least two each), timed.
    let daemon = &json["daemon"];
    assert_eq!(daemon["program_stats"]["available"], true, "{daemon:#}");
    let state_probe = daemon["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"]
                .as_str()
                .unwrap()
                .starts_with("inet_sock_set_state")
        })
        .unwrap_or_else(|| panic!("no state probe in {daemon:#}"));
    assert!(state_probe["runs"].as_u64().unwrap() >= 2000, "{daemon:#}");
    let ns = state_probe["ns_per_run"].as_f64().unwrap();
    assert!(ns > 0.0 && ns < 100_000.0, "{daemon:#}");
    eprintln!(
        "state probe: {state_probe}; bpf memory {}",
        daemon["bpf_memory_bytes"]
    );
    assert!(
        daemon["bpf_memory_bytes"].as_u64().unwrap() > 0,
        "{daemon:#}"
    );
    drop(held);
}

#[test]
fn ipv6_connections_are_counted_and_priced_as_ipv6_sockets() {
    if !kernel_tests_allowed("ipv6") {
        return;
    }
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        let why = "ipv6: no IPv6 loopback ([::1]) here";
        if std::env::var("C1M_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
            panic!("{why}, and C1M_REQUIRE_KERNEL_TESTS=1 forbids skipping");
        }
        eprintln!("SKIPPED {why}");
        return;
    };
    drop(probe);
    let (echo, line) = spawn_echo_in(&[], &["--listen", "[::1]:0", "--workers", "1"]);
    let addr = echo_address(&line);
    let (_run, _lines, api) = spawn_run_with_api(echo.pid(), &[]);
    let held: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"x").unwrap();
            s.read_exact(&mut [0u8; 1]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let json = report(&api);
    assert_eq!(json["connections"]["current"], 50, "{json:#}");
    assert_eq!(json["connections"]["accepted_total"], 50, "{json:#}");
    let breakdown = &json["cost_per_connection"]["kernel_breakdown"];
    assert!(breakdown["tcp6_sock"].as_u64().unwrap() > 1000, "{json:#}");
    assert!(breakdown.get("tcp_sock").is_none(), "{json:#}");
    drop(held);
}
