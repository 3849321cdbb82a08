//! The echo floor: the bundled echo server ramped on this box the same way
//! (each connection echoes one byte once, so it counts once answered), to
//! show beside the user's figure what any server pays per connection here.
//! Or read from an earlier `ramp --json` / `selftest --json` (`--baseline`).

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
};

use super::{
    engine::{self, Live, Plan},
    result::{Cost, Floor, RampResult, record},
};
use crate::{
    loadgen::{
        child::{spawn_self, terminate},
        protocol::{EchoEvent, EchoReady, from_line},
    },
    monitor::Sampler,
    system::process::TargetProcess,
};

/// The floor ramps at most this many connections: enough for a marginal
/// figure with a good fit, quick on any box.
pub const FLOOR_CONNECTIONS_MAX: u64 = 20_000;

/// Ramp the echo server to min(N, 20,000) in `steps` steps.
pub async fn ramp_echo(
    connections: u64,
    steps: u64,
    deadline: tokio::time::Instant,
    live: &mut Live<'_>,
) -> anyhow::Result<Floor> {
    let n = connections.min(FLOOR_CONNECTIONS_MAX);
    let echo = start_echo(n).await?;
    let EchoReady { addr, pid, .. } = echo.ready;
    eprintln!(
        "c1m ramp: the echo floor first: {n} connections to the echo server (pid {pid}, {addr})"
    );
    let outcome = {
        let mut sampler = Sampler::start(vec![TargetProcess::resolve(pid)?], true, None)?;
        let mut floor_live = Live {
            sampler: Some(&mut sampler),
            publish: live.publish,
            interval: live.interval,
            samples: live.samples,
        };
        let plan = Plan {
            target: addr,
            connections: n,
            steps,
            rate: None,
            source_ips: None,
            greeting: None,
            message_bytes: 1,
            connect_timeout: Duration::from_secs(5),
            hold: Duration::ZERO,
            deadline,
            phase: "floor",
            server_pid: Some(pid),
        };
        let outcome = engine::ramp(&plan, &mut floor_live).await;
        live.samples = floor_live.samples;
        outcome?
    };
    stop_echo(echo).await;
    let report = outcome.report.context("the floor ramp has no report")?;
    let cost: Cost = record(&report.cost_per_connection)?;
    Ok(Floor {
        kernel_bytes: Some(cost.kernel_bytes),
        user_bytes: cost.user_per_connection(),
        fds: cost.fds_per_connection(),
        connections: outcome.reached,
        source: format!(
            "ramped here: the echo server, {} connections",
            outcome.reached
        ),
    })
}

/// The bundled echo server, started for a ramp.
pub struct Echo {
    child: Child,
    /// Kept open so its last line (`stats`) has a reader.
    _stdout: Lines<BufReader<ChildStdout>>,
    pub ready: EchoReady,
}

/// Start the echo server (`echo --json`) planned for `n` connections on a
/// free loopback port, and read its ready line.
pub async fn start_echo(n: u64) -> anyhow::Result<Echo> {
    let mut echo = spawn_self(
        [
            "echo",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--connections",
            &n.to_string(),
        ],
        |_| {},
    )?;
    let mut lines = BufReader::new(echo.stdout.take().expect("piped")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the echo server did not start within 30 s")??
        .context("the echo server exited at start")?;
    let EchoEvent::Listening(ready) = from_line(&line)? else {
        bail!("unexpected first line from the echo server: {line:?}");
    };
    Ok(Echo {
        child: echo,
        _stdout: lines,
        ready,
    })
}

/// Stop the echo server and its workers, and wait for it.
pub async fn stop_echo(mut echo: Echo) {
    terminate(&echo.child);
    let _ = tokio::time::timeout(Duration::from_secs(30), echo.child.wait()).await;
}

/// The floor from an earlier run of the echo server: a `ramp --json` (its
/// own cost, the target being the echo server) or a `selftest --json`
/// (the same JSON with the selftest's own fields added).
pub fn read_baseline(path: &Path) -> anyhow::Result<Floor> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ramp: RampResult = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is neither a `ramp --json` nor a `selftest --json` file",
            path.display()
        )
    })?;
    let cost = ramp.cost_per_connection.with_context(|| {
        format!(
            "{} is a ramp without the server's cost (no --pid); give a ramp of the echo server",
            path.display()
        )
    })?;
    Ok(Floor {
        kernel_bytes: Some(cost.kernel_bytes),
        user_bytes: cost.user_per_connection(),
        fds: cost.fds_per_connection(),
        connections: ramp.reached,
        source: format!("--baseline {}", path.display()),
    })
}
