//! End to end: a real memcached with `-c 200`, watched by `c1m-daemon run`
//! and driven past its cap by c1m's own load generator. The ceiling must
//! name `memcached.conn_limit` with what memcached really serves, show
//! evidence while the cap is hit, and clear it once the load stops.

mod common;

use std::time::Instant;

use common::{api::*, *};

const LIMIT: &str = "memcached.conn_limit";

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
    let load = spawn_load(
        &[],
        &server.addr.to_string(),
        cap + 50,
        &[
            "--hold",
            "60s",
            "--rate",
            "100/s",
            "--connect-timeout",
            "1s",
            "--stall-timeout",
            "60s",
        ],
    );

    let json = application_binding(&api, LIMIT, started);
    let entry = binds_at(&json, LIMIT, allowed, "memcached serves");
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("-c {cap}"))),
        "{entry:#}"
    );

    drop(load);
    cleared(&api, LIMIT);
}
