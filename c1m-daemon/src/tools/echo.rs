//! `c1m-daemon echo`: a trivial TCP echo server, the reference target.
//!
//! Idle connections are made cheap on purpose: a connection's task holds no
//! buffer while it waits; it borrows a stack buffer only between
//! "readable" and the end of the echo, so an idle connection costs the task
//! and the socket registration, not 4 KiB.

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};

#[derive(Default)]
pub struct EchoCounters {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    /// errno name -> count, for accept and connection errors.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl EchoCounters {
    fn count_error(&self, err: &io::Error) {
        let name = errno_name(err);
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert(0) += 1;
    }
}

/// `EMFILE`, `ECONNRESET`... or the error kind when there is no errno.
pub fn errno_name(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return format!("{:?}", err.kind());
    };
    let name = match code {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EPIPE => "EPIPE",
        other => return format!("errno {other}"),
    };
    name.to_owned()
}

/// Serve until SIGINT/SIGTERM, printing the bound address first (tests and
/// scripts read it when asked for port 0).
pub fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        println!("c1m echo listening on {bound} (pid {})", std::process::id());
        let counters = Arc::new(EchoCounters::default());
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(echo_connection(stream, counters.clone()));
                    }
                    Err(err) => {
                        counters.count_error(&err);
                        // EMFILE and friends persist; do not spin on them.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
            }
        }
        let errors = counters.errors.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!(
            "c1m echo: accepted {}, closed {}, errors {:?}",
            counters.accepted.load(Ordering::Relaxed),
            counters.closed.load(Ordering::Relaxed),
            *errors
        );
        Ok(())
    })
}

async fn echo_connection(mut stream: TcpStream, counters: Arc<EchoCounters>) {
    loop {
        if let Err(err) = stream.readable().await {
            counters.count_error(&err);
            break;
        }
        let mut buf = [0u8; 4096];
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(err) = stream.write_all(&buf[..n]).await {
                    counters.count_error(&err);
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => {
                counters.count_error(&err);
                break;
            }
        }
    }
    counters.closed.fetch_add(1, Ordering::Relaxed);
}
