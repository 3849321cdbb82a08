//! One load process: opens its share of the connections (paced, a bounded
//! number in flight), holds them, optionally exchanges a message on each at
//! an interval and checks the echo, or churns (connect, exchange, close,
//! repeat). Everything it sees is counted in [`ShardCounters`]; the
//! coordinator reads them every second.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use socket2::{Domain, Socket, Type};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    sync::{Semaphore, watch},
    time::Instant,
};

use super::{greeting::greet, latency::LatencyCounters};
use crate::loadgen::{
    errno::ErrorCounts,
    protocol::{CloseSide, Phase, PortRange, ShardCounts, ShardPlan, ShardProgress},
};

/// Connects in flight at once per shard: enough to saturate a loopback
/// server, few enough not to flood its accept queue.
const IN_FLIGHT: usize = 512;

#[derive(Debug, Default)]
pub struct ShardCounters {
    pub attempts: AtomicU64,
    pub connected_total: AtomicU64,
    pub closed_total: AtomicU64,
    /// Connections the server closed or reset while we held them.
    pub dropped_by_server: AtomicU64,
    pub messages_ok: AtomicU64,
    /// Echoes that did not match what was sent.
    pub messages_bad: AtomicU64,
    pub failures: ErrorCounts,
    /// The shard's [`Phase`], as `phase as u8`.
    pub phase: AtomicU8,
    /// Time from connect() to open (answered, with a greeting or messages).
    pub connect_latency: LatencyCounters,
}

impl ShardCounters {
    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn progress(&self) -> ShardProgress {
        let connected = self.connected_total.load(Ordering::Relaxed);
        let closed = self.closed_total.load(Ordering::Relaxed);
        ShardProgress {
            counts: ShardCounts {
                attempts: self.attempts.load(Ordering::Relaxed),
                connected_total: connected,
                closed_total: closed,
                open: connected.saturating_sub(closed),
                dropped_by_server: self.dropped_by_server.load(Ordering::Relaxed),
                messages_ok: self.messages_ok.load(Ordering::Relaxed),
                messages_bad: self.messages_bad.load(Ordering::Relaxed),
                failures: self.failures.snapshot(),
                connect_latency_us: self.connect_latency.snapshot(),
            },
            phase: Phase::from_index(u64::from(self.phase.load(Ordering::Relaxed)))
                .expect("set_phase stores only phases"),
        }
    }
}

/// Run the plan until done or until `stop` turns true.
pub async fn run_shard(plan: ShardPlan, counters: Arc<ShardCounters>, stop: watch::Receiver<bool>) {
    let plan = Arc::new(plan);
    match plan.churn {
        Some((close, duration)) => churn(plan, counters, stop, close, duration).await,
        None => ramp_and_hold(plan, counters, stop).await,
    }
}

async fn ramp_and_hold(
    plan: Arc<ShardPlan>,
    counters: Arc<ShardCounters>,
    mut stop: watch::Receiver<bool>,
) {
    counters.set_phase(Phase::Ramp);
    let (release, hold_signal) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut pacer = Pacer::new(plan.rate);
    let mut last_success = Instant::now();
    let mut last_connected = 0;
    let mut stalled = false;
    let sources = Arc::new(Sources::new(&plan));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let connected = counters.connected_total.load(Ordering::Relaxed);
        let open = connected - counters.closed_total.load(Ordering::Relaxed);
        let in_flight = (IN_FLIGHT - permits.available_permits()) as u64;
        if open >= plan.connections || *stop.borrow() {
            break;
        }
        if connected != last_connected {
            last_connected = connected;
            last_success = Instant::now();
        } else if last_success.elapsed() >= plan.stall_timeout {
            stalled = true;
            break;
        }
        if open + in_flight >= plan.connections {
            // Wait for the connects in flight to land.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.changed() => break,
        };
        pacer.wait().await;
        let (plan, counters, hold_signal) = (plan.clone(), counters.clone(), hold_signal.clone());
        let sources = sources.clone();
        let connect_served = move |plan: &ShardPlan| {
            let (target, timeout, bytes) = (plan.target, plan.connect_timeout, plan.message_bytes);
            let greeting = plan.greeting.clone();
            async move {
                let mut stream = sources.connect(target, timeout).await?;
                if let Some(greeting) = &greeting {
                    match tokio::time::timeout(timeout, greet(&mut stream, greeting, target)).await
                    {
                        Ok(result) => result?,
                        Err(_) => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
                    }
                }
                // The kernel completes handshakes for connections still in
                // the server's accept queue; with messages on, a connection
                // counts only once the server has answered on it.
                if bytes > 0 {
                    match tokio::time::timeout(timeout, exchange(&mut stream, bytes)).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => return Err(io::Error::other("echo differs")),
                        Ok(Err(err)) => return Err(err),
                        Err(_) => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
                    }
                }
                Ok(stream)
            }
        };
        tasks.spawn(async move {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let served = connect_served(&plan).await;
            drop(permit);
            match served {
                Ok(stream) => {
                    counters.connect_latency.record(started.elapsed());
                    counters.connected_total.fetch_add(1, Ordering::Relaxed);
                    hold_connection(stream, &plan, &counters, hold_signal).await;
                    counters.closed_total.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => counters.failures.count(&err),
            }
        });
        // Reap finished tasks now and then so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    // Hold until the coordinator says stop: it starts the hold when every
    // shard has finished ramping, so all connections are open together.
    counters.set_phase(if stalled { Phase::Stalled } else { Phase::Hold });
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    counters.set_phase(Phase::Closing);
    let _ = release.send(true);
    while tasks.join_next().await.is_some() {}
    counters.set_phase(if stalled { Phase::Stalled } else { Phase::Done });
}

/// Hold one connection until released: exchange a message every interval
/// when asked to, otherwise just notice if the server drops it.
async fn hold_connection(
    mut stream: TcpStream,
    plan: &ShardPlan,
    counters: &ShardCounters,
    mut release: watch::Receiver<bool>,
) {
    // Spread the exchanges over the interval instead of all at once.
    let offset = plan.interval.mul_f64(fastrand_unit());
    let mut next = Instant::now() + offset;
    loop {
        if *release.borrow() {
            return;
        }
        let dropped = if plan.message_bytes > 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next += plan.interval;
                    match exchange(&mut stream, plan.message_bytes).await {
                        Ok(true) => { counters.messages_ok.fetch_add(1, Ordering::Relaxed); false }
                        Ok(false) => { counters.messages_bad.fetch_add(1, Ordering::Relaxed); false }
                        Err(err) => { counters.failures.count(&err); true }
                    }
                }
                _ = release.changed() => return,
            }
        } else {
            tokio::select! {
                ready = stream.readable() => match ready.and_then(|()| stream.try_read(&mut [0u8; 64])) {
                    // EOF: the server closed it.
                    Ok(0) => true,
                    // Unsolicited bytes, or a spurious wake-up: keep holding.
                    Ok(_) => false,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => false,
                    Err(err) => { counters.failures.count(&err); true }
                },
                _ = release.changed() => return,
            }
        };
        if dropped {
            counters.dropped_by_server.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Send `bytes` bytes and read them back; `Ok(false)` when the echo differs.
async fn exchange(stream: &mut TcpStream, bytes: usize) -> io::Result<bool> {
    let message: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    stream.write_all(&message).await?;
    let mut echo = vec![0u8; bytes];
    stream.read_exact(&mut echo).await?;
    Ok(echo == message)
}

async fn churn(
    plan: Arc<ShardPlan>,
    counters: Arc<ShardCounters>,
    stop: watch::Receiver<bool>,
    close: CloseSide,
    duration: Duration,
) {
    counters.set_phase(Phase::Churn);
    let deadline = Instant::now() + duration;
    let pacer = Arc::new(tokio::sync::Mutex::new(Pacer::new(plan.rate)));
    let sources = Arc::new(Sources::new(&plan));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..plan.connections.max(1) {
        let (plan, counters, pacer, stop, sources) = (
            plan.clone(),
            counters.clone(),
            pacer.clone(),
            stop.clone(),
            sources.clone(),
        );
        loops.spawn(async move {
            while Instant::now() < deadline && !*stop.borrow() {
                pacer.lock().await.wait().await;
                counters.attempts.fetch_add(1, Ordering::Relaxed);
                let mut stream = match sources.connect(plan.target, plan.connect_timeout).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        counters.failures.count(&err);
                        // Do not spin on a persistent error.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                counters.connected_total.fetch_add(1, Ordering::Relaxed);
                if let Err(err) = churn_once(&mut stream, &plan, close, &counters).await {
                    counters.failures.count(&err);
                }
                drop(stream);
                counters.closed_total.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while loops.join_next().await.is_some() {}
    counters.set_phase(Phase::Done);
}

async fn churn_once(
    stream: &mut TcpStream,
    plan: &ShardPlan,
    close: CloseSide,
    counters: &ShardCounters,
) -> io::Result<()> {
    // The server closes after echoing, so it needs something to echo.
    let bytes = match close {
        CloseSide::Server => plan.message_bytes.max(1),
        CloseSide::Client => plan.message_bytes,
    };
    if bytes > 0 {
        if exchange(stream, bytes).await? {
            counters.messages_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.messages_bad.fetch_add(1, Ordering::Relaxed);
        }
    }
    if close == CloseSide::Server {
        // Wait for the server's FIN before closing our side.
        let mut rest = [0u8; 64];
        match tokio::time::timeout(plan.connect_timeout, stream.read(&mut rest)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => return Err(io::Error::other("server sent data instead of closing")),
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(io::Error::other(
                    "server did not close (start it with `echo --close-after-echo`)",
                ));
            }
        }
    }
    Ok(())
}

/// Ports tried for one connection in a port slice before giving up on it:
/// a port may be taken (another program, or a TIME_WAIT of an earlier run
/// to the same server), the next one usually is not.
const PORT_TRIES: u64 = 16;

/// Where the shard's connections come from, in turn: its source addresses
/// round-robin from its offset, and, with a port slice, each address
/// through every port of the slice (connection k: address k mod A, port
/// k / A mod P), so no two connections of the shard pick the same pair
/// until all A x P are used.
pub struct Sources {
    ips: Vec<IpAddr>,
    ports: Option<PortRange>,
    /// The next position, shared by the shard's connecting tasks.
    next: AtomicU64,
}

/// One connection's source: an address (`None`: the kernel's choice) and
/// a port (0: the kernel's choice, at connect time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Sources {
    pub fn new(plan: &ShardPlan) -> Sources {
        Sources {
            ips: plan.source_ips.clone(),
            ports: plan.source_ports.filter(|p| !p.is_empty()),
            next: AtomicU64::new(plan.source_offset as u64),
        }
    }

    /// The next source in turn.
    pub fn next(&self) -> Source {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let addresses = self.ips.len().max(1) as u64;
        Source {
            ip: (!self.ips.is_empty()).then(|| self.ips[(k % addresses) as usize]),
            port: self
                .ports
                .map_or(0, |p| p.first + ((k / addresses) % p.len()) as u16),
        }
    }

    /// Connect to `target` from the next source; in a port slice, when
    /// the port is taken (EADDRINUSE at bind, EADDRNOTAVAIL at connect:
    /// that 4-tuple exists), from the next ones, up to [`PORT_TRIES`].
    pub async fn connect(&self, target: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let tries = if self.ports.is_some() { PORT_TRIES } else { 1 };
        let mut result = Err(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
        for _ in 0..tries {
            result = connect(target, self.next(), timeout).await;
            match &result {
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EADDRINUSE | libc::EADDRNOTAVAIL)
                    ) => {}
                _ => return result,
            }
        }
        result
    }
}

/// A non-blocking connect from `source`, bounded by `timeout`. Without a
/// port the port is chosen at connect time, not at bind
/// (IP_BIND_ADDRESS_NO_PORT, so binding does not reserve a port for every
/// destination); with one it is bound explicitly, SO_REUSEADDR so that a
/// port whose last connection lingers in TIME_WAIT can serve another
/// destination (the kernel still refuses a 4-tuple in use: EADDRNOTAVAIL).
pub async fn connect(
    target: SocketAddr,
    source: Source,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if source.port != 0 {
        let ip = source.ip.unwrap_or(match target {
            SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(ip, source.port).into())?;
    } else if let Some(ip) = source.ip {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
    }
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on our own socket with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Paces connects to a rate: the n-th connect is due at start + n / rate.
struct Pacer {
    rate: Option<u64>,
    started: Instant,
    issued: u64,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            rate,
            started: Instant::now(),
            issued: 0,
        }
    }

    async fn wait(&mut self) {
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = self.started + Duration::from_secs_f64(self.issued as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        self.issued += 1;
    }
}

/// A number in [0, 1) without a random-number crate: the sub-second clock.
fn fastrand_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Scramble the low bits so consecutive calls differ.
    let mixed = (nanos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    mixed as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::protocol::{from_line, to_line};

    fn plan(ips: &[&str], offset: usize, ports: Option<PortRange>) -> ShardPlan {
        ShardPlan {
            target: "127.0.0.1:7007".parse().unwrap(),
            connections: 1,
            rate: None,
            message_bytes: 0,
            interval: Duration::from_secs(1),
            source_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            source_offset: offset,
            churn: None,
            connect_timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(1),
            greeting: None,
            source_ports: ports,
        }
    }

    #[test]
    fn sources_rotate() {
        let sources = Sources::new(&plan(&["127.0.0.1", "127.0.0.2"], 1, None));
        let picked: Vec<_> = (0..3).map(|_| sources.next()).collect();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            picked.iter().map(|s| s.ip).collect::<Vec<_>>(),
            [ip("127.0.0.2"), ip("127.0.0.1"), ip("127.0.0.2")]
        );
        assert!(picked.iter().all(|s| s.port == 0));
        let none = Sources::new(&plan(&[], 0, None));
        assert_eq!(none.next(), Source { ip: None, port: 0 });
    }

    #[test]
    fn a_port_slice_gives_every_pair_once_before_reusing_one() {
        let ports = PortRange {
            first: 40_000,
            last: 40_099,
        };
        let sources = Sources::new(&plan(&["10.9.0.1", "10.9.0.2", "10.9.0.3"], 0, Some(ports)));
        let pairs: Vec<Source> = (0..300).map(|_| sources.next()).collect();
        let distinct: std::collections::BTreeSet<_> =
            pairs.iter().map(|s| (s.ip, s.port)).collect();
        assert_eq!(distinct.len(), 300);
        assert!(pairs.iter().all(|s| (40_000..=40_099).contains(&s.port)));
        // The 301st wraps around to the first.
        assert_eq!(sources.next(), pairs[0]);
        // No address: the kernel's choice of address, ports in the slice.
        let bare = Sources::new(&plan(&[], 0, Some(ports)));
        let ports: Vec<u16> = (0..101).map(|_| bare.next().port).collect();
        assert_eq!((ports[0], ports[99], ports[100]), (40_000, 40_099, 40_000));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spreads_connects_over_time() {
        let mut pacer = Pacer::new(Some(100));
        let start = Instant::now();
        for _ in 0..51 {
            pacer.wait().await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(520), "{elapsed:?}");
    }

    #[test]
    fn a_progress_line_is_one_flat_json_object_and_reads_back() {
        let mut progress = ShardProgress::default();
        progress.counts.open = 7;
        progress.counts.failures.insert("ECONNREFUSED".into(), 2);
        progress.phase = Phase::Hold;
        let line = to_line(&progress);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (value["open"].as_u64(), value["phase"].as_str()),
            (Some(7), Some("hold"))
        );
        assert_eq!(from_line::<ShardProgress>(&line).unwrap(), progress);
    }

    #[test]
    fn unit_random_is_in_range() {
        for _ in 0..100 {
            let x = fastrand_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
