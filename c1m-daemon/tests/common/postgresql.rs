//! A real PostgreSQL for the end-to-end tests: a temporary cluster
//! (`initdb`) started with `-c max_connections=CAP` on a free loopback
//! port, ended by pid; and a minimal client of its protocol (v3:
//! StartupMessage, trust authentication, simple Query) to open sessions,
//! both shared with the reader's own test (`testing::postgres`).
//!
//! Sessions need that client: `c1m-daemon load` cannot make postgres count
//! one. A raw TCP connection gets a backend process of its own, which waits
//! up to authentication_timeout (60 s) for a startup packet and is never
//! refused before; load's messages (bytes 0, 1, 2, ...) read as a startup
//! packet 66051 bytes long, which postgres closes as invalid.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

pub use super::testing::postgres::{Postgres, query, session};

/// The ordinary (non-superuser) role `start` creates: the one
/// [`allowed`] counts for.
pub const USER: &str = "app";

/// Sessions an ordinary role gets with `max_connections = cap`: the last 3
/// (superuser_reserved_connections' default) are kept for superusers.
pub fn allowed(cap: u64) -> u64 {
    cap - 3
}

/// A running postgres, ended (immediate shutdown, then SIGKILL) and its
/// cluster removed on drop.
pub type Running = Postgres;

/// Start postgres with `max_connections = cap` and the role [`USER`];
/// None (after "SKIPPED") when it is not installed, unless
/// C1M_REQUIRE_KERNEL_TESTS=1.
pub fn start(cap: u64) -> Option<Running> {
    let max_connections = format!("max_connections={cap}");
    let running = Postgres::start("e2e", &["-c", &max_connections], &[], "")?;
    query(
        running.addr,
        "postgres",
        &format!("CREATE ROLE {USER} LOGIN"),
    )
    .unwrap();
    Some(running)
}

/// Sessions of [`USER`] held on a thread, like an application's pool:
/// `attempts` opened one by one, then one more tried every 200 ms (each
/// refused while the server is full) until dropped, which closes them all.
pub struct Sessions {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    last_refusal: Arc<std::sync::Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Sessions {
    pub fn hold(addr: SocketAddr, attempts: u64) -> Sessions {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let last_refusal = Arc::new(std::sync::Mutex::new(String::new()));
        let (s, o, r, l) = (
            stop.clone(),
            open.clone(),
            refused.clone(),
            last_refusal.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut tried = 0;
            while !s.load(Ordering::Relaxed) {
                if tried >= attempts {
                    std::thread::sleep(Duration::from_millis(200));
                }
                tried += 1;
                match session(addr, USER) {
                    Ok(stream) => {
                        held.push(stream);
                        o.store(held.len() as u64, Ordering::Relaxed);
                    }
                    Err(why) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        *l.lock().unwrap() = why;
                    }
                }
            }
        });
        Sessions {
            stop,
            open,
            refused,
            last_refusal,
            thread: Some(thread),
        }
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn last_refusal(&self) -> String {
        self.last_refusal.lock().unwrap().clone()
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
