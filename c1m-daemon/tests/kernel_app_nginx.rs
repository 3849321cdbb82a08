//! End to end: a real nginx with `worker_connections 200` (one worker),
//! watched by `c1m-daemon run`, filled with clients in the middle of a
//! request and driven past its cap by c1m's own load generator. The ceiling
//! must name `nginx.worker_connections` with what nginx really holds, show
//! evidence while the cap is hit, and clear it once the load stops.
//!
//! Why the busy clients: the load's connections send nothing, and nginx
//! treats connections without a request as reusable; past its cap it takes
//! each new one and closes its oldest idle ones, so c1m's load alone makes
//! nginx churn at the cap rather than refuse. With every slot busy, nginx
//! refuses: it accepts the next connection and closes it at once.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const LIMIT: &str = "nginx.worker_connections";

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
fn nginx_worker_connections_bind_when_the_load_passes_them() {
    if !kernel_tests_allowed("nginx worker_connections") {
        return;
    }
    let cap = 200;
    let Some(server) = nginx::start(cap) else {
        return;
    };
    let allowed = nginx::allowed(cap) as f64;
    let (_run, _lines, api) = spawn_run_with_api(server.pid, &[]);

    let busy = nginx::busy_clients(server.addr, nginx::allowed(cap));
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
        "c1m says {max}, nginx holds {allowed}: {json:#}"
    );
    let entry = limit_entry(&json).unwrap();
    assert_eq!(entry["kind"], "application", "{entry:#}");
    let conf = server.dir.join("nginx.conf");
    assert_eq!(
        entry["source"].as_str(),
        Some(format!("{}:6", conf.display()).as_str()),
        "{entry:#}"
    );
    eprintln!("evidence: {:#}", entry["evidence"]);

    drop((load, busy));
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
