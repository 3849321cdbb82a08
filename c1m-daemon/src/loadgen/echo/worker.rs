//! One echo process: an accept thread on the shared listener hands new
//! connections to a single-threaded tokio loop that echoes.
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
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::{
    loadgen::{errno::ErrorCounts, protocol::EchoStats},
    runtime::Shutdown,
    system::limits::read_rlimit_nofile,
};

#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub errors: ErrorCounts,
}

impl Counters {
    fn open(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed) - self.closed.load(Ordering::Relaxed)
    }

    fn totals(&self) -> EchoStats {
        EchoStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            open_at_exit: self.open(),
            errors: self.errors.snapshot(),
        }
    }
}

/// Serve on `listener` until SIGINT/SIGTERM; returns the totals.
pub fn run(
    listener: StdListener,
    state_bytes: usize,
    close_after_echo: bool,
) -> anyhow::Result<EchoStats> {
    let runtime = crate::runtime::current_thread()?;
    let counters = Arc::new(Counters::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let (hand_over, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = {
        let (counters, stopping) = (counters.clone(), stopping.clone());
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || accept_loop(&listener, &counters, &stopping, &hand_over))
            .context("starting the accept thread")?
    };
    let result = runtime.block_on(async {
        let mut shutdown = Shutdown::install()?;
        loop {
            tokio::select! {
                stream = accepted.recv() => {
                    let Some(stream) = stream else { break };
                    match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            tokio::spawn(echo_connection(
                                stream,
                                counters.clone(),
                                state_bytes,
                                close_after_echo,
                            ));
                        }
                        Err(err) => {
                            counters.errors.count(&err);
                            counters.closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ = shutdown.recv() => break,
            }
        }
        Ok(counters.totals())
    });
    stopping.store(true, Ordering::Relaxed);
    let _ = acceptor.join();
    result
}

/// Accept on a thread of its own, through an epoll instance that watches
/// the shared listener with EPOLLEXCLUSIVE: the kernel wakes one waiting
/// worker per connection instead of all of them (with 80 workers, waking
/// all cuts the accept rate threefold). A full worker takes the listener
/// out of its epoll set, so wake-ups go to workers that can accept.
fn accept_loop(
    listener: &StdListener,
    counters: &Counters,
    stopping: &AtomicBool,
    hand_over: &tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>,
) -> io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let capacity = connection_capacity();
    // Non-blocking (a flag of the shared open file, as every worker wants):
    // accept until EAGAIN, then back to epoll.
    listener.set_nonblocking(true)?;
    let fd = listener.as_raw_fd();
    // SAFETY: plain syscalls on fds this thread owns or borrows.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `epoll` is a new fd we own; File closes it on return.
    let _epoll_guard = unsafe { std::fs::File::from_raw_fd(epoll) };
    let watch = |add: bool| {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
            u64: 0,
        };
        let op = if add {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_DEL
        };
        // SAFETY: valid epoll and listener fds, event initialised.
        unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) };
    };
    watch(true);
    let mut watching = true;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    while !stopping.load(Ordering::Relaxed) {
        if counters.open() >= capacity {
            // Full: leave new connections in the shared queue for others.
            if watching {
                watch(false);
                watching = false;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if !watching {
            watch(true);
            watching = true;
        }
        // SAFETY: `events` has room for one event; 200 ms lets us notice
        // `stopping`.
        let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 1, 200) };
        if ready <= 0 {
            continue;
        }
        while counters.open() < capacity {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true)?;
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    if hand_over.send(stream).is_err() {
                        return Ok(());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    counters.errors.count(&err);
                    // EMFILE and friends persist; do not spin on them.
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
    Ok(())
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
