//! End-to-end: a real PostgreSQL started with `max_connections = 200`,
//! watched by `c1m-daemon run`, driven past its cap by sessions of an
//! ordinary role; the verdict must name `postgresql.max_connections` at the
//! 197 sessions such a role gets, with evidence, and let go once the
//! sessions close.
//!
//! The sessions come from the protocol client in `common::postgresql`, not
//! from `c1m-daemon load`: postgres holds raw TCP connections in a backend
//! each, unrefused, for authentication_timeout (60 s), and closes load's
//! messages as invalid startup packets, so load never opens a session.

mod common;

use std::time::{Duration, Instant};

use common::{api::*, postgresql, *};

const CAP: u64 = 200;
const NAME: &str = "postgresql.max_connections";

#[test]
fn postgresql_max_connections_binds_when_sessions_hit_it() {
    if !kernel_tests_allowed("postgresql max_connections") {
        return;
    }
    let Some(pg) = postgresql::start(CAP) else {
        return;
    };
    let (_run, _lines, api) = spawn_run_with_api(pg.pid, &[]);
    let started = Instant::now();
    let sessions = postgresql::Sessions::hold(pg.addr, CAP + 50);

    let deadline = started + Duration::from_secs(30);
    let mut named_after = None;
    let report = loop {
        let report = common::api::report(&api);
        let binding = &report["ceiling"]["binding"];
        if binding["kind"] == "application" && binding["name"] == NAME {
            named_after.get_or_insert(started.elapsed());
            if has_evidence(&report, NAME) && sessions.refused() > 0 {
                break report;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no verdict naming {NAME} with evidence 30 s after the sessions started ({} open, \
             {} refused: {}): {report:#}",
            sessions.open(),
            sessions.refused(),
            sessions.last_refusal()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "postgresql: the verdict named {NAME} {:.1} s after the sessions started, with \
         evidence after {:.1} s; {} sessions open, {} refused ({})",
        named_after.unwrap().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        sessions.open(),
        sessions.refused(),
        sessions.last_refusal()
    );
    // What the server really let in: an ordinary role gets the cap minus
    // the 3 slots reserved for superusers.
    assert_eq!(sessions.open(), postgresql::allowed(CAP), "{report:#}");
    assert!(
        sessions.last_refusal().contains("reserved"),
        "{}",
        sessions.last_refusal()
    );
    let binding = &report["ceiling"]["binding"];
    let max = binding["max_connections"].as_u64().unwrap() as f64;
    let allowed = postgresql::allowed(CAP) as f64;
    assert!(
        (max - allowed).abs() <= allowed * 0.01,
        "binding max_connections {max}, the server allows {allowed}: {report:#}"
    );
    let limit = limit(&report, NAME).unwrap();
    eprintln!("postgresql: the limit in the report: {limit:#}");
    assert_eq!(limit["kind"], "application", "{limit:#}");
    assert_eq!(limit["exceeded"], true, "{limit:#}");

    drop(sessions);
    let stopped = Instant::now();
    loop {
        let report = common::api::report(&api);
        if common::api::limit(&report, NAME).is_some_and(|l| l["exceeded"] == false) {
            eprintln!(
                "postgresql: {NAME} no longer exceeded {:.1} s after the sessions closed",
                stopped.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "{NAME} still exceeded 20 s after the sessions closed: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
