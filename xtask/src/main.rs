//! `cargo xtask`: the few commands a newcomer needs, each doing its own
//! set-up first so they work on a fresh machine.
//!
//! - `cargo xtask run`: build and run `c1m-daemon run`: the host overview
//!   (every process with TCP sockets); `-- --pid <PID>` watches one.
//! - `cargo xtask test`: every test, kernel tests included (they may not
//!   skip), the dashboard's browser test, and a short fuzz of the parsers.
//! - `cargo xtask selftest [-- args]`: the echo-server ramp (release build).
//! - `cargo xtask ramp -- --target HOST:PORT --pid PID ...`: ramp your own
//!   server (release build).
//! - `cargo xtask setup`: only the set-up (apt packages, bpf-linker, the
//!   rustup link to Debian's rustc), idempotent.
//! - `cargo xtask daemon -- <args>`: build and run `c1m-daemon <args>`.
//! - `cargo xtask fuzz [--seconds N] [TARGET]`: fuzz the parsers.
//! - `cargo xtask bench <overhead|scale|top|ramp|soak>`: benchmarks that print
//!   numbers (`bench.rs`).

mod bench;
mod fuzz;
/// The messages between c1m's processes: the daemon's own file, compiled
/// here too, so the bench reads exactly what the daemon writes.
#[path = "../../c1m-daemon/src/loadgen/protocol.rs"]
#[allow(dead_code, reason = "the bench reads a few of the messages")]
mod protocol;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test c1m (does its own set-up)"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building c1m needs on this machine (idempotent).
    Setup,
    /// Build (release) and run `c1m-daemon run` with these arguments:
    /// none serves the host overview (every process holding TCP sockets)
    /// at http://127.0.0.1:8080/; `cargo xtask run -- --pid 1234` watches
    /// one process.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build (release) and run `c1m-daemon` with any subcommand,
    /// e.g. `cargo xtask daemon -- doctor`.
    Daemon {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks that print numbers: `overhead` (churn rate with and
    /// without c1m), `scale` (sample time and daemon memory at N
    /// connections), `top` (one refresh of the host overview at N
    /// connections held by echo + load), `ramp` (selftest to N), `soak` (N
    /// held for --minutes with run sampling: RSS, sample gaps, drops).
    Bench {
        #[arg(value_enum)]
        what: BenchKind,
        /// Connections for `scale` and `ramp`.
        #[arg(long, default_value_t = 100_000)]
        connections: u64,
        /// Seconds of churn per measurement for `overhead`.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Minutes to hold for `soak`.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Build (release) and run `c1m-daemon selftest` with these arguments:
    /// ramp the bundled echo server as far as this box allows.
    Selftest {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build (release) and run `c1m-daemon ramp` with these arguments:
    /// ramp your own server, e.g. `cargo xtask ramp -- --target
    /// 127.0.0.1:6379 --pid 1234 --connections 10000`.
    Ramp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the parsers of kernel text and command-line values (cargo-fuzz,
    /// libFuzzer) for --seconds each; a panic fails with the input saved
    /// under fuzz/artifacts/.
    Fuzz {
        /// Seconds per fuzz target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Fuzz only these targets (default: all).
        #[arg(value_enum)]
        targets: Vec<fuzz::Target>,
    },
    /// Run every test: unit, end-to-end and kernel tests (root needed; here
    /// a kernel test that cannot run fails instead of skipping), the
    /// dashboard's browser test (headless Chromium), then 20 s of fuzzing
    /// per parser fuzz target.
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    Overhead,
    Scale,
    Top,
    Ramp,
    Soak,
}

/// Fuzzing per target in `cargo xtask test`: enough to catch a parser
/// change that panics on the seeds' neighbours; `cargo xtask fuzz` goes on
/// for longer.
const TEST_FUZZ_SECONDS: u64 = 20;

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cargo xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => setup::ensure_build_prerequisites(),
        Task::Run { args } => {
            setup::ensure_build_prerequisites()?;
            run_daemon(std::iter::once("run".to_owned()).chain(args))
        }
        Task::Daemon { args } => {
            setup::ensure_build_prerequisites()?;
            run_daemon(args)
        }
        Task::Test { args } => {
            setup::ensure_build_prerequisites()?;
            setup::ensure_test_prerequisites()?;
            cargo(
                Command::new("cargo")
                    .args(["test", "--workspace", "--exclude", "c1m-ebpf"])
                    .args(&args)
                    .env("C1M_REQUIRE_KERNEL_TESTS", "1"),
            )?;
            // The browser test of the dashboard and the fuzzing (skipped
            // when a test name filter was given: they are not cargo's tests).
            if args.is_empty() {
                browser_test()?;
                fuzz::run(&[], TEST_FUZZ_SECONDS)?;
            }
            Ok(())
        }
        Task::Bench {
            what,
            connections,
            seconds,
            minutes,
        } => {
            setup::ensure_build_prerequisites()?;
            cargo(Command::new("cargo").args(["build", "--release", "--package", "c1m-daemon"]))?;
            let root = workspace_root();
            match what {
                BenchKind::Overhead => bench::overhead(&root, seconds),
                BenchKind::Scale => bench::scale(&root, connections),
                BenchKind::Top => bench::top(&root, connections),
                BenchKind::Ramp => bench::ramp(&root, connections),
                BenchKind::Soak => bench::soak(&root, connections, minutes),
            }
        }
        Task::Fuzz { seconds, targets } => {
            setup::ensure_build_prerequisites()?;
            setup::ensure_cargo_fuzz()?;
            fuzz::run(&targets, seconds)
        }
        Task::Selftest { args } => {
            setup::ensure_build_prerequisites()?;
            run_daemon(std::iter::once("selftest".to_owned()).chain(args))
        }
        Task::Ramp { args } => {
            setup::ensure_build_prerequisites()?;
            run_daemon(std::iter::once("ramp".to_owned()).chain(args))
        }
    }
}

/// The browser tests against the debug daemon cargo test just built:
/// `web/tests/dashboard.test.mjs` (saves `target/dashboard.png`),
/// `web/tests/overview.test.mjs` (the host overview of `run` without a
/// target, saves `target/overview.png`) and
/// `web/tests/ramp-report.test.mjs` (the ramp's HTML report from file://,
/// saves `target/ramp-report.{html,png}`).
fn browser_test() -> anyhow::Result<()> {
    let root = workspace_root();
    for test in [
        "dashboard.test.mjs",
        "overview.test.mjs",
        "ramp-report.test.mjs",
    ] {
        let status = Command::new("node")
            .arg(root.join("web/tests").join(test))
            .current_dir(&root)
            .env("C1M_DAEMON", root.join("target/debug/c1m-daemon"))
            .env("C1M_SCREENSHOT", root.join("target/dashboard.png"))
            .env("C1M_OVERVIEW_SCREENSHOT", root.join("target/overview.png"))
            .env("C1M_RAMP_REPORT", root.join("target/ramp-report.html"))
            .status()
            .with_context(|| format!("running node (the browser test {test})"))?;
        if !status.success() {
            bail!("the browser test {test} failed ({status})");
        }
    }
    Ok(())
}

fn run_daemon(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    cargo(Command::new("cargo").args(["build", "--release", "--package", "c1m-daemon"]))?;
    let binary = workspace_root().join("target/release/c1m-daemon");
    let status = Command::new(&binary)
        .args(args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        // The daemon already printed what went wrong.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn cargo(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .current_dir(workspace_root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
