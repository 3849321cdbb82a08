//! What c1m's own processes say to each other, typed: one JSON object per
//! line on stdout, each carrying the protocol version `v` and, for events,
//! its name in `event`. Every writer and every reader goes through this
//! file: the echo server and its workers, the load coordinator and its
//! shards, `ramp` and `selftest`, `run --json` ([`RunEvent`]), the tests
//! (`c1m_daemon::protocol`), `xtask bench`
//! (which compiles this same file) and the browser test (which matches
//! `"event":"listening"`). Nothing parses the words of a human banner.
//!
//! This file depends on serde, clap and std only, so `xtask` can include it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The protocol version every line carries; a reader refuses another one
/// rather than misread it.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    message: T,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a c1m protocol line ({0}): {1:?}")]
    Malformed(serde_json::Error, String),
    #[error("c1m protocol version {found}, this binary speaks {VERSION}: {line:?}")]
    Version { found: u32, line: String },
}

/// One line for stdout: the message with the version.
pub fn to_line<T: Serialize>(message: &T) -> String {
    serde_json::to_string(&Envelope {
        v: VERSION,
        message,
    })
    .expect("protocol messages serialize")
}

/// Parse one line written by [`to_line`].
pub fn from_line<T: DeserializeOwned>(line: &str) -> Result<T, ProtocolError> {
    let envelope: Envelope<T> = serde_json::from_str(line.trim())
        .map_err(|err| ProtocolError::Malformed(err, line.to_owned()))?;
    if envelope.v != VERSION {
        return Err(ProtocolError::Version {
            found: envelope.v,
            line: line.to_owned(),
        });
    }
    Ok(envelope.message)
}

// ---- echo server -------------------------------------------------------

/// What `echo --json` prints (and what a worker tells its supervisor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EchoEvent {
    /// First line: the server accepts connections.
    Listening(EchoReady),
    /// Last line: what it served.
    Stats(EchoStats),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReady {
    pub addr: SocketAddr,
    /// The supervisor (or single worker): the process to watch.
    pub pid: u32,
    pub workers: u64,
    /// The worker processes, when there is a supervisor.
    pub worker_pids: Vec<u32>,
}

/// Totals of one echo worker, or of all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoStats {
    pub accepted: u64,
    /// Closed by the peer or on error while serving.
    pub closed: u64,
    /// Still open when the worker stopped (closed by the shutdown).
    pub open_at_exit: u64,
    pub errors: BTreeMap<String, u64>,
}

impl std::ops::AddAssign<&EchoStats> for EchoStats {
    fn add_assign(&mut self, other: &EchoStats) {
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.open_at_exit += other.open_at_exit;
        add_counts(&mut self.errors, &other.errors);
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (name, n) in from {
        *into.entry(name.clone()).or_insert(0) += n;
    }
}

// ---- load shards -------------------------------------------------------

/// Which side closes each connection in churn mode. The side that closes
/// first keeps the TIME_WAIT socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CloseSide {
    Client,
    /// The server closes first: use with `echo --close-after-echo`.
    Server,
}

/// The coordinator's orders to one shard (`load --shard-plan <line>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub target: SocketAddr,
    /// Hold mode: connections to open. Churn mode: connections at a time.
    pub connections: u64,
    /// Connects per second, `None` = as fast as the server accepts.
    pub rate: Option<u64>,
    /// 0 = no messages.
    pub message_bytes: usize,
    pub interval: Duration,
    pub source_ips: Vec<IpAddr>,
    /// Where this shard starts in `source_ips`, so shards spread over them.
    pub source_offset: usize,
    /// Churn mode: who closes, and for how long to churn.
    pub churn: Option<(CloseSide, Duration)>,
    pub connect_timeout: Duration,
    /// Stop ramping when no connection succeeded for this long.
    pub stall_timeout: Duration,
    /// What each connection says once connected (`None`: nothing).
    #[serde(default)]
    pub greeting: Option<Greeting>,
    /// Bind each connection explicitly to a port of this range (this
    /// process's slice of its host shard's slice of the ephemeral ports),
    /// so shards that share a source address never pick the same port.
    /// `None`: the kernel picks the port at connect time.
    #[serde(default)]
    pub source_ports: Option<PortRange>,
}

/// A range of ports, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(self) -> u64 {
        u64::from(self.last.saturating_sub(self.first)) + u64::from(self.first <= self.last)
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Which part of a load spread over hosts this `load` process runs
/// (`load --shard INDEX/COUNT`, INDEX from 0): distinct from the
/// per-process shards ([`ShardPlan`]) one load starts on its own box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostShard {
    pub index: u64,
    pub count: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostShardError {
    #[error(
        "--shard {0:?}: write INDEX/COUNT with INDEX counted from 0, e.g. --shard 2/8 for the third of eight hosts"
    )]
    Syntax(String),
    #[error("--shard {0:?}: COUNT must be at least 1 (the number of hosts sharing the load)")]
    NoShards(String),
    #[error(
        "--shard {text:?}: INDEX counts from 0, so with {count} shards it goes up to {last}; got {index}"
    )]
    IndexTooLarge {
        text: String,
        index: u64,
        count: u64,
        last: u64,
    },
}

impl std::str::FromStr for HostShard {
    type Err = HostShardError;

    fn from_str(text: &str) -> Result<HostShard, HostShardError> {
        let syntax = || HostShardError::Syntax(text.to_owned());
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let number = |s: &str| {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            s.parse::<u64>().map_err(|_| syntax())
        };
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 {
            return Err(HostShardError::NoShards(text.to_owned()));
        }
        if index >= count {
            return Err(HostShardError::IndexTooLarge {
                text: text.to_owned(),
                index,
                count,
                last: count - 1,
            });
        }
        Ok(HostShard { index, count })
    }
}

impl std::fmt::Display for HostShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What each load connection says once connected, so a server that
/// allocates per client on first use is priced as in production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Greeting {
    /// Send `send`, then read until the reply contains `expect` (an empty
    /// `expect` waits for any reply).
    Send { send: Vec<u8>, expect: Vec<u8> },
    /// `GET path HTTP/1.1` with a Host header, keep-alive; the response's
    /// headers and its Content-Length body are read.
    Http { path: String },
}

/// Where a shard is. An unknown name on the wire
/// is an error, never a guess.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    #[default]
    Ramp = 0,
    Hold = 1,
    Churn = 2,
    Closing = 3,
    Done = 4,
    /// Connects stopped completing before the ramp was done.
    Stalled = 5,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Ramp,
        Phase::Hold,
        Phase::Churn,
        Phase::Closing,
        Phase::Done,
        Phase::Stalled,
    ];

    /// The phase stored as `phase as u8`, or `None` for any other number.
    pub fn from_index(index: u64) -> Option<Phase> {
        Phase::ALL.get(usize::try_from(index).ok()?).copied()
    }

    /// Past the ramp: holding, churning, closing, done or stalled.
    pub fn ramped(self) -> bool {
        self != Phase::Ramp
    }
}

/// What a shard has done so far; the load's totals are their sum.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardCounts {
    pub attempts: u64,
    pub connected_total: u64,
    pub closed_total: u64,
    pub open: u64,
    pub dropped_by_server: u64,
    pub messages_ok: u64,
    pub messages_bad: u64,
    pub failures: BTreeMap<String, u64>,
    /// Histogram of connect latencies (buckets as `load/latency.rs` lays
    /// them out).
    #[serde(default)]
    pub connect_latency_us: Vec<u64>,
}

impl std::ops::AddAssign<&ShardCounts> for ShardCounts {
    fn add_assign(&mut self, other: &ShardCounts) {
        self.attempts += other.attempts;
        self.connected_total += other.connected_total;
        self.closed_total += other.closed_total;
        self.open += other.open;
        self.dropped_by_server += other.dropped_by_server;
        self.messages_ok += other.messages_ok;
        self.messages_bad += other.messages_bad;
        add_counts(&mut self.failures, &other.failures);
        // Histograms add bucket by bucket.
        if self.connect_latency_us.len() < other.connect_latency_us.len() {
            self.connect_latency_us
                .resize(other.connect_latency_us.len(), 0);
        }
        for (sum, n) in self
            .connect_latency_us
            .iter_mut()
            .zip(&other.connect_latency_us)
        {
            *sum += n;
        }
    }
}

/// A shard's progress line: its counts and its phase (one JSON object,
/// the counts flattened into it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardProgress {
    #[serde(flatten)]
    pub counts: ShardCounts,
    pub phase: Phase,
}

// ---- load --json -------------------------------------------------------

/// What `load --json` prints: progress every second, `ramped` once when
/// every shard finished its ramp, `done` at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LoadEvent {
    Progress(LoadProgress),
    Ramped(LoadRamped),
    Done(LoadOutcome),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadProgress {
    pub elapsed_ms: u64,
    /// Connections asked for.
    pub target: u64,
    pub open: u64,
    pub connected_total: u64,
    pub closed_total: u64,
    pub rate_per_second: u64,
    pub failures: BTreeMap<String, u64>,
    pub messages_ok: u64,
    pub messages_bad: u64,
    pub dropped_by_server: u64,
    /// `load --shard I/N`: which part of a load spread over hosts this is
    /// (`target` is then this shard's share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_shard: Option<HostShard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRamped {
    pub elapsed_ms: u64,
    pub open: u64,
    pub target: u64,
    pub reached: bool,
    pub failures: BTreeMap<String, u64>,
    pub verdict: Option<Verdict>,
    /// Histogram of connect latencies so far.
    #[serde(default)]
    pub connect_latency_us: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_shard: Option<HostShard>,
}

/// The totals over all shards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadTotals {
    #[serde(flatten)]
    pub counts: ShardCounts,
    /// Shards that stopped ramping because connects stopped completing.
    pub stalled_shards: u64,
    /// Shards past their ramp (holding, stalled, closing or done).
    pub ramped_shards: u64,
    pub done_shards: u64,
}

impl std::ops::AddAssign<&ShardProgress> for LoadTotals {
    fn add_assign(&mut self, p: &ShardProgress) {
        self.counts += &p.counts;
        self.stalled_shards += u64::from(p.phase == Phase::Stalled);
        self.ramped_shards += u64::from(p.phase.ramped());
        self.done_shards += u64::from(p.phase == Phase::Done);
    }
}

/// What a whole load run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadOutcome {
    pub target: SocketAddr,
    pub requested: u64,
    /// Most connections open at once.
    pub peak_open: u64,
    pub reached: bool,
    pub ramp_seconds: f64,
    /// The whole run, ramp, hold (or churn) and close.
    pub elapsed_seconds: f64,
    pub ramp_rate: f64,
    pub processes: u64,
    pub source_ips: usize,
    pub totals: LoadTotals,
    pub verdict: Option<Verdict>,
    /// Churn mode: there is no count to reach, only failures to explain.
    #[serde(skip)]
    pub churned: bool,
    /// `load --shard I/N`: this shard (`requested` is its share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_shard: Option<HostShard>,
}

impl LoadOutcome {
    /// Stopped short of what was asked because a limit was hit: fewer
    /// connections than requested, or a churn that ran into a limit.
    pub fn fell_short(&self) -> bool {
        !(self.reached || self.churned && self.verdict.is_none())
    }
}

/// Which side of the connection a limit is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
    /// A box-wide limit both sides share.
    Box,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client side",
            Side::Server => "server side",
            Side::Box => "box-wide",
        })
    }
}

/// Why a ramp stopped short (the load side's diagnosis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub side: Side,
    /// The errno that showed it, when one did.
    pub errno: Option<String>,
    /// The limit's short name, as the ceiling analysis names it.
    pub limit: String,
    pub explanation: String,
}

/// A line of `run --json`, tagged by `event`. Unlike the lines above these
/// carry no `v`: their shape is documented API that predates the envelope,
/// so they are written and read with [`RunEvent::to_line`] and
/// [`RunEvent::from_line`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// First line: the probes are attached and the API serves.
    Attached(RunAttached),
    /// One per interval.
    Sample(RunSample),
}

impl RunEvent {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("run events serialize")
    }

    pub fn from_line(line: &str) -> Result<RunEvent, serde_json::Error> {
        serde_json::from_str(line.trim())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunAttached {
    /// How `inet_sock_set_state` is observed, as the report's
    /// `daemon.attach_mode` spells it (`tp_btf`, `tracepoint`).
    pub attach_mode: String,
    pub children: ChildrenFollowed,
    pub pids: Vec<u32>,
    /// The report's URL, `http://ADDR/api/v1/report`.
    pub api: String,
}

impl RunAttached {
    /// The API's address (`ADDR` of [`RunAttached::api`]).
    pub fn api_addr(&self) -> &str {
        let rest = self.api.trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest)
    }
}

/// Whether processes the target starts are followed: `{followed: true,
/// attach_mode}` or `{followed: false, reason}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildrenFollowed {
    pub followed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSample {
    pub elapsed_ms: u64,
    pub pids: Vec<u32>,
    /// Open connections (every state but LISTEN and CLOSE).
    pub connections: u64,
    pub established: u64,
    pub by_state: BTreeMap<String, u64>,
    /// Connections that reached ESTABLISHED since attach.
    pub established_total: u64,
    /// State changes since the previous sample, `OLD->NEW` -> count.
    pub transitions: BTreeMap<String, u64>,
    /// State changes since attach.
    pub transitions_total: BTreeMap<String, u64>,
    /// Kernel-side losses by reason.
    pub drops: BTreeMap<String, u64>,
    /// The ceiling's one-sentence verdict, once there is one.
    pub ceiling: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_version_and_the_event_name() {
        let ready = EchoEvent::Listening(EchoReady {
            addr: "127.0.0.1:7007".parse().unwrap(),
            pid: 42,
            workers: 1,
            worker_pids: vec![],
        });
        let line = to_line(&ready);
        assert!(line.starts_with(r#"{"v":1,"event":"listening","#), "{line}");
        assert_eq!(from_line::<EchoEvent>(&line).unwrap(), ready);
        let other = line.replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(
            from_line::<EchoEvent>(&other),
            Err(ProtocolError::Version { found: 2, .. })
        ));
    }

    #[test]
    fn an_unknown_phase_is_an_error_not_a_ramp() {
        let progress = ShardProgress {
            phase: Phase::Hold,
            ..ShardProgress::default()
        };
        let line = to_line(&progress);
        assert_eq!(from_line::<ShardProgress>(&line).unwrap(), progress);
        let bad = line.replace(r#""hold""#, r#""resting""#);
        assert!(from_line::<ShardProgress>(&bad).is_err());
        assert_eq!(
            Phase::from_index(Phase::Stalled as u64),
            Some(Phase::Stalled)
        );
        assert_eq!(Phase::from_index(6), None);
    }

    #[test]
    fn load_events_round_trip() {
        let done = LoadEvent::Ramped(LoadRamped {
            elapsed_ms: 1500,
            open: 10,
            target: 20,
            reached: false,
            failures: BTreeMap::from([("EMFILE".to_owned(), 3)]),
            verdict: None,
            connect_latency_us: Vec::new(),
            host_shard: Some(HostShard { index: 1, count: 3 }),
        });
        let line = to_line(&done);
        assert!(line.contains(r#""event":"ramped""#), "{line}");
        assert!(
            line.contains(r#""host_shard":{"index":1,"count":3}"#),
            "{line}"
        );
        assert!(matches!(
            from_line::<LoadEvent>(&line).unwrap(),
            LoadEvent::Ramped(LoadRamped { open: 10, .. })
        ));
    }

    #[test]
    fn host_shards_parse_and_refuse_what_cannot_be_one() {
        assert_eq!(
            "2/8".parse::<HostShard>(),
            Ok(HostShard { index: 2, count: 8 })
        );
        assert_eq!(
            "0/1".parse::<HostShard>(),
            Ok(HostShard { index: 0, count: 1 })
        );
        for bad in ["2", "2/", "/8", "a/8", "-1/8", "2/8/9", "2.0/8", ""] {
            let err = bad.parse::<HostShard>().unwrap_err();
            assert!(matches!(err, HostShardError::Syntax(_)), "{bad}: {err}");
            assert!(err.to_string().contains("--shard 2/8"), "{err}");
        }
        assert!(matches!(
            "0/0".parse::<HostShard>(),
            Err(HostShardError::NoShards(_))
        ));
        let err = "8/8".parse::<HostShard>().unwrap_err();
        assert!(err.to_string().contains("goes up to 7; got 8"), "{err}");
    }
}
