//! Kernel test of the host overview: `c1m-daemon top` and `run` without a
//! target. Two echo servers on loopback hold 30 and 50 connections that
//! this test process dialled; the real binary walks the real kernel and
//! must give each echo its exact ESTABLISHED count and listening port, and
//! this process its 80 dialled connections; `GET /api/v1/overview` of a
//! `run` without `--pid` must show the same rows. One test function: the
//! test process's own connections are counted, so nothing runs beside it.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// `n` connections to `addr`, each echoed once (so accepted by the server).
fn hold(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).expect("echo");
            stream
        })
        .collect()
}

fn row(overview: &Value, pid: u32) -> Option<&Value> {
    overview["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|row| row["pid"] == pid)
}

fn established(row: &Value) -> u64 {
    row["by_state"]["ESTABLISHED"].as_u64().unwrap_or(0)
}

/// Each echo holds exactly its connections on its port; this process
/// dialled them all. `Err` says what differs.
fn check_rows(overview: &Value, echoes: &[(u32, u16, u64)], me: u32) -> Result<(), String> {
    for &(pid, port, n) in echoes {
        let row = row(overview, pid).ok_or(format!("no row for echo pid {pid}"))?;
        if established(row) != n || row["connections"] != n || row["accepted"] != n {
            return Err(format!(
                "echo pid {pid}: want {n} ESTABLISHED accepted: {row}"
            ));
        }
        if row["listening"] != serde_json::json!([port]) {
            return Err(format!("echo pid {pid}: want listening [{port}]: {row}"));
        }
        if row["watch"] != format!("c1m-daemon run --pid {pid}") {
            return Err(format!("echo pid {pid}: watch command: {row}"));
        }
        if row["fds"].as_u64().unwrap_or(0) < n || row["nofile"].as_u64().is_none() {
            return Err(format!("echo pid {pid}: fds and nofile: {row}"));
        }
        let nearest = &row["nearest_limit"];
        if nearest["name"] != "nofile"
            || nearest["headroom"].as_u64()
                != Some(row["nofile"].as_u64().unwrap() - row["fds"].as_u64().unwrap())
        {
            return Err(format!("echo pid {pid}: nearest limit: {row}"));
        }
    }
    let total: u64 = echoes.iter().map(|e| e.2).sum();
    let mine = row(overview, me).ok_or(format!("no row for this test process {me}"))?;
    if established(mine) != total || mine["dialled"] != total || mine["accepted"] != 0 {
        return Err(format!(
            "this process: want {total} dialled ESTABLISHED: {mine}"
        ));
    }
    Ok(())
}

#[test]
fn top_and_the_overview_api_count_each_process_exactly() {
    if !kernel_tests_allowed("top_and_the_overview_api_count_each_process_exactly") {
        return;
    }
    let (_echo_a, line_a) = spawn_echo_in(&[], &["--workers", "1"]);
    let (_echo_b, line_b) = spawn_echo_in(&[], &["--workers", "1"]);
    let (a, b) = (echo_ready(&line_a), echo_ready(&line_b));
    let _held_a = hold(a.addr, 30);
    let _held_b = hold(b.addr, 50);
    let echoes = [(a.pid, a.addr.port(), 30), (b.pid, b.addr.port(), 50)];
    let me = std::process::id();

    let started = Instant::now();
    let output = daemon()
        .args(["top", "--once", "--json"])
        .output()
        .expect("running c1m-daemon top");
    assert!(
        output.status.success(),
        "top failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "--once --json prints one document");
    let overview: Value = serde_json::from_str(&text).unwrap();
    check_rows(&overview, &echoes, me).unwrap();
    println!(
        "top --once --json: {:.1} ms refresh, {:?} in all; totals {}",
        overview["daemon"]["refresh_ms"].as_f64().unwrap(),
        started.elapsed(),
        overview["totals"]
    );

    // The table names each echo with the command that watches it.
    let table = daemon().args(["top", "--once"]).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    for (pid, port, n) in echoes {
        let line = table
            .lines()
            .find(|l| l.ends_with(&format!("c1m-daemon run --pid {pid}")))
            .unwrap_or_else(|| panic!("no row for {pid} in:\n{table}"));
        assert!(line.contains(&format!("EST {n}")), "{line}");
        assert!(line.contains(&format!(":{port}")), "{line}");
    }

    // `run` without --pid serves the same rows.
    let mut child = daemon()
        .args(["run", "--listen", "127.0.0.1:0", "--interval", "200ms"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning c1m-daemon run");
    let lines = LineReader::new(child.stdout.take().unwrap());
    let _run = ChildGuard { child };
    let banner = lines.wait_for(Duration::from_secs(30), "the overview banner", |l| {
        l.contains("http://")
    });
    let api = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(&api, "/api/v1/overview");
        let last = if status == 200 {
            let overview: Value = serde_json::from_str(&body).unwrap();
            // A walk that ran while one of this test's requests was open
            // counts it too: ask again.
            match check_rows(&overview, &echoes, me) {
                Ok(()) => break,
                Err(why) => why,
            }
        } else {
            format!("HTTP {status}: {body}")
        };
        assert!(Instant::now() < deadline, "GET /api/v1/overview: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, page) = http_get(&api, "/");
    assert_eq!(status, 200);
    assert!(page.contains("/assets/overview.js"), "{page}");

    // Sockets no file holds, for real: the TIME_WAIT a server that closes
    // first keeps goes to it (by its listening port); connections waiting
    // in an accept queue go to the listener's process.
    let (_echo_c, line_c) = spawn_echo_in(&[], &["--workers", "1", "--close-after-echo"]);
    let c = echo_ready(&line_c);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(c.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"x").unwrap();
        let mut rest = Vec::new();
        // The echo, then end of stream: the server closed first.
        stream.read_to_end(&mut rest).expect("echo and close");
        assert_eq!(rest, b"x");
    }
    let queue = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let queue_port = queue.local_addr().unwrap().port();
    let _queued: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(queue.local_addr().unwrap()).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let overview = top_once();
        let closer = row(&overview, c.pid).expect("a row for the closing echo");
        let mine = row(&overview, me).expect("a row for this process");
        let ok = closer["time_wait"] == 20
            && closer["by_state"]["TIME_WAIT"] == 20
            && closer["connections"] == 0
            && mine["accept_queue"] == 5
            && mine["listening"] == serde_json::json!([queue_port]);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "want 20 TIME_WAIT for the closing echo and 5 queued here:\n{closer}\n{mine}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn top_once() -> Value {
    let output = daemon().args(["top", "--once", "--json"]).output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}
