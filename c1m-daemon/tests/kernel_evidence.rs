//! Kernel tests of the evidence behind "being hit now": a server c1m has no
//! reader for is found from what its sockets do, the pressure clears with
//! the window, and a server on the same port in another network namespace
//! is not the target.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{api::*, *};

/// A server c1m knows nothing about: it accepts, holds the first `cap`
/// connections, and closes every later one at once without reading it.
const CAPPED_SERVER: &str = r#"
import socket, sys
cap = int(sys.argv[1])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
print(listener.getsockname()[1], flush=True)
held = []
while True:
    conn, _ = listener.accept()
    if len(held) < cap:
        held.append(conn)
    else:
        conn.close()
"#;

/// Start the capped server; its pid and port.
fn capped_server(cap: u64) -> Option<(ChildGuard, String)> {
    let Ok(mut child) = Command::new("python3")
        .args(["-c", CAPPED_SERVER, &cap.to_string()])
        .stdout(Stdio::piped())
        .spawn()
    else {
        skip("observed cap: python3 (the unknown test server) is not installed");
        return None;
    };
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    Some((ChildGuard { child }, format!("127.0.0.1:{}", port.trim())))
}

#[test]
fn an_unknown_servers_own_cap_is_observed_and_clears_with_the_window() {
    if !kernel_tests_allowed("observed cap") {
        return;
    }
    let cap = 300;
    let Some((server, addr)) = capped_server(cap) else {
        return;
    };
    let (_daemon, _lines, api) = spawn_run_with_api(server.pid(), &[]);
    let started = Instant::now();
    let load = spawn_load(
        &[],
        &addr,
        400,
        &[
            "--hold",
            "60s",
            "--connect-timeout",
            "1s",
            "--stall-timeout",
            "30s",
        ],
    );
    let r = poll(&api, Duration::from_secs(30), "an observed cap", |r| {
        r["ceiling"]["binding"]["name"] == "application.observed"
    });
    eprintln!(
        "observed cap named {:.1} s after the load started: {}",
        started.elapsed().as_secs_f64(),
        r["ceiling"]["verdict"]
    );
    let b = &r["ceiling"]["binding"];
    assert_eq!(b["kind"], "application", "{r:#}");
    assert_eq!(b["exceeded"], true, "{r:#}");
    let max = b["max_connections"].as_u64().unwrap();
    assert!(
        max.abs_diff(cap) <= cap / 100,
        "{max} vs the cap {cap}: {r:#}"
    );
    assert!(
        !b["evidence"].as_array().unwrap().is_empty(),
        "no evidence: {r:#}"
    );
    assert!(
        r["ceiling"]["verdict"]
            .as_str()
            .unwrap()
            .contains("being hit now"),
        "{r:#}"
    );
    // The pressure stops with the load: within the 10 s window (and a
    // sample or two) the cap is no longer being hit.
    drop(load);
    let stopped = Instant::now();
    poll(
        &api,
        Duration::from_secs(20),
        "the evidence to clear",
        |r| {
            limit(r, "application.observed").is_none()
                && r["ceiling"]["limits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|l| l["exceeded"] == false)
        },
    );
    eprintln!(
        "cleared {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
}

#[test]
fn a_server_on_the_same_port_in_another_namespace_is_not_the_target() {
    if !kernel_tests_allowed("netns attribution") {
        return;
    }
    let Some(ns) = Netns::new("attr") else {
        panic!("cannot create a network namespace (ip netns add)");
    };
    // The target on the host, a stranger on the same port inside the
    // namespace (a container with its own :PORT).
    let (target, line) = spawn_echo_in(&[], &["--workers", "1"]);
    let addr = echo_address(&line);
    let listen = format!("127.0.0.1:{}", addr.port());
    let (_stranger, _) = spawn_echo_in(&ns.prefix(), &["--workers", "1", "--listen", &listen]);
    let (_daemon, _lines, api) = spawn_run_with_api(target.pid(), &[]);
    let load = |prefix: &[&str], n: u64| {
        spawn_load(
            prefix,
            &listen,
            n,
            &["--hold", "30s", "--source-ips", "127.0.0.1"],
        )
    };
    let _outside = load(&[], 500);
    let _inside = load(&ns.prefix(), 1500);
    let r = poll(&api, Duration::from_secs(30), "500 connections", |r| {
        r["connections"]["current"] == 500
    });
    // Give the stranger's 1,500 time to land too, then check nothing of
    // theirs was counted: not by the walk, not by the live counters.
    std::thread::sleep(Duration::from_secs(2));
    let inside = ns.output(&[
        "ss",
        "-Htn",
        "state",
        "established",
        "sport",
        "=",
        &format!(":{}", addr.port()),
    ]);
    assert!(
        inside.lines().count() >= 1000,
        "the stranger holds only {} connections",
        inside.lines().count()
    );
    let r2 = try_report(&api).expect("a report");
    assert_eq!(r2["connections"]["current"], 500, "{r2:#}");
    assert_eq!(r2["connections"]["accepted_total"], 500, "{r2:#}");
    assert_eq!(
        r2["connections"]["accepted_total"], r["connections"]["accepted_total"],
        "{r2:#}"
    );
}
