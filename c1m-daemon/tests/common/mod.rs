//! Helpers for end-to-end tests: run the real `c1m-daemon` binary, start
//! helper processes and end them by pid when the test ends (pass or fail),
//! and decide loudly whether a kernel test may run here.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod api;
pub mod haproxy;
pub mod memcached;
pub mod nginx;
pub mod postgresql;
pub mod redis;
/// The helpers the readers' own tests against real servers use too.
#[path = "../../src/system/apps/testing.rs"]
pub mod testing;

pub use testing::{TempDir, free_port, skip};

/// A real server a test started from a temporary config on a loopback
/// port: it and its child processes are ended by pid and reaped, its temp
/// dir removed, on drop.
pub struct RealServer {
    pub child: Child,
    /// The pid to give c1m as `--pid` (a master's workers are its children).
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    pub dir: TempDir,
}

impl RealServer {
    /// Wait until `answers` says the server just spawned serves on `port`;
    /// panic after `timeout`, with the log file in its temp dir if it has
    /// one.
    pub fn ready(
        name: &str,
        child: Child,
        port: u16,
        dir: TempDir,
        timeout: Duration,
        log: Option<&str>,
        answers: impl Fn(&std::net::SocketAddr) -> bool,
    ) -> RealServer {
        let server = RealServer {
            pid: child.id(),
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = std::time::Instant::now() + timeout;
        while !answers(&server.addr) {
            if std::time::Instant::now() >= deadline {
                let log = log
                    .and_then(|file| std::fs::read_to_string(server.dir.0.join(file)).ok())
                    .unwrap_or_default();
                panic!("{name} did not answer on {}: {log}", server.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let children = children_of(self.pid);
        testing::stop(&mut self.child, None, &children);
    }
}

use c1m_daemon::protocol::{EchoEvent, EchoReady, RunAttached, RunEvent, RunSample, from_line};
use std::{
    io::{BufRead as _, BufReader, Lines},
    net::SocketAddr,
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_c1m-daemon");

pub fn daemon() -> Command {
    Command::new(DAEMON)
}

/// Kernel tests need root (or CAP_BPF + CAP_PERFMON). Without it they skip
/// and say why, unless `C1M_REQUIRE_KERNEL_TESTS=1` (set by `cargo xtask
/// test` and CI), where a skip would hide a failure, so it panics instead.
pub fn kernel_tests_allowed(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(&format!("{test}: needs root to load eBPF programs"));
    false
}

/// A child process that is sent SIGKILL (by its pid) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ask it to stop like Ctrl-C would.
    pub fn interrupt(&self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `c1m-daemon load --target TARGET --connections N <args>` (through
/// `prefix`), its output discarded, ended by pid when dropped.
pub fn spawn_load(prefix: &[&str], target: &str, connections: u64, args: &[&str]) -> ChildGuard {
    let child = daemon_in(prefix)
        .args(["load", "--target", target])
        .args(["--connections", &connections.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning c1m-daemon load");
    ChildGuard { child }
}

/// A process that is not our direct child (a grandchild), ended by pid.
pub struct PidGuard(pub u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        // SAFETY: signalling a process this test started, by its pid.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// Lines of a child's stdout, read on a thread so a test can wait for one
/// with a timeout instead of hanging.
pub struct LineReader {
    rx: mpsc::Receiver<String>,
}

impl LineReader {
    pub fn new(stdout: ChildStdout) -> LineReader {
        LineReader::from_read(stdout)
    }

    pub fn new_stderr(stderr: std::process::ChildStderr) -> LineReader {
        LineReader::from_read(stderr)
    }

    fn from_read(stdout: impl std::io::Read + Send + 'static) -> LineReader {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let lines: Lines<_> = BufReader::new(stdout).lines();
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader { rx }
    }

    /// The next line, or `None` at end of output or after `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Skip lines until one satisfies `pred`; panics after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_line(left) {
                Some(line) if pred(&line) => return line,
                Some(_) => {}
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }
}

/// Start `c1m-daemon echo` on a free loopback port.
pub fn spawn_echo() -> (ChildGuard, SocketAddr) {
    let (guard, line) = spawn_echo_in(&[], &[]);
    (guard, echo_address(&line))
}

/// `c1m-daemon <args>`, run through `prefix` (e.g. `prlimit ... --` or
/// `ip netns exec NAME`) when one is given.
pub fn daemon_in(prefix: &[&str]) -> Command {
    match prefix {
        [] => daemon(),
        [first, rest @ ..] => {
            let mut command = Command::new(first);
            command.args(rest).arg(DAEMON);
            command
        }
    }
}

/// Start `c1m-daemon echo --json <args>` (through `prefix`; on 127.0.0.1:0
/// unless `args` has a `--listen`) and return it with its first line, the
/// protocol's `listening` event (read it with [`echo_ready`]).
pub fn spawn_echo_in(prefix: &[&str], args: &[&str]) -> (ChildGuard, String) {
    let mut command = daemon_in(prefix);
    command.args(["echo", "--json"]);
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning c1m-daemon echo");
    let lines = LineReader::new(child.stdout.take().unwrap());
    let guard = ChildGuard { child };
    let line = lines.wait_for(Duration::from_secs(10), "echo to listen", |l| {
        l.contains(r#""event":"listening""#)
    });
    (guard, line)
}

/// The echo server's `listening` event.
pub fn echo_ready(line: &str) -> EchoReady {
    match from_line::<EchoEvent>(line) {
        Ok(EchoEvent::Listening(ready)) => ready,
        other => panic!("not a listening event: {line:?} ({other:?})"),
    }
}

/// The address in the echo server's `listening` event.
pub fn echo_address(line: &str) -> SocketAddr {
    echo_ready(line).addr
}

/// Start `c1m-daemon report --json <args>` (through `prefix`), wait until it
/// has attached, and return it with its stdout (the report, at the end).
pub fn spawn_report(prefix: &[&str], args: &[&str]) -> (ChildGuard, std::process::ChildStdout) {
    let mut child = daemon_in(prefix)
        .args(["report", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning c1m-daemon report");
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard { child };
    stderr.wait_for(Duration::from_secs(30), "report to attach", |l| {
        l.contains("attached")
    });
    (guard, stdout)
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to the API");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

/// The `attached` line of `run --json`, if `line` is one.
pub fn run_attached(line: &str) -> Option<RunAttached> {
    match RunEvent::from_line(line) {
        Ok(RunEvent::Attached(attached)) => Some(attached),
        _ => None,
    }
}

/// A `sample` line of `run --json`, if `line` is one.
pub fn run_sample(line: &str) -> Option<RunSample> {
    match RunEvent::from_line(line) {
        Ok(RunEvent::Sample(sample)) => Some(sample),
        _ => None,
    }
}

/// Start `c1m-daemon run --json` on `pid` and wait until it has attached.
pub fn spawn_run(pid: u32, extra: &[&str]) -> (ChildGuard, LineReader) {
    let (guard, lines, _) = spawn_run_with_api(pid, extra);
    (guard, lines)
}

/// Like [`spawn_run`], also returning the API's address.
pub fn spawn_run_with_api(pid: u32, extra: &[&str]) -> (ChildGuard, LineReader, String) {
    spawn_run_on(&["--pid", &pid.to_string()], extra)
}

/// [`spawn_run_with_api`] on any target (`--pid P`, `--cgroup PATH`, ...).
pub fn spawn_run_on(target: &[&str], extra: &[&str]) -> (ChildGuard, LineReader, String) {
    let mut child = daemon()
        .args([
            "run",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "200ms",
        ])
        .args(target)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning c1m-daemon run");
    let lines = LineReader::new(child.stdout.take().unwrap());
    let guard = ChildGuard { child };
    let attached = lines.wait_for(Duration::from_secs(30), "run to attach", |l| {
        run_attached(l).is_some()
    });
    let api = run_attached(&attached).unwrap().api_addr().to_owned();
    (guard, lines, api)
}

/// A network namespace for one test, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Option<Netns> {
        let name = format!("c1m-test-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    pub fn run(&self, command: &[&str]) {
        let status = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(command)
            .status()
            .unwrap();
        assert!(status.success(), "{command:?} in {}", self.0);
    }

    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.0]
    }

    /// A command's stdout, run inside the namespace.
    pub fn output(&self, command: &[&str]) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(command)
            .output()
            .unwrap();
        assert!(output.status.success(), "{command:?} in {}", self.0);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Pids whose parent is `parent`, from /proc/PID/stat (after the command
/// name's `)`).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
