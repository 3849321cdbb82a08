//! Command-line types (clap), and their conversion into the options the
//! commands take (`LoadArgs::options`). The value parsers live in
//! `human.rs`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{
    ebpf::probes::AttachMode,
    human::{parse_duration, parse_rate, parse_size},
    loadgen::{
        echo::EchoOptions,
        load::{
            CloseSide, LoadOptions,
            greeting::Greeting,
            host_shard::{HostShard, HostShardError, share},
        },
    },
};

/// c1m: how many concurrent TCP connections can your server hold on this
/// box, and what stops it?
#[derive(Debug, Parser)]
#[command(name = "c1m-daemon", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this kernel and this process allow: BTF, which eBPF
    /// program types load and attach here (measured by trying), privileges,
    /// and the system limits that bound connection counts.
    Doctor(DoctorArgs),
    /// Attach the probes to the kernel and follow the TCP sockets of a target
    /// process, printing a line per interval (connections, state
    /// transitions) and serving the latest report as JSON at
    /// http://127.0.0.1:8080/api/v1/report. Stops on Ctrl-C, after
    /// --duration, or when the target exits (exit code 3).
    ///
    /// Without --pid it serves the host overview instead (the processes
    /// that hold TCP sockets, as `top` shows them) at / and
    /// /api/v1/overview, each row naming the `run --pid` that watches it.
    Run(RunArgs),
    /// The processes that hold TCP sockets on this host (its network
    /// namespace), most connections first: per process its connections by
    /// state, listening ports, the TIME_WAIT its listeners leave, kernel
    /// socket buffer bytes, fds against RLIMIT_NOFILE with the nearest
    /// limit's headroom, and the command that watches it (`c1m-daemon run
    /// --pid P`). Refreshed every --interval until Ctrl-C; one walk of the
    /// kernel's socket files and TCP sockets (BPF iterators) per refresh,
    /// no /proc/*/fd scan.
    Top(TopArgs),
    /// Sample the target for --duration, then print one report: its
    /// connections by state, TIME_WAIT churn, and the cost of one connection
    /// (kernel objects sized from this kernel's slabs, userspace memory
    /// average and marginal, file descriptors).
    Report(ReportArgs),
    /// A trivial TCP echo server, the reference target of c1m's ramps.
    /// Prints `c1m echo listening on ADDR (pid N) with K workers` once bound;
    /// stops (all workers with it) on Ctrl-C or SIGTERM and prints what it
    /// accepted, closed, and the errors by errno.
    ///
    /// One process holds at most RLIMIT_NOFILE connections, so for more it
    /// runs worker processes sharing one listening socket; a worker with no
    /// fds to spare leaves new connections to the others.
    Echo(EchoArgs),
    /// Open --connections connections to --target and hold them (or churn
    /// them with --churn), printing progress every second. Past the fd limit
    /// of one process it runs several; past the ports of one source IP it
    /// spreads over --source-ips (automatic on 127.0.0.0/8). When it stops
    /// short it names the errno, the limit behind it and the side (client,
    /// server, box), and exits with code 4.
    Load(LoadArgs),
    /// `ramp` with the bundled echo server as the target: starts it sized
    /// for N, ramps it in steps as `ramp` does (same stop classes, live
    /// dashboard at --listen, JSON), and prints a verdict: reached N or
    /// stopped at M and why; cost per connection of both sides; the
    /// ceiling projected for the box (both ends local, the server alone).
    /// Its --json is a `ramp --json` with the selftest's fields added
    /// (`projections`, `load_user_bytes`, `report`...): `ramp --baseline`
    /// and `diff` read it. Exit codes: 0 reached N, 4 stopped short.
    Selftest(SelftestArgs),
    /// Ramp your own server: open connections to --target in --steps steps
    /// with the bundled load generator, price them at each step (with --pid:
    /// kernel bytes, userspace marginal bytes, fds), and stop at
    /// --connections or at the first failure class (refused, reset, timed
    /// out, accepted then closed, accept queue full, the load side's own
    /// errno, the target's memory pressure, the target exiting), naming the
    /// limit that binds with its evidence; then release every connection.
    /// Beside it, the bundled echo server ramped the same way (the floor:
    /// what any server pays per connection on this box).
    ///
    /// Exit codes: 0 reached --connections, 4 a limit stopped it, 3 the
    /// target exited, 1 error.
    Ramp(RampArgs),
    /// Compare two `ramp --json` files: what changed in connections
    /// reached, the stop and the binding limit, the ceiling's limits, costs
    /// per connection, sysctls and rlimits.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct RampArgs {
    /// The server to ramp, e.g. 127.0.0.1:6379.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: std::net::SocketAddr,
    /// The server's process (children follow). Without it the ramp reports
    /// only what the client sees: the server-side cost and limits are not
    /// measured.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Connections to ramp to.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub connections: u64,
    /// Steps of the ramp (costs are sampled at each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub steps: u64,
    /// Connects per second, e.g. `2000/s` (default: as fast as the server
    /// answers).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// How long to hold all connections once open, before releasing them.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Source addresses to spread connections over (as `load`; default on
    /// 127.0.0.0/8: disjoint ranges per step).
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    #[command(flatten)]
    pub greeting: GreetingArgs,
    /// Give up on a connect (or its answer) after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Write the result as JSON to this file (`diff` and `--baseline` read it).
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Write a self-contained HTML report to this file (no network needed to
    /// open it).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// Use the floor of a previous `ramp --json` or `selftest --json` of the
    /// echo server instead of ramping it again.
    #[arg(long, value_name = "FILE.json", conflicts_with = "no_floor")]
    pub baseline: Option<std::path::PathBuf>,
    /// Skip the echo floor.
    #[arg(long)]
    pub no_floor: bool,
    /// Where to serve the dashboard during the run; port 0 picks a free
    /// port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Token the API wants on every route but /api/v1/health (required when
    /// --listen is not a loopback address).
    #[arg(long, env = "C1M_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Give up the ramp (floor included) after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: Duration,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier run (`ramp --json` or `selftest --json`).
    pub before: std::path::PathBuf,
    /// The later run.
    pub after: std::path::PathBuf,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Connections to ramp to (default: what this box's memory should hold,
    /// about 70% of MemAvailable at ~12 KiB per connection, both ends).
    #[arg(long, value_name = "N")]
    pub connections: Option<u64>,
    /// Connects per second (default: as fast as the server accepts).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// Steps of the ramp (costs are sampled at each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub steps: u64,
    /// Also write the result as JSON to this file: the ramp's JSON with the
    /// selftest's fields added (`ramp --baseline` and `diff` read it).
    #[arg(long, value_name = "PATH")]
    pub json: Option<std::path::PathBuf>,
    /// Where to serve the dashboard and report during the run.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Token the API wants on every route but /api/v1/health (required when
    /// --listen is not a loopback address): `Authorization: Bearer <token>`
    /// or `?token=<token>`.
    #[arg(long, env = "C1M_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Give up the ramp after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: std::time::Duration,
}

/// A cgroup or a container as the target, instead of (or besides) pids.
#[derive(Debug, Args, Default)]
pub struct CgroupArgs {
    /// Watch every process of this cgroup v2, and of the cgroups below it,
    /// including processes started or moved there later (matched by cgroup
    /// id in the kernel): a directory of the cgroup2 mount, or a path as
    /// /proc/PID/cgroup shows it, e.g. `/system.slice/nginx.service`. Its
    /// memory.max, memory.high and pids.max join the ceiling.
    #[arg(long, value_name = "PATH", conflicts_with = "container")]
    pub cgroup: Option<String>,
    /// Watch a container: its id (or the first 4+ hex digits of it), found
    /// in /proc/*/cgroup for Docker, containerd/Kubernetes, CRI-O and
    /// Podman, or its name, asked of docker, podman or crictl. Its cgroup
    /// is the target as with --cgroup.
    #[arg(long, value_name = "NAME|ID")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Process to report on; repeat for several. Children are included.
    #[arg(
        long = "pid",
        value_name = "PID",
        required_unless_present_any = ["cgroup", "container"]
    )]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub cgroup: CgroupArgs,
    /// How long to sample, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Watch only the named processes, not their children.
    #[arg(long)]
    pub no_children: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:7007")]
    pub listen: std::net::SocketAddr,
    /// Connections to plan for: the number of worker processes is chosen so
    /// their fd limits (RLIMIT_NOFILE each) cover it.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub connections: u64,
    /// Worker processes, instead of the number planned from --connections.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub workers: Option<u64>,
    /// Memory each connection allocates and writes, e.g. `16KiB`, to model a
    /// heavier server (default: none; the echo itself costs well under 1 KiB).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    pub state_bytes: u64,
    /// Close each connection after echoing its first message, like an
    /// HTTP/1.0 server: the server closes first and keeps the TIME_WAIT
    /// (pair with `load --churn --close server`).
    #[arg(long)]
    pub close_after_echo: bool,
    /// Print JSON lines (the `listening` event at start, `stats` at exit)
    /// instead of the banner, for scripts (see `loadgen/protocol.rs`).
    #[arg(long)]
    pub json: bool,
    /// Internal: serve as a worker on this inherited listening fd.
    #[arg(long, hide = true)]
    pub worker_fd: Option<i32>,
}

impl EchoArgs {
    pub fn options(&self) -> EchoOptions {
        EchoOptions {
            listen: self.listen,
            workers: self.workers,
            connections: self.connections,
            state_bytes: self.state_bytes as usize,
            worker_fd: self.worker_fd,
            close_after_echo: self.close_after_echo,
            json: self.json,
        }
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The server to connect to, e.g. 127.0.0.1:7007.
    #[arg(long, required_unless_present = "shard_plan")]
    pub target: Option<std::net::SocketAddr>,
    /// Connections to open and hold (with --churn: connections at a time).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub connections: u64,
    /// Connects per second, e.g. `20000/s` (default: as fast as the server
    /// accepts).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// How long to hold the connections once open.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub hold: std::time::Duration,
    /// Send a message of this many bytes on each connection when it opens
    /// and every --interval, and check the echo (0: hold silently). With
    /// messages, a connection counts as open only once the server answered
    /// on it; without, once the handshake completes, which the kernel also
    /// does for connections waiting in the server's accept queue.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub message_bytes: usize,
    /// Time between messages on one connection.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Source addresses to spread connections over, e.g.
    /// `127.0.0.2-127.0.0.64` or `10.0.0.1,10.0.0.2` (default: on IPv4
    /// loopback, as many of 127.0.0.0/8 as the ports need; else the
    /// kernel's choice).
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    /// Connect, exchange, close, repeat, for --duration: for TIME_WAIT
    /// studies.
    #[arg(long)]
    pub churn: bool,
    /// With --churn: which side closes first (and keeps the TIME_WAIT).
    /// `server` needs a server that closes, e.g. `echo --close-after-echo`.
    #[arg(long, value_enum, default_value = "client", requires = "churn")]
    pub close: CloseSide,
    /// With --churn: how long to churn.
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "churn")]
    pub duration: std::time::Duration,
    /// Give up on a connect after this long (counted as ETIMEDOUT).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Stop the ramp when no connect has succeeded for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stall_timeout: std::time::Duration,
    /// Load processes (default: enough for the fd limit of each).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub processes: Option<u64>,
    /// The server's pid, so a ramp that stops short can check the server's
    /// own limits (e.g. its fd limit: EMFILE on accept).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print JSON lines (progress every second, then `done`) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run part INDEX (from 0) of a load spread over COUNT hosts, e.g.
    /// `--shard 2/8`: this host opens its share of --connections and --rate
    /// (shares differ by at most one and add up to the totals), from
    /// source pairs no other shard uses. When --source-ips lists at least
    /// COUNT addresses, it takes every address whose position mod COUNT is
    /// INDEX (the kernel picks the ports); otherwise it keeps all the
    /// addresses (or the kernel's choice) and binds explicitly in slice
    /// INDEX of COUNT of this namespace's net.ipv4.ip_local_port_range,
    /// so shards behind one NAT or on one address never collide. JSON lines
    /// and metrics carry the shard.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = parse_host_shard)]
    pub shard: Option<HostShard>,
    /// With --shard: this host's source address is its own (a pod with its
    /// own IP, a host not behind a NAT shared with other shards), so keep
    /// the whole ephemeral port range instead of a 1/COUNT slice of it.
    #[arg(long, requires = "shard")]
    pub no_port_slice: bool,
    /// Serve the load's counters as Prometheus text at http://ADDR/metrics
    /// while it runs, e.g. `0.0.0.0:9809`; every series is labelled
    /// shard="INDEX", shards="COUNT", so sum() over the shards is the whole
    /// load (metric names in the README).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub greeting: GreetingArgs,
    /// Internal: run one shard of a load with this JSON plan.
    #[arg(long, hide = true)]
    pub shard_plan: Option<String>,
}

/// What each connection says once connected (`load` and `ramp`).
#[derive(Debug, Clone, Args)]
pub struct GreetingArgs {
    /// Send this once on each connection after connecting (C-style escapes:
    /// `\r\n`, `\xHH`), e.g. `PING\r\n` for redis; the connection counts
    /// as open once the reply contains --expect.
    #[arg(long, value_name = "TEXT", conflicts_with = "http")]
    pub send: Option<String>,
    /// With --send: text the reply must contain, e.g. `+PONG` (default: any
    /// reply).
    #[arg(long, value_name = "TEXT", requires = "send")]
    pub expect: Option<String>,
    /// Send one keep-alive `GET PATH HTTP/1.1` (with a Host header) on each
    /// connection and read the whole response (headers, then Content-Length
    /// bytes of body); the connection counts as open once answered.
    #[arg(long, value_name = "PATH")]
    pub http: Option<String>,
}

impl GreetingArgs {
    pub fn greeting(&self) -> anyhow::Result<Option<Greeting>> {
        use crate::loadgen::load::greeting::unescape;
        if let Some(path) = &self.http {
            if !path.starts_with('/') {
                anyhow::bail!("--http {path:?}: give a path starting with /, e.g. --http /");
            }
            return Ok(Some(Greeting::Http { path: path.clone() }));
        }
        let Some(send) = &self.send else {
            return Ok(None);
        };
        Ok(Some(Greeting::Send {
            send: unescape(send).map_err(|e| anyhow::anyhow!("--send {e}"))?,
            expect: unescape(self.expect.as_deref().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!("--expect {e}"))?,
        }))
    }
}

/// A parsed `--source-ips` list (a newtype so clap keeps it as one value).
#[derive(Debug, Clone)]
pub struct SourceIps(pub Vec<std::net::IpAddr>);

fn parse_source_ips(text: &str) -> Result<SourceIps, String> {
    crate::loadgen::load::source_ips::parse_source_ips(text)
        .map(SourceIps)
        .map_err(|e| e.to_string())
}

fn parse_host_shard(text: &str) -> Result<HostShard, String> {
    text.parse().map_err(|e: HostShardError| e.to_string())
}

impl LoadArgs {
    pub fn options(&self) -> anyhow::Result<LoadOptions> {
        let target = self
            .target
            .ok_or_else(|| anyhow::anyhow!("load needs --target ADDR, e.g. 127.0.0.1:7007"))?;
        if self.connections == 0 {
            anyhow::bail!("--connections must be at least 1");
        }
        let (connections, rate) = match self.shard {
            None => (self.connections, self.rate),
            Some(shard) => {
                let connections = share(self.connections, shard.index, shard.count);
                if connections == 0 {
                    anyhow::bail!(
                        "--connections {} over --shard {shard} leaves this shard none: give at \
                         least {} connections (one per shard), or fewer shards",
                        self.connections,
                        shard.count
                    );
                }
                let rate = match self.rate {
                    Some(rate) if share(rate, shard.index, shard.count) == 0 => anyhow::bail!(
                        "--rate {rate}/s over --shard {shard} leaves this shard no connects per \
                         second: give at least {}/s (one per shard), or leave --rate out",
                        shard.count
                    ),
                    other => other.map(|rate| share(rate, shard.index, shard.count)),
                };
                (connections, rate)
            }
        };
        Ok(LoadOptions {
            target,
            connections,
            rate,
            hold: self.hold,
            message_bytes: self.message_bytes,
            interval: self.interval,
            source_ips: self.source_ips.clone().map(|s| s.0),
            churn: self.churn.then_some((self.close, self.duration)),
            connect_timeout: self.connect_timeout,
            stall_timeout: self.stall_timeout,
            processes: self.processes,
            server_pid: self.server_pid,
            json: self.json,
            greeting: self.greeting.greeting()?,
            host_shard: self.shard,
            port_slice: !self.no_port_slice,
            total_connections: self.connections,
            metrics: self.metrics,
        })
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Process to watch (the server); repeat for several. A thread id is
    /// mapped to its process. Its child processes are watched too. Without
    /// a target (--pid, --cgroup, --container): the host overview (as
    /// `top`) at / and /api/v1/overview.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub cgroup: CgroupArgs,
    /// Time between two printed samples, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long, e.g. `30s`, `5m` (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Watch only the named processes, not the child processes they have or
    /// start (by default a pre-fork server's workers are part of the target).
    #[arg(long)]
    pub no_children: bool,
    /// Use only this way of observing TCP state changes instead of the best
    /// one that works (tp_btf, then the classic tracepoint).
    #[arg(long, value_enum)]
    pub attach: Option<AttachMode>,
    /// Where to serve the dashboard and API (/, /api/v1/report, /metrics...).
    /// Port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Token the API wants on every route but /api/v1/health (required when
    /// --listen is not a loopback address): `Authorization: Bearer <token>`
    /// or `?token=<token>`.
    #[arg(long, env = "C1M_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one table (or one JSON document) and exit.
    #[arg(long)]
    pub once: bool,
    /// Print one JSON document per refresh, one per line (the fields of
    /// `GET /api/v1/overview`, README "The overview").
    #[arg(long)]
    pub json: bool,
    /// Time between two refreshes, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Rows to print (the JSON has them all).
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub rows: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
