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

use std::time::Instant;

use common::{api::*, *};

const LIMIT: &str = "nginx.worker_connections";

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
    let load = spawn_load(&[], &server.addr.to_string(), cap + 50, HOLD);

    let json = application_binding(&api, LIMIT, started);
    let entry = binds_at(&json, LIMIT, allowed, "nginx holds");
    let conf = server.dir.0.join("nginx.conf");
    assert_eq!(
        entry["source"].as_str(),
        Some(format!("{}:6", conf.display()).as_str()),
        "{entry:#}"
    );
    eprintln!("evidence: {:#}", entry["evidence"]);

    drop((load, busy));
    cleared(&api, LIMIT);
}
