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

use std::time::{Duration, Instant};

use common::{api::*, *};

const CAP: u64 = 200;
const LIMIT: &str = "haproxy.maxconn";

#[test]
fn a_load_past_haproxy_maxconn_binds_as_the_application_limit() {
    if !kernel_tests_allowed("haproxy maxconn") {
        return;
    }
    let Some(server) = haproxy::start(CAP) else {
        return;
    };
    let (_run, _lines, api) = spawn_run_with_api(server.pid, &[]);
    let load = spawn_load(&[], &server.addr.to_string(), 2 * CAP + 50, HOLD);
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

    let hit = poll(&api, Duration::from_secs(30), "evidence of the cap", |r| {
        has_evidence(r, LIMIT)
    });
    eprintln!(
        "{LIMIT} had evidence {:.1} s after the load started",
        started.elapsed().as_secs_f64()
    );
    let limit = limit(&hit, LIMIT).unwrap();
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
    cleared(&api, LIMIT);
}
