//! `c1m-daemon`: how many TCP connections can your server hold on this box,
//! and what stops it? This file only parses the command line, sets up
//! logging, runs the subcommand and turns its outcome into an exit code.

mod analysis;
mod api;
mod cli;
mod commands;
mod ebpf;
mod model;
mod sampling;
mod system;
mod target;
mod tools;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output
    // goes away (`c1m-daemon run | head`) instead of panicking on EPIPE.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_secs()
        .init();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` puts the whole context chain on one line: what failed,
            // why, and (where the error carries it) what to do.
            eprintln!("c1m-daemon: {err:#}");
            ExitCode::FAILURE
        }
    }
}
