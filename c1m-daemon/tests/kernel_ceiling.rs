//! Kernel tests of the ceiling analysis: provoke real limits on loopback
//! (per-namespace ones inside a network namespace the test creates) and
//! check the binding limit named is the one that was hit.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

fn echo_in(prefix: &[&str], args: &[&str]) -> (ChildGuard, String) {
    let mut all = vec!["--workers", "1"];
    all.extend(args);
    let (guard, line) = spawn_echo_in(prefix, &all);
    (guard, echo_address(&line).to_string())
}

fn report_json(args: &[&str]) -> Value {
    let output = daemon()
        .args(["report", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn binding(report: &Value) -> &Value {
    &report["ceiling"]["binding"]
}

#[test]
fn a_lowered_fd_limit_binds_at_about_its_value() {
    if !kernel_tests_allowed("nofile ceiling") {
        return;
    }
    let (echo, addr) = echo_in(&["prlimit", "--nofile=1000:1000", "--"], &[]);
    // Ramp it until it stops accepting.
    let load = daemon()
        .args([
            "load",
            "--target",
            &addr,
            "--connections",
            "1200",
            "--message-bytes",
            "1",
        ])
        .args([
            // Held past the report and the ss count below even on a busy
            // box (6 s once ran out before ss counted: "the server held
            // 0"); the guard ends the load when the test does.
            "--hold",
            "60s",
            "--connect-timeout",
            "1s",
            "--stall-timeout",
            "2s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _load = ChildGuard { child: load };
    std::thread::sleep(Duration::from_secs(4));
    let report = report_json(&["--duration", "500ms", "--pid", &echo.pid().to_string()]);
    // What the server holds, counted apart from c1m: its established
    // sockets that a process has an fd for (ss -p shows users only for
    // those; the rest wait in the accept queue or were given up).
    let port = addr.rsplit(':').next().unwrap();
    let ss = Command::new("ss")
        .args([
            "-Htnp",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .unwrap();
    let held = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter(|l| l.contains("users:("))
        .count() as f64;
    let b = binding(&report);
    assert_eq!(b["name"], "nofile", "{report:#}");
    let max = b["max_connections"].as_u64().unwrap() as f64;
    assert!(held >= 950.0, "the server held {held}: {report:#}");
    assert!(
        (max - held).abs() / held < 0.05,
        "c1m allows {max}, the server holds {held}: {report:#}"
    );
    let verdict = report["ceiling"]["verdict"].as_str().unwrap();
    assert!(verdict.contains("nofile 1000"), "{verdict}");
}

/// A listener that never accepts, with a tiny backlog, in a process of its
/// own (the clients must not be the target's own connections).
#[test]
fn a_full_accept_queue_binds_as_the_accept_backlog() {
    if !kernel_tests_allowed("accept backlog") {
        return;
    }
    let mut never_accepts = Command::new("python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket()\n\
             s.bind(('127.0.0.1', 0))\n\
             s.listen(2)\n\
             print(s.getsockname()[1], flush=True)\n\
             time.sleep(120)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the never-accepting test server)");
    let port = LineReader::new(never_accepts.stdout.take().unwrap())
        .next_line(Duration::from_secs(10))
        .expect("its port");
    let server = ChildGuard {
        child: never_accepts,
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let mut child = daemon()
        .args(["report", "--json", "--no-children", "--duration", "3s"])
        .args(["--pid", &server.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let _report = ChildGuard { child };
    stderr.wait_for(Duration::from_secs(30), "attach", |l| {
        l.contains("attached")
    });
    // Non-blocking connects: the SYNs beyond the queue are dropped.
    let clients: Vec<_> = (0..20)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&addr.into());
            Some(s)
        })
        .collect();
    let report: Value = serde_json::from_reader(stdout).unwrap();
    let b = binding(&report);
    assert_eq!(b["name"], "accept_backlog", "{report:#}");
    assert_eq!(b["exceeded"], true, "{report:#}");
    // Its own listener's drops, not the namespace's counter.
    let evidence = b["evidence"][0].as_str().unwrap_or_default();
    assert!(
        evidence.contains(&format!("port {} dropped", addr.port())),
        "{report:#}"
    );
    drop(clients);
}

#[test]
fn narrowed_ports_with_one_source_ip_bind_the_load_side() {
    if !kernel_tests_allowed("ephemeral ports") {
        return;
    }
    let ns = Netns::new("ports").expect("ip netns add (iproute2, root)");
    ns.run(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=40000 40099",
    ]);
    let (_echo, addr) = echo_in(&ns.prefix(), &[]);
    let mut load = Command::new("ip");
    load.args([
        "netns", "exec", &ns.0, DAEMON, "load", "--json", "--target", &addr,
    ])
    .args(["--connections", "300", "--source-ips", "127.0.0.1"])
    .args(["--hold", "200ms", "--stall-timeout", "2s"]);
    let output = load.output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let done: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "done")
        .unwrap();
    let peak = done["peak_open"].as_u64().unwrap();
    assert!((95..=100).contains(&peak), "100 ports: {done:#}");
    assert_eq!(done["verdict"]["limit"], "ephemeral_ports", "{done:#}");
    assert_eq!(done["verdict"]["side"], "client", "{done:#}");
    assert!(
        done["verdict"]["explanation"]
            .as_str()
            .unwrap()
            .contains("100 ports"),
        "{done:#}"
    );
}

#[test]
fn lowered_time_wait_buckets_bind_under_server_close_churn() {
    if !kernel_tests_allowed("TIME_WAIT buckets") {
        return;
    }
    let ns = Netns::new("tw").expect("ip netns add (iproute2, root)");
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.tcp_max_tw_buckets=50"]);
    let (echo, addr) = echo_in(&ns.prefix(), &["--close-after-echo"]);
    // Run from the host's namespace: c1m enters the target's by itself.
    let mut command = daemon();
    command
        .args(["report", "--json"])
        .args(["--duration", "4s", "--pid", &echo.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let _report = ChildGuard { child };
    stderr.wait_for(Duration::from_secs(30), "attach", |l| {
        l.contains("attached")
    });
    ns.run(&[
        DAEMON,
        "load",
        "--churn",
        "--close",
        "server",
        "--target",
        &addr,
        "--connections",
        "4",
        "--duration",
        "1s",
        "--rate",
        "400/s",
    ]);
    let report: Value = serde_json::from_reader(stdout).unwrap();
    let b = binding(&report);
    assert_eq!(b["name"], "time_wait_buckets", "{report:#}");
    assert!(
        b["explanation"]
            .as_str()
            .unwrap()
            .contains("TCPTimeWaitOverflow"),
        "{report:#}"
    );
    assert!(
        report["time_wait"]["current"].as_u64().unwrap() <= 50,
        "{report:#}"
    );
}
