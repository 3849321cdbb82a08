//! The monitor: everything that watches a running target. The sampler
//! owns the probes and the target set, takes samples, and builds reports;
//! `gather` reads the limits the ceiling analysis weighs (the I/O half of
//! the ceiling; the formulas in `analysis` stay pure); `daemon_info`
//! describes c1m itself beside each report; `overview` refreshes the
//! host overview (every process with TCP sockets, no target).

mod daemon_info;
pub mod gather;
pub mod overview;
mod sampler;
mod target_set;

pub use daemon_info::DaemonInfo;
pub use sampler::Sampler;
