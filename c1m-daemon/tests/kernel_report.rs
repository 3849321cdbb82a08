//! Kernel test of `c1m-daemon report`: the real binary samples a real echo
//! server while connections ramp, and its JSON report adds up.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use common::*;
use serde_json::Value;

#[test]
fn report_counts_a_ramp_and_prices_each_connection() {
    if !kernel_tests_allowed("report") {
        return;
    }
    let (target, addr) = spawn_echo();
    let pid = target.pid().to_string();
    let (report, stdout) = spawn_report(
        &[],
        &["--duration", "3s", "--interval", "250ms", "--pid", &pid],
    );

    let mut held = Vec::new();
    for _ in 0..3 {
        for _ in 0..100 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"x").unwrap();
            held.push(s);
        }
        // Read the echoes: every connection is accepted (has its fd) before
        // the next sample.
        let step_start = held.len() - 100;
        for s in &mut held[step_start..] {
            let mut echo = [0u8; 1];
            s.read_exact(&mut echo).unwrap();
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let json: Value = serde_json::from_reader(stdout).expect("a JSON report");
    drop(report);

    let c = &json["connections"];
    assert_eq!(c["accepted_total"], 300, "{json:#}");
    assert_eq!(c["current"], 300, "{json:#}");
    assert_eq!(c["by_state"]["ESTABLISHED"], 300, "{json:#}");
    assert_eq!(json["target"]["alive"], true);
    assert_eq!(json["target"]["pids"][0], target.pid());

    let cost = &json["cost_per_connection"];
    let breakdown: u64 = cost["kernel_breakdown"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(cost["kernel_bytes"], breakdown, "{json:#}");
    assert!(
        cost["kernel_breakdown"]["tcp_sock"].as_u64().unwrap() > 1000,
        "{json:#}"
    );
    let fds = cost["fds_marginal"].as_f64().unwrap();
    // Samples taken mid-burst see connections still in the accept queue
    // (established, no fd yet), which flattens the slope a little.
    assert!(
        (0.85..1.1).contains(&fds),
        "one fd per additional connection: {json:#}"
    );
    assert!(cost["fds"].as_f64().unwrap() >= 1.0, "{json:#}");
    assert_eq!(c["source"], "scan", "{json:#}");
    assert!(
        cost["user_marginal_bytes"].as_f64().unwrap() > 0.0,
        "{json:#}"
    );
    assert!(json["drops"].as_object().unwrap().values().all(|v| v == 0));
    drop(held);
}

/// c1m runs as an ordinary user with CAP_BPF + CAP_PERFMON (+ CAP_SYS_PTRACE
/// to read another user's process, CAP_DAC_READ_SEARCH for /proc/slabinfo)
/// instead of root.
#[test]
fn report_runs_with_capabilities_instead_of_root() {
    if !kernel_tests_allowed("least privilege") {
        return;
    }
    let (target, addr) = spawn_echo();
    let held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"x").unwrap();
            s.read_exact(&mut [0u8; 1]).unwrap();
            s
        })
        .collect();
    let caps = "+bpf,+perfmon,+sys_ptrace,+dac_read_search";
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(DAEMON)
        .args(["report", "--json", "--duration", "300ms", "--pid"])
        .arg(target.pid().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["connections"]["current"], 20, "{json:#}");
    assert!(
        json["cost_per_connection"]["kernel_bytes"]
            .as_u64()
            .unwrap()
            > 1000,
        "{json:#}"
    );
    drop(held);
}
