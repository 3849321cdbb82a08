//! The echo server's parent process when it needs several workers: starts
//! them on the shared listening socket, stops them all on SIGINT/SIGTERM
//! (or when one dies), and sums what they did.

use std::{
    net::TcpListener,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::Child,
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

use super::worker::WorkerTotals;
use crate::tools::child::spawn_self;

pub fn run(
    listener: TcpListener,
    workers: u64,
    state_bytes: usize,
    close_after_echo: bool,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut running = JoinSet::new();
        let mut pids = Vec::new();
        for index in 0..workers {
            let child = spawn_worker(&listener, state_bytes, close_after_echo)
                .with_context(|| format!("starting echo worker {index}"))?;
            pids.push(child.id().unwrap_or(0));
            running.spawn(collect(child));
        }
        // The workers hold the socket now; the supervisor accepts nothing.
        drop(listener);
        println!(
            "c1m echo listening on {bound} (pid {}) with {workers} workers {pids:?}",
            std::process::id()
        );

        let mut failure = None;
        tokio::select! {
            _ = sigint.recv() => {},
            _ = sigterm.recv() => {},
            Some(done) = running.join_next() => {
                failure = Some(match done {
                    Ok((pid, status, _)) => format!("echo worker {pid} exited ({status})"),
                    Err(err) => format!("echo worker task failed: {err}"),
                });
            }
        }
        for &pid in &pids {
            // SAFETY: kill(2) on our own child's pid; it may be gone (ESRCH).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let mut sum = WorkerTotals::default();
        while let Some(done) = running.join_next().await {
            if let Ok((_, _, Some(totals))) = done {
                sum.accepted += totals.accepted;
                sum.closed += totals.closed;
                sum.open_at_exit += totals.open_at_exit;
                for (name, n) in totals.errors {
                    *sum.errors.entry(name).or_insert(0) += n;
                }
            }
        }
        eprintln!(
            "c1m echo: accepted {}, closed {}, open at exit {}, errors {:?} ({workers} workers)",
            sum.accepted, sum.closed, sum.open_at_exit, sum.errors
        );
        match failure {
            Some(why) => anyhow::bail!("{why}; stopped the other workers"),
            None => Ok(()),
        }
    })
}

fn spawn_worker(
    listener: &TcpListener,
    state_bytes: usize,
    close_after_echo: bool,
) -> anyhow::Result<Child> {
    let fd = listener.as_raw_fd();
    let state_bytes = state_bytes.to_string();
    let fd_text = fd.to_string();
    let mut args = vec![
        "echo",
        "--worker-fd",
        &fd_text,
        "--state-bytes",
        &state_bytes,
    ];
    if close_after_echo {
        args.push("--close-after-echo");
    }
    spawn_self(args, |command| {
        // SAFETY: between fork and exec only fcntl on an fd we own.
        unsafe {
            command.pre_exec(move || {
                // Let the worker inherit the listener across exec.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                Ok(())
            });
        }
    })
}

/// Wait for a worker to exit and read its totals (its last stdout line).
async fn collect(mut child: Child) -> (u32, std::process::ExitStatus, Option<WorkerTotals>) {
    let pid = child.id().unwrap_or(0);
    let mut totals = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            totals = serde_json::from_str(&line).ok();
        }
    }
    let status = child
        .wait()
        .await
        .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(-1));
    (pid, status, totals)
}
