//! End to end: a real redis with `--maxclients 200`, watched by `c1m-daemon
//! run` and driven past its cap by c1m's own load generator (silent
//! connections: redis counts a client from its accept). The ceiling must
//! name `redis.maxclients` with what redis really serves, show evidence
//! while the cap is hit, and clear it once the load stops.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const LIMIT: &str = "redis.maxclients";

/// The report, or `Null` before the first sample (503).
fn report(api: &str) -> Value {
    let (status, body) = http_get(api, "/api/v1/report");
    if status == 503 {
        return Value::Null;
    }
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
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
        let json = report(api);
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
fn redis_maxclients_binds_when_the_load_passes_it() {
    if !kernel_tests_allowed("redis maxclients") {
        return;
    }
    let cap = 200;
    let Some(server) = redis::start(cap) else {
        return;
    };
    let allowed = redis::allowed(cap) as f64;
    let (_run, _lines, api) = spawn_run_with_api(server.pid, &[]);
    // c1m reads maxclients by asking redis, which a full redis refuses:
    // let it read once before the load fills it (it keeps that value).
    let (read, json) = poll(&api, Duration::from_secs(10), |json| {
        limit_entry(json).is_some()
    });
    assert!(read, "no {LIMIT} in the ceiling before the load: {json:#}");

    let started = Instant::now();
    let load = daemon()
        .args(["load", "--target", &server.addr.to_string()])
        .args(["--connections", &(cap + 50).to_string(), "--hold", "60s"])
        .args(["--connect-timeout", "1s", "--stall-timeout", "2s"])
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
        "c1m says {max}, redis serves {allowed}: {json:#}"
    );
    let entry = limit_entry(&json).unwrap();
    assert_eq!(entry["kind"], "application", "{entry:#}");
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("CONFIG GET maxclients on {}", server.addr))),
        "{entry:#}"
    );
    eprintln!("{entry:#}");

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
