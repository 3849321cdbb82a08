//! The running daemon's API as the kernel tests read it: the report, one
//! limit in it, and polling the report until something holds.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::http_get;

/// How long a load past the cap holds its connections, and how it gives
/// up on the ones the server does not take.
pub const HOLD: &[&str] = &[
    "--hold",
    "60s",
    "--connect-timeout",
    "1s",
    "--stall-timeout",
    "2s",
];

/// The latest report; `None` before the first sample (503). Any other
/// status than 200 panics.
pub fn try_report(api: &str) -> Option<Value> {
    let (status, body) = http_get(api, "/api/v1/report");
    match status {
        200 => Some(serde_json::from_str(&body).unwrap()),
        503 => None,
        _ => panic!("{status}: {body}"),
    }
}

/// The latest report, or `Null` before the first sample.
pub fn report(api: &str) -> Value {
    try_report(api).unwrap_or_default()
}

/// The limit called `name` in the report's ceiling.
pub fn limit<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["ceiling"]["limits"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

/// Whether the limit `name` shows evidence that it is being hit.
pub fn has_evidence(report: &Value, name: &str) -> bool {
    limit(report, name)
        .and_then(|l| l["evidence"].as_array())
        .is_some_and(|evidence| !evidence.is_empty())
}

/// Poll the report every 500 ms until `done` holds (never asked before
/// the first sample); whether it did within `within`, and the last report
/// either way.
pub fn poll_until(api: &str, within: Duration, done: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + within;
    loop {
        let json = report(api);
        if !json.is_null() && done(&json) {
            return (true, json);
        }
        if Instant::now() >= deadline {
            return (false, json);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// [`poll_until`] `done` holds; panics with the last report after
/// `within`.
pub fn poll(api: &str, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let (seen, json) = poll_until(api, within, done);
    assert!(
        seen,
        "timed out after {within:?} waiting for {what}: {json:#}"
    );
    json
}

/// Wait up to 30 s for an application limit to bind while `name` shows
/// evidence, and say how long after `started` (the load) it took: the
/// report.
pub fn application_binding(api: &str, name: &str, started: Instant) -> Value {
    let (named, json) = poll_until(api, Duration::from_secs(30), |json| {
        json["ceiling"]["binding"]["kind"] == "application" && has_evidence(json, name)
    });
    assert!(
        named,
        "no application limit with evidence binds after 30 s: {json:#}"
    );
    eprintln!(
        "the verdict named {name} {:.1} s after the load started",
        started.elapsed().as_secs_f64()
    );
    json
}

/// Once the load is gone, wait up to 20 s for `name` to be no longer
/// exceeded, and say how long it took.
pub fn cleared(api: &str, name: &str) {
    let stopped = Instant::now();
    let (cleared, json) = poll_until(api, Duration::from_secs(20), |json| {
        limit(json, name).is_some_and(|l| l["exceeded"] == false)
    });
    assert!(
        cleared,
        "{name} still exceeded 20 s after the load stopped: {json:#}"
    );
    eprintln!(
        "{name} cleared {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
}

/// Assert that the binding limit is `name` at `allowed` connections
/// (within 1%), what the server really does (`serves`: "redis serves"),
/// and that `name` is an application limit: its entry.
pub fn binds_at<'a>(json: &'a Value, name: &str, allowed: f64, serves: &str) -> &'a Value {
    let binding = &json["ceiling"]["binding"];
    assert_eq!(binding["name"], name, "{json:#}");
    let max = binding["max_connections"].as_f64().unwrap();
    assert!(
        (max - allowed).abs() <= allowed * 0.01,
        "c1m says {max}, {serves} {allowed}: {json:#}"
    );
    let entry = limit(json, name).unwrap();
    assert_eq!(entry["kind"], "application", "{entry:#}");
    entry
}
