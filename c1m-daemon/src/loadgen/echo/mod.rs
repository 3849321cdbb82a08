//! `c1m-daemon echo`: a trivial TCP echo server, the reference target of
//! c1m's ramps.
//!
//! One process holds at most RLIMIT_NOFILE connections (20000 on some boxes,
//! not raisable without privileges), so past that the server runs several
//! worker processes. They share one listening socket, created here and
//! inherited, the pre-fork model: a worker takes connections while it has
//! fds to spare and leaves the rest in the shared queue for the others.
//! (Separate SO_REUSEPORT listeners would spread connections by address
//! hash whatever a worker's headroom, stranding connections queued at a
//! full worker unless `tcp_migrate_req` is on.)

mod supervisor;
pub mod worker;

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::{FromRawFd as _, RawFd},
};

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};

use crate::{
    loadgen::protocol::{EchoEvent, EchoReady, EchoStats, to_line},
    system::limits::read_rlimit_nofile,
};

/// fds a worker keeps for itself (runtime, stdio, epoll, listener).
pub const FDS_RESERVED_PER_WORKER: u64 = 32;

pub struct EchoOptions {
    pub listen: SocketAddr,
    /// Worker processes; `None` = enough for `connections`.
    pub workers: Option<u64>,
    /// Connections to plan for when choosing the number of workers.
    pub connections: u64,
    /// Bytes each connection allocates and touches (models a heavier server).
    pub state_bytes: usize,
    /// Close each connection after its first echo (the server closes first).
    pub close_after_echo: bool,
    /// Internal: serve as a worker on this inherited listening fd.
    pub worker_fd: Option<RawFd>,
    /// Print protocol lines ([`EchoEvent`]) instead of the banner.
    pub json: bool,
}

/// Workers needed for `connections` when each may hold `nofile - reserve`.
pub fn plan_workers(connections: u64, nofile_soft: u64) -> u64 {
    let per_worker = nofile_soft.saturating_sub(FDS_RESERVED_PER_WORKER).max(1);
    connections.div_ceil(per_worker).max(1)
}

pub fn serve(options: &EchoOptions) -> anyhow::Result<()> {
    if let Some(fd) = options.worker_fd {
        // SAFETY: the supervisor passed this fd, a listening TCP socket,
        // for this process to own.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let totals = worker::run(listener, options.state_bytes, options.close_after_echo)?;
        println!("{}", to_line(&EchoEvent::Stats(totals)));
        return Ok(());
    }
    let listener = bind_listener(options.listen)?;
    let bound = listener.local_addr()?;
    let nofile = read_rlimit_nofile().soft;
    let workers = options
        .workers
        .unwrap_or_else(|| plan_workers(options.connections, nofile));
    if workers == 1 {
        announce(
            options.json,
            &EchoReady {
                addr: bound,
                pid: std::process::id(),
                workers: 1,
                worker_pids: Vec::new(),
            },
        );
        let totals = worker::run(listener, options.state_bytes, options.close_after_echo)?;
        report_stats(options.json, &totals, 1);
        return Ok(());
    }
    supervisor::run(
        listener,
        workers,
        options.state_bytes,
        options.close_after_echo,
        options.json,
    )
}

/// The first line: the protocol's `listening` event, or the banner
/// (`c1m echo listening on ADDR (pid N) with K worker(s) [PIDS]`).
fn announce(json: bool, ready: &EchoReady) {
    if json {
        println!("{}", to_line(&EchoEvent::Listening(ready.clone())));
    } else if ready.worker_pids.is_empty() {
        println!(
            "c1m echo listening on {} (pid {}) with 1 worker",
            ready.addr, ready.pid
        );
    } else {
        println!(
            "c1m echo listening on {} (pid {}) with {} workers {:?}",
            ready.addr, ready.pid, ready.workers, ready.worker_pids
        );
    }
}

/// What the server did, at exit: the `stats` event on stdout, or a line
/// on stderr.
fn report_stats(json: bool, stats: &EchoStats, workers: u64) {
    if json {
        println!("{}", to_line(&EchoEvent::Stats(stats.clone())));
    } else {
        eprintln!(
            "c1m echo: accepted {}, closed {}, open at exit {}, errors {:?}{}",
            stats.accepted,
            stats.closed,
            stats.open_at_exit,
            stats.errors,
            if workers > 1 {
                format!(" ({workers} workers)")
            } else {
                String::new()
            }
        );
    }
}

/// A listening socket with the deepest backlog the kernel allows
/// (`net.core.somaxconn` caps it), so a fast ramp is not refused by a
/// short queue.
fn bind_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .context("creating the listening socket")?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket
        .listen(i32::MAX)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_cover_the_connections_with_fds_to_spare() {
        assert_eq!(plan_workers(10, 20000), 1);
        assert_eq!(plan_workers(19968, 20000), 1);
        assert_eq!(plan_workers(19969, 20000), 2);
        assert_eq!(plan_workers(1_000_000, 20000), 51);
        assert_eq!(plan_workers(0, 20000), 1);
        assert_eq!(plan_workers(5, 10), 5, "a tiny limit still works");
    }
}
