//! One echo process: a single-threaded tokio loop accepting on its own
//! SO_REUSEPORT listener (the kernel spreads new connections over the
//! workers' listeners).
//!
//! Idle connections are made cheap on purpose: a connection's task holds no
//! buffer while it waits. It reads into a stack buffer and writes back
//! without awaiting; only when the socket cannot take the whole echo does
//! the remainder move to the heap for an awaited write. So the task's
//! future stays a few hundred bytes instead of carrying 4 KiB.

use std::{
    io,
    net::TcpListener as StdListener,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

use crate::{system::limits::read_rlimit_nofile, tools::errno::ErrorCounts};

#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub errors: ErrorCounts,
    /// Signalled when a connection closes.
    slot_freed: Notify,
}

/// What a worker did, printed as its last line (the supervisor sums them).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct WorkerTotals {
    pub accepted: u64,
    pub closed: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl Counters {
    fn open(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed) - self.closed.load(Ordering::Relaxed)
    }

    fn totals(&self) -> WorkerTotals {
        WorkerTotals {
            accepted: self.accepted.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            errors: self.errors.snapshot(),
        }
    }
}

/// Serve on `listener` until SIGINT/SIGTERM; returns the totals.
pub fn run(
    listener: StdListener,
    state_bytes: usize,
    close_after_echo: bool,
) -> anyhow::Result<WorkerTotals> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener).context("registering the listener")?;
        let counters = Arc::new(Counters::default());
        let capacity = connection_capacity();
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        loop {
            // A full worker leaves new connections in the shared queue for
            // the others rather than failing them with EMFILE.
            if counters.open() >= capacity {
                tokio::select! {
                    _ = counters.slot_freed.notified() => continue,
                    _ = sigint.recv() => break,
                    _ = sigterm.recv() => break,
                }
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(echo_connection(
                            stream,
                            counters.clone(),
                            state_bytes,
                            close_after_echo,
                        ));
                    }
                    Err(err) => {
                        counters.errors.count(&err);
                        // EMFILE and friends persist; do not spin on them.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
            }
        }
        Ok(counters.totals())
    })
}

/// Per-connection state a heavier server would hold, allocated and written
/// so it is resident (`--state-bytes`).
fn connection_state(bytes: usize) -> Vec<u8> {
    vec![0xa5; bytes]
}

async fn echo_connection(
    mut stream: TcpStream,
    counters: Arc<Counters>,
    state_bytes: usize,
    close_after_echo: bool,
) {
    let _state = connection_state(state_bytes);
    loop {
        if let Err(err) = stream.readable().await {
            counters.errors.count(&err);
            break;
        }
        match echo_ready(&stream) {
            Echo::Again => continue,
            Echo::Echoed if close_after_echo => break,
            Echo::Echoed => continue,
            Echo::Closed => break,
            Echo::Failed(err) => {
                counters.errors.count(&err);
                break;
            }
            Echo::Unsent(rest) => {
                if let Err(err) = stream.write_all(&rest).await {
                    counters.errors.count(&err);
                    break;
                }
                if close_after_echo {
                    break;
                }
            }
        }
    }
    counters.closed.fetch_add(1, Ordering::Relaxed);
    counters.slot_freed.notify_one();
}

/// Connections this process can hold: its fd limit minus the fds it has
/// and a margin for the runtime.
fn connection_capacity() -> u64 {
    let open_now = std::fs::read_dir("/proc/self/fd").map_or(16, |dir| dir.count() as u64);
    read_rlimit_nofile()
        .soft
        .saturating_sub(open_now + 8)
        .max(1)
}

enum Echo {
    /// Nothing was there: a spurious wake-up.
    Again,
    /// Echoed what was there.
    Echoed,
    Closed,
    Failed(io::Error),
    /// The socket took only part; the rest must wait for writability.
    Unsent(Vec<u8>),
}

/// Read what is there and write it back without waiting. A plain function,
/// so the 4 KiB buffer lives on the stack only for this call.
fn echo_ready(stream: &TcpStream) -> Echo {
    let mut buf = [0u8; 4096];
    let n = match stream.try_read(&mut buf) {
        Ok(0) => return Echo::Closed,
        Ok(n) => n,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Echo::Again,
        Err(err) => return Echo::Failed(err),
    };
    let mut sent = 0;
    while sent < n {
        match stream.try_write(&buf[sent..n]) {
            Ok(k) => sent += k,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Echo::Unsent(buf[sent..n].to_vec());
            }
            Err(err) => return Echo::Failed(err),
        }
    }
    Echo::Echoed
}
