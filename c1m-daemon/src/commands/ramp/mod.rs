//! `c1m-daemon ramp --target HOST:PORT [--pid PID]`: ramp the user's own
//! server in steps with the bundled load generator, price each step, stop
//! at N or at the first failure class and name the limit behind it, with
//! the echo floor beside it; write JSON (`--json`) and a self-contained
//! HTML report (`--report`). `diff` compares two such JSON files.
//!
//! Exit codes: 0 reached N, 4 a limit stopped it (or Ctrl-C), 3 the target
//! exited.

pub mod diff;
mod engine;
mod environment;
mod floor;
mod html;
pub mod result;
pub mod selftest;

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use bytesize::ByteSize;
use tokio::sync::watch;

use self::{
    engine::{Live, Plan},
    result::{
        Ceiling, Cost, Environment, FailureClass, Floor, Percentiles, RampResult, Stop, Target,
        record,
    },
};
use crate::exit::Exit;
use crate::{
    api::{self, Snapshot},
    cli::RampArgs,
    human::human_count,
    loadgen::{load::latency::percentile_us, protocol::Verdict},
    monitor::Sampler,
    system::process::TargetProcess,
};

pub fn run(args: &RampArgs) -> anyhow::Result<Exit> {
    if args.connections == 0 {
        anyhow::bail!("--connections must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(ramp(args))?;
    println!("{}", result.verdict);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("(JSON written to {})", path.display());
    }
    if let Some(path) = &args.report {
        let page = html::render(&result)?;
        std::fs::write(path, &page).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "(HTML report written to {}, {})",
            path.display(),
            ByteSize(page.len() as u64)
        );
    }
    Ok(match result.stop.as_ref().map(|s| s.reason) {
        None => Exit::Ok,
        Some(FailureClass::TargetExited) => Exit::TargetGone,
        Some(_) => Exit::LimitHit,
    })
}

async fn ramp(args: &RampArgs) -> anyhow::Result<RampResult> {
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let greeting = args.greeting.greeting()?;
    let target_process = args.pid.map(TargetProcess::resolve).transpose()?;
    let environment = environment::read_environment(args.pid);
    let deadline = tokio::time::Instant::now() + args.max_duration;
    let interval = Duration::from_secs(1);

    // The dashboard, as `run` serves it (only with a pid: it shows the
    // target's report).
    let (publish, latest) = watch::channel(Snapshot::default());
    if args.pid.is_some() {
        let listener = api::bind(args.listen).await?;
        let access = api::access::Access::new(listener.local_addr()?, args.token.clone())?;
        let api_addr = listener.local_addr()?;
        api::serve_in_background(listener, latest, access)?;
        eprintln!("c1m ramp: dashboard at http://{api_addr}/");
    }
    let mut live = Live {
        sampler: None,
        publish: &publish,
        interval,
        samples: 0,
    };

    let floor = if args.pid.is_none() {
        None
    } else if let Some(path) = &args.baseline {
        Some(floor::read_baseline(path)?)
    } else if args.no_floor {
        None
    } else {
        Some(floor::ramp_echo(args.connections, args.steps, deadline, &mut live).await?)
    };

    let connection = greeting
        .as_ref()
        .map_or("idle (connect only)".to_owned(), |g| g.describe());
    eprintln!(
        "c1m ramp: {} connections to {} in {} steps, each {connection}{}",
        human_count(args.connections),
        args.target,
        args.steps,
        match &target_process {
            Some(p) => format!("; target pid {} ({})", p.tgid, p.comm),
            None => "; no --pid: client-side figures only".to_owned(),
        }
    );
    let mut sampler = match &target_process {
        Some(p) => Some(Sampler::start(vec![p.clone()], true, None)?),
        None => None,
    };
    live.sampler = sampler.as_mut();
    let plan = Plan {
        target: args.target,
        connections: args.connections,
        steps: args.steps,
        rate: args.rate,
        source_ips: args.source_ips.clone().map(|s| s.0),
        greeting,
        message_bytes: 0,
        connect_timeout: args.connect_timeout,
        hold: args.hold,
        deadline,
        phase: "ramp",
        server_pid: args.pid,
    };
    let outcome = engine::ramp(&plan, &mut live).await?;
    drop(sampler);
    let target = Target {
        addr: args.target.to_string(),
        pid: args.pid,
        name: target_process.map(|p| p.comm),
    };
    let mut result = assemble(
        &outcome,
        started_at,
        target,
        connection,
        args.connections,
        floor,
        environment,
    )?;
    result.verdict = verdict_text(&result);
    Ok(result)
}

/// The JSON record of a ramp from its outcome (the verdict left to the
/// command).
fn assemble(
    outcome: &engine::Outcome,
    started_at: String,
    target: Target,
    connection: String,
    requested: u64,
    floor: Option<Floor>,
    environment: Environment,
) -> anyhow::Result<RampResult> {
    let cost: Option<Cost> = outcome
        .report
        .as_ref()
        .map(|r| record(&r.cost_per_connection))
        .transpose()?;
    let ceiling: Option<Ceiling> = outcome
        .report
        .as_ref()
        .and_then(|r| r.ceiling.as_ref())
        .map(record)
        .transpose()?;
    let stop = outcome.stopped.as_ref().map(|(class, verdict)| {
        stop_cause(
            *class,
            ceiling.as_ref(),
            verdict.as_ref(),
            outcome.reached,
            &outcome.errnos,
        )
    });
    Ok(RampResult {
        c1m_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        not_measured: target.pid.is_none().then(|| {
            "the server side: its cost per connection (kernel, userspace, fds) and its limits; \
             run the ramp on the server's box with --pid to see them"
                .to_owned()
        }),
        target,
        connection,
        requested,
        reached: outcome.reached,
        seconds: outcome.seconds,
        stop,
        steps: outcome.steps.clone(),
        failures: result::classify(&outcome.errnos),
        errnos: outcome.errnos.clone(),
        connect_latency_us: percentiles(&outcome.latency_us),
        cost_per_connection: cost,
        ceiling,
        floor,
        environment,
        verdict: String::new(),
    })
}

fn percentiles(histogram: &[u64]) -> Option<Percentiles> {
    Some(Percentiles {
        p50: percentile_us(histogram, 50.0)?,
        p90: percentile_us(histogram, 90.0)?,
        p99: percentile_us(histogram, 99.0)?,
    })
}

/// Why the ramp stopped, and the limit behind it: the load side's own
/// verdict for its own errnos; else the ceiling's limit being hit, else
/// one whose allowance matches the count reached (within 5%), else the
/// binding one; else the load side's verdict.
fn stop_cause(
    class: FailureClass,
    ceiling: Option<&Ceiling>,
    load_verdict: Option<&Verdict>,
    reached: u64,
    errnos: &BTreeMap<String, u64>,
) -> Stop {
    let mut evidence = Vec::new();
    if !errnos.is_empty() {
        evidence.push(format!(
            "failed connections by errno: {}",
            errnos
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let from_load = |evidence: &mut Vec<String>| {
        load_verdict.map(|v| {
            evidence.push(format!("{}: {}", v.side, v.explanation));
            (v.limit.clone(), None)
        })
    };
    let matches_count = |max: Option<u64>| {
        max.is_some_and(|m| (m as f64 - reached as f64).abs() <= (reached as f64 * 0.05).max(2.0))
    };
    let from_ceiling = |evidence: &mut Vec<String>| {
        let ceiling = ceiling?;
        let limit = ceiling.limits.iter().find(|l| l.exceeded).or_else(|| {
            ceiling
                .limits
                .iter()
                .find(|l| matches_count(l.max_connections))
        })?;
        evidence.extend(limit.evidence.iter().cloned());
        Some((limit.name.clone(), Some(limit.source.clone())))
    };
    let found = match class {
        FailureClass::LoadSide => from_load(&mut evidence),
        FailureClass::Interrupted => None,
        FailureClass::TargetExited => {
            evidence.push("the target process exited during the ramp".into());
            None
        }
        FailureClass::MemoryPressure => ceiling.and_then(|c| {
            let l = c
                .limits
                .iter()
                .find(|l| matches!(l.name.as_str(), "memory" | "cgroup_memory"))?;
            evidence.push(format!(
                "{} would allow only {} more connections",
                l.name,
                l.max_connections.unwrap_or(0)
            ));
            Some((l.name.clone(), Some(l.source.clone())))
        }),
        _ => from_ceiling(&mut evidence)
            .or_else(|| from_load(&mut evidence))
            .or_else(|| {
                // Nothing c1m reads is at this count: say what the tightest
                // allows rather than blame it.
                if let Some(b) = ceiling.and_then(|c| c.binding.as_ref()) {
                    evidence.push(format!(
                        "no limit c1m reads allows about {reached} connections (the tightest, {}, \
                         allows {}): the server turns connections away for a reason of its own",
                        b.name,
                        b.max_connections.map_or("no count".into(), human_count)
                    ));
                }
                None
            }),
    };
    // Timeouts while the target's listeners drop connections: its accept
    // queue is full.
    let reason = match (&found, class) {
        (Some((name, _)), FailureClass::TimedOut) if name == "accept_backlog" => {
            FailureClass::AcceptQueueFull
        }
        _ => class,
    };
    let (limit, source) = found.map_or((None, None), |(l, s)| (Some(l), s));
    Stop {
        reason,
        limit,
        source,
        evidence,
    }
}

fn bytes(b: f64) -> String {
    ByteSize(b.max(0.0).round() as u64).to_string()
}

/// The verdict as printed and kept in the JSON.
fn verdict_text(r: &RampResult) -> String {
    let mut lines = match &r.stop {
        None => vec![format!(
            "Reached {} connections to {} in {:.0} s: the target held them all.",
            human_count(r.reached),
            r.target.addr,
            r.seconds
        )],
        Some(_) => stop_lines(r),
    };
    if let Some(cost) = &r.cost_per_connection {
        let user = cost.user_per_connection();
        let mut line = format!(
            "Your server, per connection: kernel {}, userspace {}, {:.2} fds",
            ByteSize(cost.kernel_bytes),
            user.map_or("unknown".into(), bytes),
            cost.fds_per_connection().unwrap_or(0.0)
        );
        if let Some(floor) = &r.floor {
            line.push_str(&format!(
                "; echo floor: kernel {}, userspace {}",
                floor
                    .kernel_bytes
                    .map_or("unknown".into(), |b| ByteSize(b).to_string()),
                floor.user_bytes.map_or("unknown".into(), bytes)
            ));
            if let (Some(u), Some(f)) = (user, floor.user_bytes) {
                let how = match (cost.user_marginal_bytes, cost.user_marginal_r2) {
                    (Some(_), Some(r2)) if r2 >= 0.9 => format!("marginal, r2 {r2:.2}"),
                    _ => "average".to_owned(),
                };
                line.push_str(&if u >= f {
                    format!(
                        "; your server adds {} per connection in userspace ({how})",
                        bytes(u - f)
                    )
                } else {
                    format!(
                        "; your server uses {} less than the floor per connection in userspace ({how})",
                        bytes(f - u)
                    )
                });
            }
        }
        line.push('.');
        lines.push(line);
    }
    if let Some(floor) = &r.floor {
        lines.push(format!("  (floor: {})", floor.source));
    }
    lines.extend(client_line(r));
    if let Some(what) = &r.not_measured {
        lines.push(format!("Not measured: {what}."));
    }
    if let Some(ceiling) = &r.ceiling {
        lines.push(ceiling.verdict.clone());
    }
    lines.join("\n")
}

/// Where the ramp stopped short, the limit, and what showed it.
fn stop_lines(r: &RampResult) -> Vec<String> {
    let Some(stop) = &r.stop else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "Stopped at {} of {} connections to {} after {:.0} s: {}{}.",
        human_count(r.reached),
        human_count(r.requested),
        r.target.addr,
        r.seconds,
        stop.reason,
        match (&stop.limit, &stop.source) {
            (Some(l), Some(s)) => format!("; the limit: {l} (set at {s})"),
            (Some(l), None) => format!("; the limit: {l}"),
            _ => String::new(),
        }
    )];
    for e in &stop.evidence {
        lines.push(format!("  seen: {e}"));
    }
    lines
}

/// What the client saw: the time to open a connection, the failures.
fn client_line(r: &RampResult) -> Option<String> {
    let l = r.connect_latency_us.as_ref()?;
    Some(format!(
        "Client side: open in p50 {} / p90 {} / p99 {} (connect{}); failures {}.",
        micros(l.p50),
        micros(l.p90),
        micros(l.p99),
        if r.connection.starts_with("idle") {
            ""
        } else {
            " and answer"
        },
        if r.failures.is_empty() {
            "none".to_owned()
        } else {
            r.failures
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ))
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::{result::Limit, *};

    fn limit(name: &str, max: u64, exceeded: bool) -> Limit {
        Limit {
            kind: "application".into(),
            name: name.into(),
            source: format!("{name} source"),
            value: None,
            used: None,
            per_connection: None,
            max_connections: Some(max),
            exceeded,
            evidence: if exceeded {
                vec!["refusing".into()]
            } else {
                vec![]
            },
            explanation: String::new(),
            remedy: String::new(),
        }
    }

    #[test]
    fn a_limit_being_hit_names_the_stop() {
        let ceiling = Ceiling {
            binding: None,
            limits: vec![
                limit("nofile", 1000, false),
                limit("redis.maxclients", 300, true),
            ],
            verdict: String::new(),
        };
        let errnos = [("UnexpectedEof".to_owned(), 12)].into_iter().collect();
        let stop = stop_cause(
            FailureClass::ClosedAfterAccept,
            Some(&ceiling),
            None,
            300,
            &errnos,
        );
        assert_eq!(stop.limit.as_deref(), Some("redis.maxclients"));
        assert_eq!(stop.source.as_deref(), Some("redis.maxclients source"));
        assert!(stop.evidence.iter().any(|e| e == "refusing"), "{stop:?}");
        assert!(stop.evidence[0].contains("UnexpectedEof 12"), "{stop:?}");
    }

    #[test]
    fn without_signs_the_limit_matching_the_count_names_it() {
        let ceiling = Ceiling {
            binding: None,
            limits: vec![
                limit("nofile", 5000, false),
                limit("nginx.worker_connections", 298, false),
            ],
            verdict: String::new(),
        };
        let stop = stop_cause(
            FailureClass::Reset,
            Some(&ceiling),
            None,
            300,
            &BTreeMap::new(),
        );
        assert_eq!(stop.limit.as_deref(), Some("nginx.worker_connections"));
    }

    #[test]
    fn the_load_sides_errno_names_its_own_limit() {
        let verdict = Verdict {
            side: crate::loadgen::protocol::Side::Client,
            errno: Some("EADDRNOTAVAIL".into()),
            limit: "ephemeral_ports".into(),
            explanation: "no port left".into(),
        };
        let stop = stop_cause(
            FailureClass::LoadSide,
            None,
            Some(&verdict),
            28_000,
            &BTreeMap::new(),
        );
        assert_eq!(stop.limit.as_deref(), Some("ephemeral_ports"));
        assert!(stop.evidence[0].contains("client side"), "{stop:?}");
    }
}
