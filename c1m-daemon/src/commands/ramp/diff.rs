//! `c1m-daemon diff A.json B.json`: what changed between two ramps:
//! connections reached, why each stopped and the binding limit, every
//! limit of the ceiling whose value or allowance moved, costs per
//! connection (beyond 5%), the floor, and the box (kernel, CPUs, memory,
//! sysctls, rlimits).

use std::{collections::BTreeSet, path::Path};

use anyhow::Context as _;
use serde::Serialize;

use super::result::{Ceiling, RampResult};
use crate::cli::DiffArgs;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What changed, e.g. `reached`, `ceiling.redis.maxclients`,
    /// `sysctl net.core.somaxconn`.
    pub what: String,
    pub before: String,
    pub after: String,
}

pub fn run(args: &DiffArgs) -> anyhow::Result<()> {
    let (a, b) = (read(&args.before)?, read(&args.after)?);
    let changes = changes(&a, &b);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "before": args.before, "after": args.after, "changes": changes
            }))?
        );
    } else if changes.is_empty() {
        println!(
            "No differences between {} and {}.",
            args.before.display(),
            args.after.display()
        );
    } else {
        println!("{} -> {}:", args.before.display(), args.after.display());
        let width = changes.iter().map(|c| c.what.len()).max().unwrap_or(0);
        for c in &changes {
            println!("  {:width$}  {} -> {}", c.what, c.before, c.after);
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<RampResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `c1m-daemon ramp --json` file", path.display()))
}

fn show<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("–".to_owned(), ToString::to_string)
}

/// Whether two costs differ by more than 5% (or one is missing).
fn moved(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() > 0.05 * a.abs().max(b.abs()).max(1.0),
        (None, None) => false,
        _ => true,
    }
}

pub fn changes(a: &RampResult, b: &RampResult) -> Vec<Change> {
    let mut out = Vec::new();
    let mut add = |what: &str, before: String, after: String| {
        if before != after {
            out.push(Change {
                what: what.to_owned(),
                before,
                after,
            });
        }
    };
    add("target", a.target.addr.clone(), b.target.addr.clone());
    add("connection", a.connection.clone(), b.connection.clone());
    add(
        "requested",
        a.requested.to_string(),
        b.requested.to_string(),
    );
    add("reached", a.reached.to_string(), b.reached.to_string());
    let reason = |r: &RampResult| {
        r.stop
            .as_ref()
            .map_or("reached N".to_owned(), |s| s.reason.to_string())
    };
    add("stop.reason", reason(a), reason(b));
    let limit = |r: &RampResult| show(&r.stop.as_ref().and_then(|s| s.limit.clone()));
    add("stop.limit", limit(a), limit(b));
    let binding = |c: &Option<Ceiling>| {
        c.as_ref()
            .and_then(|c| c.binding.as_ref())
            .map_or("–".to_owned(), |b| {
                format!("{} at {}", b.name, show(&b.max_connections))
            })
    };
    add("ceiling.binding", binding(&a.ceiling), binding(&b.ceiling));
    // Every limit by name: its value (a cap raised) or where it is set.
    if let (Some(ca), Some(cb)) = (&a.ceiling, &b.ceiling) {
        let names: BTreeSet<&str> = ca
            .limits
            .iter()
            .chain(&cb.limits)
            .map(|l| l.name.as_str())
            .collect();
        for name in names {
            let find = |c: &Ceiling| c.limits.iter().find(|l| l.name == name).cloned();
            let (la, lb) = (find(ca), find(cb));
            let value = |l: &Option<super::result::Limit>| {
                l.as_ref().map_or("absent".to_owned(), |l| {
                    format!("{} ({})", show(&l.value.map(|v| v as u64)), l.source)
                })
            };
            // Allowances follow costs and use; only a changed setting or a
            // limit appearing or going counts as a change of the ceiling.
            add(&format!("ceiling.{name}"), value(&la), value(&lb));
        }
    }
    let mut cost = |what: &str, x: Option<f64>, y: Option<f64>, unit: &str| {
        if moved(x, y) {
            let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}{unit}"));
            out.push(Change {
                what: what.to_owned(),
                before: f(x),
                after: f(y),
            });
        }
    };
    let (ca, cb) = (
        a.cost_per_connection.as_ref(),
        b.cost_per_connection.as_ref(),
    );
    cost(
        "cost.kernel_bytes",
        ca.map(|c| c.kernel_bytes as f64),
        cb.map(|c| c.kernel_bytes as f64),
        " B",
    );
    cost(
        "cost.user_bytes",
        ca.and_then(|c| c.user_per_connection()),
        cb.and_then(|c| c.user_per_connection()),
        " B",
    );
    cost(
        "cost.fds",
        ca.and_then(|c| c.fds_per_connection()),
        cb.and_then(|c| c.fds_per_connection()),
        "",
    );
    let (fa, fb) = (a.floor.as_ref(), b.floor.as_ref());
    cost(
        "floor.kernel_bytes",
        fa.and_then(|f| f.kernel_bytes.map(|k| k as f64)),
        fb.and_then(|f| f.kernel_bytes.map(|k| k as f64)),
        " B",
    );
    cost(
        "floor.user_bytes",
        fa.and_then(|f| f.user_bytes),
        fb.and_then(|f| f.user_bytes),
        " B",
    );
    let (ea, eb) = (&a.environment, &b.environment);
    let mut add = |what: String, before: String, after: String| {
        if before != after {
            out.push(Change {
                what,
                before,
                after,
            });
        }
    };
    add("kernel".into(), ea.kernel.clone(), eb.kernel.clone());
    add("cpus".into(), ea.cpus.to_string(), eb.cpus.to_string());
    add(
        "memory".into(),
        bytesize::ByteSize(ea.memory_bytes).to_string(),
        bytesize::ByteSize(eb.memory_bytes).to_string(),
    );
    add("c1m".into(), ea.c1m_version.clone(), eb.c1m_version.clone());
    for (label, ma, mb) in [
        ("sysctl", &ea.sysctls, &eb.sysctls),
        ("limit", &ea.limits, &eb.limits),
    ] {
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for key in keys {
            add(
                format!("{label} {key}"),
                show(&ma.get(key).cloned()),
                show(&mb.get(key).cloned()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{super::result::*, *};

    fn run(cap: u64, reached: u64, user: f64) -> RampResult {
        let limit = Limit {
            kind: "application".into(),
            name: "redis.maxclients".into(),
            source: "CONFIG GET maxclients".into(),
            value: Some(cap as f64),
            used: None,
            per_connection: None,
            max_connections: Some(cap),
            exceeded: true,
            evidence: vec![],
            explanation: String::new(),
            remedy: String::new(),
        };
        RampResult {
            c1m_version: "0.1.0".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            target: Target {
                addr: "127.0.0.1:6379".into(),
                pid: Some(1),
                name: None,
            },
            connection: "idle".into(),
            requested: 400,
            reached,
            seconds: 3.0,
            stop: Some(Stop {
                reason: FailureClass::ClosedAfterAccept,
                limit: Some("redis.maxclients".into()),
                source: None,
                evidence: vec![],
            }),
            steps: vec![],
            failures: Default::default(),
            errnos: Default::default(),
            connect_latency_us: None,
            cost_per_connection: Some(Cost {
                kernel_bytes: 3000,
                kernel_breakdown: Default::default(),
                kernel_unknown: vec![],
                user_bytes: Some(user as u64),
                user_marginal_bytes: None,
                user_marginal_r2: None,
                fds: Some(1.0),
                fds_marginal: None,
                threads_marginal: None,
                open_fds: 0,
            }),
            ceiling: Some(Ceiling {
                binding: None,
                limits: vec![limit],
                verdict: String::new(),
            }),
            not_measured: None,
            floor: None,
            environment: Environment::default(),
            verdict: String::new(),
        }
    }

    #[test]
    fn a_raised_cap_shows_as_the_change() {
        let (a, b) = (run(300, 300, 2000.0), run(350, 350, 2020.0));
        let changes = changes(&a, &b);
        let whats: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(
            whats,
            ["reached", "ceiling.redis.maxclients"],
            "{changes:?}"
        );
        assert_eq!(changes[1].before, "300 (CONFIG GET maxclients)");
        assert!(super::changes(&a, &a).is_empty());
    }

    #[test]
    fn costs_change_beyond_five_percent() {
        let mut b = run(300, 300, 3000.0);
        b.environment
            .sysctls
            .insert("net.core.somaxconn".into(), "4096".into());
        let changes = changes(&run(300, 300, 2000.0), &b);
        assert!(
            changes.iter().any(|c| c.what == "cost.user_bytes"),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|c| c.what == "sysctl net.core.somaxconn" && c.before == "–")
        );
    }
}
