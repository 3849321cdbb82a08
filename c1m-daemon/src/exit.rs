//! c1m's exit codes, in one place. Library code returns outcomes (a load
//! that fell short, a target that exited); only `commands/` turns them
//! into a code, so scripts see the same number for the same situation.

use std::process::ExitCode;

/// What the process tells its caller. `main` exits 1 on an error it prints
/// (`Failure`) and clap exits 2 on a usage error; the commands return
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    /// c1m could not do its job (`main` also uses it for an error it
    /// prints), or `doctor` found this box cannot run it.
    Failure = 1,
    /// The watched target exited (distinct from a failure of c1m itself,
    /// so scripts can tell them apart).
    TargetGone = 3,
    /// `load` (and `selftest`) stopped short of the connections asked for:
    /// a limit was hit; the output names it.
    LimitHit = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
