//! One module per subcommand. Each returns the process exit code, or an
//! error that `main` prints on one line.

mod doctor;
pub mod ramp;
mod report;
mod run;

use std::process::ExitCode;

use crate::cli::Command;

/// Exit code when the watched target exited (distinct from a failure of
/// c1m itself, so scripts can tell them apart).
pub const EXIT_TARGET_GONE: u8 = 3;
/// `load` (and `selftest`) stopped short of the connections asked for: a
/// limit was hit; the output names it.
pub const EXIT_LIMIT_HIT: u8 = 4;

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Doctor(args) => doctor::doctor(&args),
        Command::Run(args) => run::run(&args),
        Command::Report(args) => report::report(&args),
        Command::Echo(args) => crate::tools::echo::serve(&crate::tools::echo::EchoOptions {
            listen: args.listen,
            workers: args.workers,
            connections: args.connections,
            state_bytes: args.state_bytes as usize,
            worker_fd: args.worker_fd,
            close_after_echo: args.close_after_echo,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Selftest(args) => {
            crate::tools::selftest::run(crate::tools::selftest::SelftestOptions {
                connections: args.connections,
                rate: args.rate,
                steps: args.steps,
                json_path: args.json.clone(),
                listen: args.listen,
                token: args.token.clone(),
                max_duration: args.max_duration,
                interval: std::time::Duration::from_secs(1),
            })
        }
        Command::Ramp(args) => ramp::run(&args),
        Command::Diff(args) => ramp::diff::run(&args),
        Command::Load(args) => match &args.shard_plan {
            Some(plan) => crate::tools::load::run_as_shard(plan),
            None => crate::tools::load::run(args.options()?),
        },
    }
}
