//! What `ramp --json` writes and `diff` and `--baseline` read back: typed
//! serde records of a ramp. The cost and the ceiling are the report's own
//! (`cost_per_connection`, `ceiling`), kept with owned strings so they
//! read back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why connections failed, by class: what the client saw, named so a
/// reader can tell a server's cap (closed after accept) from a full accept
/// queue (timed out) or the load side's own limit (its errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// ECONNREFUSED: nothing listens, or the listener's queue refused it.
    Refused,
    /// ECONNRESET, EPIPE, ECONNABORTED.
    Reset,
    /// ETIMEDOUT: no handshake or no answer within --connect-timeout.
    TimedOut,
    /// Timed out while the target's listeners dropped connections.
    AcceptQueueFull,
    /// The server accepted, then closed before answering.
    ClosedAfterAccept,
    /// The server answered something else than --expect (or not HTTP).
    UnexpectedReply,
    /// The load side's own errno: EADDRNOTAVAIL (ports), EMFILE, ENFILE...
    LoadSide,
    /// The box's memory would not hold the next step.
    MemoryPressure,
    /// The target process exited.
    TargetExited,
    /// No connect succeeded for a while, without errors.
    Stalled,
    /// Ctrl-C, SIGTERM or --max-duration.
    Interrupted,
}

impl FailureClass {
    /// The class of a failure the load generator counted by name.
    pub fn of_errno(name: &str) -> FailureClass {
        match name {
            "ECONNREFUSED" => FailureClass::Refused,
            "ECONNRESET" | "EPIPE" | "ECONNABORTED" | "ConnectionReset" | "BrokenPipe" => {
                FailureClass::Reset
            }
            "ETIMEDOUT" | "TimedOut" => FailureClass::TimedOut,
            "UnexpectedEof" => FailureClass::ClosedAfterAccept,
            "InvalidData" | "Other" => FailureClass::UnexpectedReply,
            _ => FailureClass::LoadSide,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Refused => "refused",
            FailureClass::Reset => "reset",
            FailureClass::TimedOut => "timed_out",
            FailureClass::AcceptQueueFull => "accept_queue_full",
            FailureClass::ClosedAfterAccept => "closed_after_accept",
            FailureClass::UnexpectedReply => "unexpected_reply",
            FailureClass::LoadSide => "load_side",
            FailureClass::MemoryPressure => "memory_pressure",
            FailureClass::TargetExited => "target_exited",
            FailureClass::Stalled => "stalled",
            FailureClass::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failures by errno name -> by class.
pub fn classify(errnos: &BTreeMap<String, u64>) -> BTreeMap<FailureClass, u64> {
    let mut classes = BTreeMap::new();
    for (name, n) in errnos {
        *classes.entry(FailureClass::of_errno(name)).or_insert(0) += n;
    }
    classes
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampResult {
    pub c1m_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub target: Target,
    /// What each connection did: `idle`, or the greeting in words.
    pub connection: String,
    pub requested: u64,
    /// Connections open at once at the end of the ramp (answered).
    pub reached: u64,
    pub seconds: f64,
    /// Why it stopped short; `null` when it reached `requested`.
    pub stop: Option<Stop>,
    pub steps: Vec<Step>,
    /// Failures over the whole ramp, by class and by errno.
    pub failures: BTreeMap<FailureClass, u64>,
    pub errnos: BTreeMap<String, u64>,
    pub connect_latency_us: Option<Percentiles>,
    /// The report's cost per connection at the end (with --pid).
    pub cost_per_connection: Option<Cost>,
    /// The report's ceiling at the end, connections still open (with --pid).
    pub ceiling: Option<Ceiling>,
    /// What this run could not see (a remote target: the server side).
    pub not_measured: Option<String>,
    /// The echo server's cost on this box (`null` with --no-floor).
    pub floor: Option<Floor>,
    pub environment: Environment,
    /// The verdict as printed.
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub addr: String,
    pub pid: Option<u32>,
    /// The process name (/proc/PID/comm).
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    pub reason: FailureClass,
    /// The limit that binds (the ceiling's or the load side's name).
    pub limit: Option<String>,
    /// Where that limit is set.
    pub source: Option<String>,
    /// What showed it, in words.
    pub evidence: Vec<String>,
}

/// One step: the count once its connections were open, and the cost per
/// connection sampled then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub connections: u64,
    /// Since the start of the ramp.
    pub seconds: f64,
    pub kernel_bytes: Option<u64>,
    /// The target's own memory (Pss_Anon + Pss_Shmem) per connection.
    pub user_bytes: Option<u64>,
    pub fds: Option<f64>,
    pub failures: BTreeMap<FailureClass, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
}

/// The report's `cost_per_connection`, readable back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub kernel_bytes: u64,
    #[serde(default)]
    pub kernel_breakdown: BTreeMap<String, u64>,
    #[serde(default)]
    pub kernel_unknown: Vec<String>,
    pub user_bytes: Option<u64>,
    pub user_marginal_bytes: Option<f64>,
    pub user_marginal_r2: Option<f64>,
    pub fds: Option<f64>,
    pub fds_marginal: Option<f64>,
    #[serde(default)]
    pub threads_marginal: Option<f64>,
    #[serde(default)]
    pub open_fds: u64,
}

impl Cost {
    /// Userspace bytes per connection: the marginal figure when its fit is
    /// good (r2 >= 0.9, as the ceiling uses it), else the average.
    pub fn user_per_connection(&self) -> Option<f64> {
        match (self.user_marginal_bytes, self.user_marginal_r2) {
            (Some(m), Some(r2)) if r2 >= 0.9 => Some(m.max(0.0)),
            _ => self.user_bytes.map(|b| b as f64),
        }
    }

    pub fn fds_per_connection(&self) -> Option<f64> {
        self.fds_marginal.or(self.fds)
    }
}

/// The report's `ceiling`, readable back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub binding: Option<Binding>,
    pub limits: Vec<Limit>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub kind: String,
    pub name: String,
    pub source: String,
    pub max_connections: Option<u64>,
    pub exceeded: bool,
    #[serde(default)]
    pub evidence: Vec<String>,
    pub explanation: String,
    pub remedy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub kind: String,
    pub name: String,
    pub source: String,
    pub value: Option<f64>,
    pub used: Option<f64>,
    pub per_connection: Option<f64>,
    pub max_connections: Option<u64>,
    pub exceeded: bool,
    #[serde(default)]
    pub evidence: Vec<String>,
    pub explanation: String,
    pub remedy: String,
}

/// The echo server's cost per connection on this box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    pub kernel_bytes: Option<u64>,
    pub user_bytes: Option<f64>,
    pub fds: Option<f64>,
    pub connections: u64,
    /// `ramped here` or the --baseline file it came from.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Environment {
    pub kernel: String,
    pub cpus: u64,
    pub memory_bytes: u64,
    pub sysctls: BTreeMap<String, String>,
    /// Rlimits of the target's process and of c1m's load (`nofile ...`).
    pub limits: BTreeMap<String, String>,
    pub c1m_version: String,
}

/// Convert one of the report's serializable types to its record here
/// (same field names).
pub fn record<T: Serialize, R: for<'de> Deserialize<'de>>(value: &T) -> anyhow::Result<R> {
    Ok(serde_json::from_value(serde_json::to_value(value)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_fall_into_classes() {
        let errnos: BTreeMap<String, u64> = [
            ("ECONNREFUSED", 2),
            ("UnexpectedEof", 3),
            ("ECONNRESET", 1),
            ("EPIPE", 1),
            ("EADDRNOTAVAIL", 5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let classes = classify(&errnos);
        assert_eq!(classes[&FailureClass::Refused], 2);
        assert_eq!(classes[&FailureClass::ClosedAfterAccept], 3);
        assert_eq!(classes[&FailureClass::Reset], 2);
        assert_eq!(classes[&FailureClass::LoadSide], 5);
        let json = serde_json::to_string(&classes).unwrap();
        assert!(json.contains(r#""closed_after_accept":3"#), "{json}");
        assert_eq!(
            serde_json::from_str::<BTreeMap<FailureClass, u64>>(&json).unwrap(),
            classes
        );
    }

    #[test]
    fn user_cost_is_marginal_only_with_a_good_fit() {
        let mut cost = Cost {
            kernel_bytes: 3000,
            kernel_breakdown: Default::default(),
            kernel_unknown: vec![],
            user_bytes: Some(900),
            user_marginal_bytes: Some(500.0),
            user_marginal_r2: Some(0.99),
            fds: Some(1.1),
            fds_marginal: Some(1.0),
            threads_marginal: None,
            open_fds: 0,
        };
        assert_eq!(cost.user_per_connection(), Some(500.0));
        cost.user_marginal_r2 = Some(0.5);
        assert_eq!(cost.user_per_connection(), Some(900.0));
    }
}
