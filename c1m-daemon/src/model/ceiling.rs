//! The ceiling as data: every limit that bounds the target's connection
//! count, the connections each allows, and the one that binds first. The
//! analysis (`analysis/limits.rs`) computes it; the report carries it, so
//! the model holds its types and does not import the analysis.

use serde::Serialize;

/// Who sets a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The server caps itself (its configuration, or observed).
    Application,
    /// A limit of the target's processes (rlimits, process counts).
    Process,
    /// The kernel's (sysctls, memory, cgroups).
    Kernel,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub name: &'static str,
    /// Where the value is set: a config file and line, a command-line flag,
    /// a sysctl, an rlimit, a cgroup file.
    pub source: String,
    pub value: Option<f64>,
    pub used: Option<f64>,
    pub per_connection: Option<f64>,
    /// Connections the target could hold under this limit alone; `None`
    /// when it does not bound the count (a rate limit, or not in play).
    pub max_connections: Option<u64>,
    /// Being hit right now by this target: its own signs moved within the
    /// evidence window (refusals, its listeners' drops, its failed accepts).
    pub exceeded: bool,
    /// What c1m observed of it, in words; empty when nothing.
    pub evidence: Vec<String>,
    pub explanation: String,
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Binding {
    pub kind: LimitKind,
    pub name: &'static str,
    pub source: String,
    pub max_connections: Option<u64>,
    pub exceeded: bool,
    pub evidence: Vec<String>,
    pub explanation: String,
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub binding: Option<Binding>,
    /// Tightest first: limits being hit, then by connections allowed.
    pub limits: Vec<Limit>,
    /// One sentence: the binding limit and the next one.
    pub verdict: String,
    /// The target's own signs over the evidence window that "being hit"
    /// was decided on (refusals, its listeners' queues, failed accepts).
    pub window: super::evidence::WindowEvidence,
    /// Limits that the recent growth runs out, soonest first: one per
    /// limit, only for a quantity that grows (`analysis/forecast.rs`).
    pub forecasts: Vec<Forecast>,
}

/// When a limit runs out at the current rate of growth or churn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The limit's `name` in `limits`.
    pub limit: &'static str,
    pub seconds: f64,
    /// How fast what it counts grows (connections, ports, TIME_WAIT
    /// sockets, conntrack entries per second).
    pub rate_per_second: f64,
    /// One sentence: what runs out, when, at what rate, from what.
    pub basis: String,
}
