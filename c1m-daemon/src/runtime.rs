//! The async runtime every command runs on (one thread: c1m's work is
//! waiting on the kernel, the network and its children) and the shutdown
//! signal every loop listens for, written once.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// A current-thread tokio runtime with I/O and timers.
pub fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// SIGINT (Ctrl-C) and SIGTERM, the two ways c1m is asked to stop.
/// Installed once before a loop, so a signal arriving while the loop works
/// is kept until the next `recv`.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    pub fn install() -> anyhow::Result<Shutdown> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        })
    }

    /// Wait for the next SIGINT or SIGTERM (cancel-safe, for `select!`).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
