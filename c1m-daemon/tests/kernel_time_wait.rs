//! Kernel test: TIME_WAIT is counted for the side that closes first. The
//! echo server is the target; `load --churn` connects, exchanges and closes,
//! with either side closing first. Both run in a network namespace of the
//! test's own, so TIME_WAIT buckets filled by others cannot interfere.

mod common;

use common::*;
use serde_json::Value;

/// States (hex, as /proc/net/tcp writes them) of the sockets in `ns` whose
/// remote port is `port` (the client side of connections to a server on
/// `port`), with their counts.
fn client_states(ns: &Netns, port: u16) -> std::collections::BTreeMap<String, u64> {
    let table = ns.output(&["cat", "/proc/net/tcp"]);
    let mut states = std::collections::BTreeMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote_port = fields[2].rsplit(':').next().unwrap();
        if u16::from_str_radix(remote_port, 16) == Ok(port) {
            *states.entry(fields[3].to_string()).or_insert(0) += 1;
        }
    }
    states
}

/// Churn against an echo server watched by `report`; (report, load's done line).
fn churn(ns: &Netns, close: &str) -> (Value, Value) {
    let mut echo_args = vec!["--workers", "1"];
    if close == "server" {
        echo_args.push("--close-after-echo");
    }
    let (echo, line) = spawn_echo_in(&ns.prefix(), &echo_args);
    let addr = echo_address(&line).to_string();
    let pid = echo.pid().to_string();
    // Run from the host: c1m enters the target's namespace by itself.
    let (_report, stdout) = spawn_report(
        &[],
        &["--duration", "4s", "--interval", "250ms", "--pid", &pid],
    );
    let output = daemon_in(&ns.prefix())
        .args([
            "load", "--json", "--churn", "--close", close, "--target", &addr,
        ])
        .args([
            "--connections",
            "4",
            "--duration",
            "1500ms",
            "--rate",
            "300/s",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let done: Value = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "done")
        .unwrap();
    let report: Value = serde_json::from_reader(stdout).expect("a JSON report");
    (report, done)
}

#[test]
fn time_wait_stays_with_the_side_that_closes_first() {
    if !kernel_tests_allowed("TIME_WAIT") {
        return;
    }
    let ns = Netns::new("churn").expect("ip netns add (iproute2, root)");
    // tcp_tw_reuse (2 by default: on loopback) lets a new connect take
    // over a client's TIME_WAIT for the same 4-tuple, which ends it early
    // and would make the client side's count come up short. Off in this
    // test's own namespace.
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0"]);
    let (report, done) = churn(&ns, "server");
    let churned = done["totals"]["closed_total"].as_u64().unwrap();
    assert!(churned > 100, "{done:#}");
    assert!(done["elapsed_seconds"].as_f64().unwrap() >= 1.5, "{done:#}");
    assert!(
        done["totals"]["failures"].as_object().unwrap().is_empty(),
        "{done:#}"
    );
    let tw = &report["time_wait"];
    assert_eq!(
        report["connections"]["accepted_total"], churned,
        "{report:#}"
    );
    assert_eq!(
        tw["entered_total"], churned,
        "server closed first: {report:#}"
    );
    assert_eq!(tw["current"], churned, "{report:#}");
    assert_eq!(tw["current_source"], "scan", "{report:#}");
    assert!(tw["per_second"].as_f64().is_some());

    let (report, done) = churn(&ns, "client");
    let churned = done["totals"]["closed_total"].as_u64().unwrap();
    let port: u16 = done["target"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        report["connections"]["accepted_total"], churned,
        "{report:#}"
    );
    assert_eq!(report["connections"]["closed_total"], churned, "{report:#}");
    assert_eq!(
        report["time_wait"]["entered_total"], 0,
        "clients closed first: {report:#}"
    );
    assert_eq!(report["time_wait"]["current"], 0, "{report:#}");
    // The clients hold the TIME_WAITs. Not always every one: in about one
    // CI run in ten, one of ~450 client sockets is gone from the table by
    // the time it is read (453 of 454 twice, with tcp_tw_reuse off in this
    // namespace), so allow 1% and print the states seen. What this test
    // proves about c1m is the server side's zero above; this line only
    // shows the TIME_WAITs exist, on the other side.
    let states = client_states(&ns, port);
    let client_side = states.get("06").copied().unwrap_or(0);
    assert!(
        client_side * 100 >= churned * 99,
        "the clients keep the TIME_WAIT sockets: {client_side} of {churned}, \
         client-side states {states:?} ({done:#})"
    );
}
