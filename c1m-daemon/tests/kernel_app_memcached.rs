//! End to end: a real memcached with `-c 200`, watched by `c1m-daemon run`
//! and driven past its cap by c1m's own load generator. The ceiling must
//! name `memcached.conn_limit` with what memcached really serves, show
//! evidence while the cap is hit, and clear it once the load stops.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const LIMIT: &str = "memcached.conn_limit";

/// The report, or `None` before the first sample (503).
fn report(api: &str) -> Option<Value> {
    let (status, body) = http_get(api, "/api/v1/report");
    if status == 503 {
        return None;
    }
    assert_eq!(status, 200, "{body}");
    Some(serde_json::from_str(&body).unwrap())
}

fn limit_entry(report: &Value) -> Option<&Value> {
    report["ceiling"]["limits"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == LIMIT)
}

/// Poll the report every 500 ms until `done` holds; the last report either way.
fn poll(api: &str, within: Duration, done: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + within;
    loop {
        let json = report(api).unwrap_or_default();
        if done(&json) {
            return (true, json);
        }
        if Instant::now() >= deadline {
            return (false, json);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn memcached_conn_limit_binds_when_the_load_passes_it() {
    if !kernel_tests_allowed("memcached conn_limit") {
        return;
    }
    let cap = 200;
    let Some(server) = memcached::start(cap) else {
        return;
    };
    let allowed = memcached::allowed(cap) as f64;
    let (_run, _lines, api) = spawn_run_with_api(server.pid, &[]);

    // memcached accepts each connection past its cap and closes it at
    // once, so the load keeps knocking: at full speed that is thousands of
    // refusals a second, whose TIME_WAITs (memcached closes first) head for
    // tcp_max_tw_buckets and bind before the cap does; 100/s keeps them
    // few. A refused connect does not count as progress, so the stall
    // timeout must outlast the test or the load stops knocking after 2 s.
    let started = Instant::now();
    let load = daemon()
        .args(["load", "--target", &server.addr.to_string()])
        .args(["--connections", &(cap + 50).to_string(), "--hold", "60s"])
        .args([
            "--rate",
            "100/s",
            "--connect-timeout",
            "1s",
            "--stall-timeout",
            "60s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning c1m-daemon load");
    let load = ChildGuard { child: load };

    let (named, json) = poll(&api, Duration::from_secs(30), |json| {
        json["ceiling"]["binding"]["kind"] == "application"
            && limit_entry(json)
                .and_then(|l| l["evidence"].as_array())
                .is_some_and(|e| !e.is_empty())
    });
    assert!(
        named,
        "no application limit with evidence binds after 30 s: {json:#}"
    );
    eprintln!(
        "the verdict named {LIMIT} {:.1} s after the load started",
        started.elapsed().as_secs_f64()
    );
    let binding = &json["ceiling"]["binding"];
    assert_eq!(binding["name"], LIMIT, "{json:#}");
    let max = binding["max_connections"].as_f64().unwrap();
    assert!(
        (max - allowed).abs() <= allowed * 0.01,
        "c1m says {max}, memcached serves {allowed}: {json:#}"
    );
    let entry = limit_entry(&json).unwrap();
    assert_eq!(entry["kind"], "application", "{entry:#}");
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("-c {cap}"))),
        "{entry:#}"
    );

    drop(load);
    let stopped = Instant::now();
    let (cleared, json) = poll(&api, Duration::from_secs(20), |json| {
        limit_entry(json).is_some_and(|l| l["exceeded"] == false)
    });
    assert!(
        cleared,
        "{LIMIT} still exceeded 20 s after the load stopped: {json:#}"
    );
    eprintln!(
        "{LIMIT} cleared {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
}
