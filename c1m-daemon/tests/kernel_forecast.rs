//! Kernel test: the time-to-exhaustion forecast against a real run-out.
//! In a network namespace of the test's own with a 400-port ephemeral
//! range, `load` dials the echo server from one source address at a steady
//! rate, so the range for that (source, destination) pair runs out after
//! about 400 / rate seconds and connects fail with EADDRNOTAVAIL: once by
//! holding every connection, once by a churn that closes each at once and
//! leaves its port in TIME_WAIT. c1m watches the load generator (the
//! process that dials): its forecast for `ephemeral_ports`, made early,
//! must land within 20% of when the ports really ran out.

mod common;

use std::time::{Duration, Instant};

use common::{api::try_report, *};
use serde_json::Value;

/// Ports in the namespace's ephemeral range, and the load's pace: the
/// range runs out after about PORTS / RATE = 16 s.
const PORTS: u64 = 400;
const RATE: u64 = 25;

/// The `ephemeral_ports` forecast in a report, if any: (seconds, rate).
fn ports_forecast(report: &Value) -> Option<(f64, f64)> {
    report["ceiling"]["forecasts"]
        .as_array()?
        .iter()
        .find(|f| f["limit"] == "ephemeral_ports")
        .map(|f| {
            (
                f["seconds"].as_f64().unwrap(),
                f["rate_per_second"].as_f64().unwrap(),
            )
        })
}

#[test]
fn the_forecast_for_held_connections_matches_the_real_run_out() {
    ports_run_out_as_forecast(
        "forecast-hold",
        &["--connections", &(2 * PORTS).to_string(), "--hold", "40s"],
    );
}

/// The classic exhaustion: a client that opens and closes connections
/// (closing first, so the TIME_WAIT is its own) holds almost none open,
/// yet every close keeps its port for 60 s.
#[test]
fn the_forecast_for_a_churn_matches_the_real_run_out() {
    ports_run_out_as_forecast(
        "forecast-churn",
        &[
            "--connections",
            "4",
            "--churn",
            "--close",
            "client",
            "--duration",
            "40s",
        ],
    );
}

/// Run `load <load_args>` at RATE from one source address in a namespace
/// with PORTS ephemeral ports, watch it with c1m, and compare the
/// `ephemeral_ports` forecast with the run-out the load meets.
fn ports_run_out_as_forecast(name: &str, load_args: &[&str]) {
    if !kernel_tests_allowed(name) {
        return;
    }
    let ns = Netns::new(name).expect("ip netns add (iproute2, root)");
    let low = 40_000;
    let range = format!("net.ipv4.ip_local_port_range={low} {}", low + PORTS - 1);
    ns.run(&["sysctl", "-q", "-w", &range]);
    // Loopback TIME_WAITs would otherwise be reused (tcp_tw_reuse 2), and
    // the range would never run out.
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0"]);
    // The server listens outside the range so it holds none of its ports.
    let (_echo, line) = spawn_echo_in(
        &ns.prefix(),
        &["--workers", "1", "--listen", "127.0.0.1:7000"],
    );
    let addr = echo_address(&line).to_string();

    let mut load = daemon_in(&ns.prefix())
        .args(["load", "--json", "--target", &addr])
        .args(load_args)
        .args(["--rate", &format!("{RATE}/s")])
        // One source address: automatic source addresses on 127.0.0.0/8
        // would give every address a range of its own.
        .args(["--source-ips", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning c1m-daemon load");
    let started = Instant::now();
    let lines = LineReader::new(load.stdout.take().unwrap());
    let load = ChildGuard { child: load };
    let (_run, _run_lines, api) = spawn_run_with_api(load.pid(), &[]);

    // Forecasts while the range fills: (seconds since the load started,
    // the forecast's seconds left, its rate).
    let mut forecasts: Vec<(f64, f64, f64)> = Vec::new();
    let mut ran_out_at = None;
    let mut last_line_at = 0.0;
    let mut next_poll = Instant::now();
    // The last report, for the failure message: what c1m saw of the pair.
    let mut last_report = None;
    while started.elapsed() < Duration::from_secs(40) && ran_out_at.is_none() {
        // The load's progress lines come each second; the run-out is timed
        // on this test's clock (the load's own starts later), between the
        // last line without EADDRNOTAVAIL and the first with it.
        if let Some(line) = lines.next_line(Duration::from_millis(20)) {
            let now = started.elapsed().as_secs_f64();
            let Ok(progress) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if progress["failures"]["EADDRNOTAVAIL"].as_u64().unwrap_or(0) > 0 {
                ran_out_at = Some((last_line_at + now) / 2.0);
            }
            last_line_at = now;
        }
        if Instant::now() >= next_poll {
            next_poll += Duration::from_millis(500);
            let report = try_report(&api);
            if let Some((seconds, rate)) = report.as_ref().and_then(ports_forecast) {
                forecasts.push((started.elapsed().as_secs_f64(), seconds, rate));
            }
            last_report = report.or(last_report);
        }
    }
    let ran_out_at = ran_out_at.unwrap_or_else(|| {
        panic!("the {PORTS}-port range never ran out in 40 s; forecasts {forecasts:?}")
    });
    eprintln!("ran out at {ran_out_at:.1} s; forecasts (at, seconds left, rate): {forecasts:?}");

    // The first forecast made with at least 5 s of load behind it and 5 s
    // still to go: early enough to be useful, late enough for a rate.
    let (at, left, rate) = *forecasts
        .iter()
        .find(|(at, _, _)| *at >= 5.0 && ran_out_at - at >= 5.0)
        .unwrap_or_else(|| {
            let seen = last_report.as_ref().map(|r| {
                let ports = r["ceiling"]["limits"]
                    .as_array()
                    .and_then(|l| l.iter().find(|l| l["name"] == "ephemeral_ports").cloned());
                format!(
                    "ephemeral_ports limit {ports:?}; connections {}; time_wait {}; drops {}; \
                     target {}",
                    r["connections"], r["time_wait"], r["drops"], r["target"]
                )
            });
            panic!(
                "no forecast between 5 s and {ran_out_at:.1} - 5 s: {forecasts:?}; \
                 last report: {seen:?}"
            )
        });
    let actual = ran_out_at - at;
    assert!(
        (left - actual).abs() <= 0.2 * actual,
        "at {at:.1} s the forecast said the ports run out in {left:.1} s (at {rate:.1} ports/s); \
         they ran out {actual:.1} s later"
    );
    assert!(
        (rate - RATE as f64).abs() <= 0.2 * RATE as f64,
        "the forecast's rate {rate:.1}/s, the load's {RATE}/s"
    );
}
