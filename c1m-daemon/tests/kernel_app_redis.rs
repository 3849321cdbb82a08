//! End to end: a real redis with `--maxclients 200`, watched by `c1m-daemon
//! run` and driven past its cap by c1m's own load generator (silent
//! connections: redis counts a client from its accept). The ceiling must
//! name `redis.maxclients` with what redis really serves, show evidence
//! while the cap is hit, and clear it once the load stops.

mod common;

use std::time::{Duration, Instant};

use common::{api::*, *};

const LIMIT: &str = "redis.maxclients";

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
    let (read, json) = poll_until(&api, Duration::from_secs(10), |json| {
        limit(json, LIMIT).is_some()
    });
    assert!(read, "no {LIMIT} in the ceiling before the load: {json:#}");

    let started = Instant::now();
    let load = spawn_load(&[], &server.addr.to_string(), cap + 50, HOLD);

    let json = application_binding(&api, LIMIT, started);
    let entry = binds_at(&json, LIMIT, allowed, "redis serves");
    assert!(
        entry["source"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("CONFIG GET maxclients on {}", server.addr))),
        "{entry:#}"
    );
    eprintln!("{entry:#}");

    drop(load);
    cleared(&api, LIMIT);
}
