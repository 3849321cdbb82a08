//! End to end against a real haproxy: a load past its global `maxconn`
//! makes c1m name `haproxy.maxconn` as the binding limit, with the
//! connections haproxy really allows, evidence that it is being hit, and
//! no longer exceeded once the load stops.
//!
//! At its cap haproxy stops accepting and lets clients wait in the listen
//! backlog, which it sizes to the frontend's maxconn (here the global one):
//! the backlog fills, and handshakes get dropped (c1m's evidence), only
//! past 2 x cap + 1 connections, so the load goes 50 beyond that.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const CAP: u64 = 200;
const LIMIT: &str = "haproxy.maxconn";

/// The report, or `Null` before the first sample (503).
fn report(api: &str) -> Value {
    let (status, body) = http_get(api, "/api/v1/report");
    if status == 503 {
        return Value::Null;
    }
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn entry<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["ceiling"]["limits"]
        .as_array()?
        .iter()
        .find(|limit| limit["name"] == name)
}

fn has_evidence(report: &Value) -> bool {
    entry(report, LIMIT)
        .and_then(|limit| limit["evidence"].as_array())
        .is_some_and(|evidence| !evidence.is_empty())
}

/// Poll the report every 500 ms until `done` holds; panics after `within`.
fn poll(api: &str, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let report = report(api);
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_load_past_haproxy_maxconn_binds_as_the_application_limit() {
    if !kernel_tests_allowed("haproxy maxconn") {
        return;
    }
    let Some(server) = haproxy::start(CAP) else {
        return;
    };
    let (_run, _lines, api) = spawn_run_with_api(server.pid, &[]);
    let load = daemon()
        .args(["load", "--target", &server.addr.to_string()])
        .args([
            "--connections",
            &(2 * CAP + 50).to_string(),
            "--hold",
            "60s",
        ])
        .args(["--connect-timeout", "1s", "--stall-timeout", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning c1m-daemon load");
    let load = ChildGuard { child: load };
    let started = Instant::now();

    let bound = poll(
        &api,
        Duration::from_secs(30),
        "an application binding",
        |r| r["ceiling"]["binding"]["kind"] == "application",
    );
    eprintln!(
        "the verdict named {} {:.1} s after the load started",
        bound["ceiling"]["binding"]["name"],
        started.elapsed().as_secs_f64()
    );
    let binding = &bound["ceiling"]["binding"];
    assert_eq!(binding["name"], LIMIT, "{bound:#}");
    let allowed = haproxy::allowed(CAP) as f64;
    let max = binding["max_connections"]
        .as_u64()
        .expect("max_connections") as f64;
    assert!(
        (max - allowed).abs() <= allowed * 0.01,
        "c1m says {max}, haproxy allows {allowed}: {bound:#}"
    );

    let hit = poll(
        &api,
        Duration::from_secs(30),
        "evidence of the cap",
        has_evidence,
    );
    eprintln!(
        "{LIMIT} had evidence {:.1} s after the load started",
        started.elapsed().as_secs_f64()
    );
    let limit = entry(&hit, LIMIT).unwrap();
    assert_eq!(limit["kind"], "application", "{limit:#}");
    assert_eq!(limit["exceeded"], true, "{limit:#}");
    let source = limit["source"].as_str().unwrap_or_default();
    assert!(source.ends_with("haproxy.cfg:2"), "{limit:#}");
    for field in ["explanation", "remedy"] {
        assert!(
            limit[field].as_str().is_some_and(|text| !text.is_empty()),
            "{limit:#}"
        );
    }

    drop(load);
    let stopped = Instant::now();
    poll(
        &api,
        Duration::from_secs(20),
        "the limit no longer exceeded",
        |r| entry(r, LIMIT).is_some_and(|limit| limit["exceeded"] == false),
    );
    eprintln!(
        "{LIMIT} cleared {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
}
