//! `c1m-daemon` as a library: the binary (`main.rs`) is a thin wrapper
//! around [`main`]. The library exists so that the fuzz targets in `fuzz/`
//! can reach the parsers of kernel text and of command-line values
//! ([`parsers`]); it is not a stable API.

mod analysis;
mod api;
mod cli;
mod commands;
mod ebpf;
mod exit;
mod human;
mod loadgen;
mod model;
mod monitor;
mod runtime;
mod system;

pub mod parsers;

/// The messages between c1m's own processes, for the tests and scripts
/// that read them.
pub use loadgen::protocol;

use std::process::ExitCode;

use clap::Parser as _;

/// Parse the command line, set up logging, run the subcommand and turn its
/// outcome into an exit code.
pub fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output
    // goes away (`c1m-daemon run | head`) instead of panicking on EPIPE.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_secs()
        .init();
    match commands::run(cli.command) {
        Ok(exit) => exit.into(),
        Err(err) => {
            // `{:#}` puts the whole context chain on one line: what failed,
            // why, and (where the error carries it) what to do.
            eprintln!("c1m-daemon: {err:#}");
            ExitCode::FAILURE
        }
    }
}
