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
    task::JoinSet,
};

use super::{announce, report_stats};
use crate::{
    loadgen::{
        child::{spawn_self, terminate_pid},
        protocol::{EchoEvent, EchoReady, EchoStats, from_line},
    },
    runtime::Shutdown,
};

pub fn run(
    listener: TcpListener,
    workers: u64,
    state_bytes: usize,
    close_after_echo: bool,
    json: bool,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let runtime = crate::runtime::current_thread()?;
    runtime.block_on(async move {
        let mut shutdown = Shutdown::install()?;
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
        announce(
            json,
            &EchoReady {
                addr: bound,
                pid: std::process::id(),
                workers,
                worker_pids: pids.clone(),
            },
        );

        let mut failure = None;
        tokio::select! {
            _ = shutdown.recv() => {},
            Some(done) = running.join_next() => {
                failure = Some(match done {
                    Ok((pid, status, _)) => format!("echo worker {pid} exited ({status})"),
                    Err(err) => format!("echo worker task failed: {err}"),
                });
            }
        }
        for &pid in &pids {
            terminate_pid(pid);
        }
        let mut sum = EchoStats::default();
        while let Some(done) = running.join_next().await {
            if let Ok((_, _, Some(totals))) = done {
                sum += &totals;
            }
        }
        report_stats(json, &sum, workers);
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
async fn collect(mut child: Child) -> (u32, std::process::ExitStatus, Option<EchoStats>) {
    let pid = child.id().unwrap_or(0);
    let mut totals = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(EchoEvent::Stats(stats)) = from_line(&line) {
                totals = Some(stats);
            }
        }
    }
    let status = child
        .wait()
        .await
        .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(-1));
    (pid, status, totals)
}
