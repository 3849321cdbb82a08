//! The socket and file-table walks on a thread of their own. A walk of a
//! million sockets takes over a second; run inline it would make every
//! sample that walks late. Here a sample asks for a walk and waits a short
//! budget for it: small targets get a fresh walk in every sample, large
//! ones get samples on time and the walk's counts when it lands.
//!
//! The thread owns the loaded eBPF object (the iterator programs need it
//! to attach each walk), and with it the links of the attached probes: they
//! are detached when the thread ends, which it does when the [`Walker`] is
//! dropped (after finishing a walk in progress).

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    time::{Duration, Instant},
};

use aya::Ebpf;

use super::{
    error::ProbeError,
    walk_programs::{FdCensus, WalkPrograms},
};
use crate::model::sock_census::SockCensus;

/// What one walk found, and when.
#[derive(Debug, Clone)]
pub struct Walk {
    pub sockets: SockCensus,
    pub fds: FdCensus,
    pub started: Instant,
    pub took: Duration,
}

pub struct Walker {
    requests: Sender<()>,
    results: Receiver<Result<Walk, ProbeError>>,
    in_flight: bool,
}

impl Walker {
    /// Move the eBPF object and the loaded iterators to a walking thread.
    pub fn start(mut ebpf: Ebpf, mut programs: WalkPrograms) -> Walker {
        let (requests, pending) = mpsc::channel::<()>();
        let (done, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("c1m-walker".into())
            .spawn(move || {
                // Ends when the Walker (the sender) is gone.
                while pending.recv().is_ok() {
                    let started = Instant::now();
                    let walk = programs.walk_sockets(&mut ebpf).and_then(|mut sockets| {
                        let fds = programs.walk_fds(&mut ebpf)?;
                        programs.read_outbound(&mut sockets)?;
                        Ok(Walk {
                            sockets,
                            fds,
                            started,
                            took: started.elapsed(),
                        })
                    });
                    if done.send(walk).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the walker thread");
        Walker {
            requests,
            results,
            in_flight: false,
        }
    }

    /// Whether a walk was asked for and has not been collected yet.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Ask for a walk unless one is under way, then wait up to `budget` for
    /// the one under way. `Ok(None)`: still walking (ask again later).
    pub fn walk_within(&mut self, budget: Duration) -> Result<Option<Walk>, ProbeError> {
        if !self.in_flight {
            self.requests.send(()).map_err(|_| walker_gone())?;
            self.in_flight = true;
        }
        match self.results.recv_timeout(budget) {
            Ok(walk) => {
                self.in_flight = false;
                walk.map(Some)
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(walker_gone()),
        }
    }

    /// A walk, however long it takes.
    pub fn walk_now(&mut self) -> Result<Walk, ProbeError> {
        loop {
            if let Some(walk) = self.walk_within(Duration::from_secs(3600))? {
                return Ok(walk);
            }
        }
    }
}

fn walker_gone() -> ProbeError {
    ProbeError::Walk {
        program: "walker",
        why: "the walking thread ended (it panicked); the probes went with it".into(),
    }
}
