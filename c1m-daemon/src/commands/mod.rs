//! One module per subcommand. Each returns its [`Exit`], or an error that
//! `main` prints on one line. This is the only room that turns outcomes
//! (a load that fell short, a target that exited) into exit codes.

mod doctor;
pub mod ramp;
mod report;
mod run;
mod target;
mod top;

use crate::{cli::Command, exit::Exit, loadgen};

pub fn run(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Doctor(args) => doctor::doctor(&args),
        Command::Run(args) => run::run(&args),
        Command::Report(args) => report::report(&args),
        Command::Top(args) => top::top(&args),
        Command::Echo(args) => loadgen::echo::serve(&args.options()).map(|()| Exit::Ok),
        Command::Selftest(args) => ramp::selftest::run(&args),
        Command::Ramp(args) => ramp::run(&args),
        Command::Diff(args) => ramp::diff::run(&args).map(|()| Exit::Ok),
        Command::Load(args) => match &args.shard_plan {
            Some(plan) => loadgen::load::run_as_shard(plan).map(|()| Exit::Ok),
            None => {
                let outcome = loadgen::load::run(args.options()?)?;
                Ok(if outcome.fell_short() {
                    Exit::LimitHit
                } else {
                    Exit::Ok
                })
            }
        },
    }
}
