//! `c1m-daemon`: how many TCP connections can your server hold on this box,
//! and what stops it? Everything lives in the library (`lib.rs`).

fn main() -> std::process::ExitCode {
    c1m_daemon::main()
}
