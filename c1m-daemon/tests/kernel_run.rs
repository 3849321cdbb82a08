//! Kernel tests of `c1m-daemon run`: the real binary loads the real probes
//! and must attribute exactly the target's connections, including the ones
//! it *accepted* (whose state changes run in softirq context).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    time::Duration,
};

use common::*;

/// Open `n` connections and wait until the server has echoed one byte on
/// each, so each is accepted and ESTABLISHED on the server side.
fn connect_and_echo(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).expect("echo");
            stream
        })
        .collect()
}

fn run_attribution(attach: &str) {
    let (target, target_addr) = spawn_echo();
    let (_other, other_addr) = spawn_echo();
    let (daemon, lines) = spawn_run(target.pid(), &["--attach", attach]);

    // 200 to the target and, at the same time, 50 between two other
    // processes (this test process and a second echo server).
    let others = std::thread::spawn(move || connect_and_echo(other_addr, 50));
    let held = connect_and_echo(target_addr, 200);
    let held_others = others.join().unwrap();

    lines.wait_for(Duration::from_secs(10), "200 established", |l| {
        run_sample(l).is_some_and(|s| s.established_total == 200)
    });
    daemon.interrupt();
    let last = std::iter::from_fn(|| lines.next_line(Duration::from_secs(10)))
        .last()
        .map(|l| run_sample(&l).unwrap())
        .expect("a final sample after SIGINT");

    assert_eq!(last.established_total, 200, "{last:?}");
    assert_eq!(last.established, 200, "{last:?}");
    assert_eq!(
        last.transitions_total.get("SYN_RECV->ESTABLISHED"),
        Some(&200),
        "{last:?}"
    );
    assert_eq!(
        last.transitions_total.get("LISTEN->SYN_RECV"),
        Some(&200),
        "{last:?}"
    );
    // Nothing else happened to the target's sockets: the 50 others and the
    // client ends of the 200 are not its sockets.
    assert_eq!(last.transitions_total.len(), 2, "{last:?}");
    assert!(last.drops.values().all(|v| *v == 0), "{last:?}");
    drop((held, held_others));
}

#[test]
fn counts_exactly_the_targets_accepted_connections_via_tp_btf() {
    if kernel_tests_allowed("tp_btf attribution") {
        run_attribution("tp-btf");
    }
}

#[test]
fn counts_exactly_the_targets_accepted_connections_via_tracepoint_fallback() {
    if kernel_tests_allowed("tracepoint attribution") {
        run_attribution("tracepoint");
    }
}

#[test]
fn closes_are_followed_until_the_sockets_are_gone() {
    if !kernel_tests_allowed("close tracking") {
        return;
    }
    let (target, addr) = spawn_echo();
    let (daemon, lines) = spawn_run(target.pid(), &[]);
    let held = connect_and_echo(addr, 20);
    drop(held); // the clients close first: the server sees CLOSE_WAIT -> LAST_ACK -> CLOSE
    lines.wait_for(Duration::from_secs(10), "all closed", |l| {
        run_sample(l).is_some_and(|s| {
            s.established_total == 20 && s.transitions_total.get("LAST_ACK->CLOSE") == Some(&20)
        })
    });
    let line = lines.next_line(Duration::from_secs(5)).unwrap();
    let sample = run_sample(&line).unwrap();
    assert_eq!(sample.established, 0, "{sample:?}");
    assert_eq!(sample.by_state.len(), 0, "{sample:?}");
    drop(daemon);
}

#[test]
fn a_target_that_exits_while_watched_ends_the_run_with_one_clear_line() {
    if !kernel_tests_allowed("target exit") {
        return;
    }
    let (target, _) = spawn_echo();
    let mut daemon = common::daemon()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "100ms",
            "--pid",
            &target.pid().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(target); // SIGKILL and reap
    let mut stderr = String::new();
    let mut pipe = daemon.stderr.take().unwrap();
    let status = daemon.wait().unwrap();
    pipe.read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("exited"), "{stderr}");
    assert!(stderr.contains("new pid"), "{stderr}");
}

/// A shell that starts the echo server as its child only after c1m has
/// attached to the shell: the server's connections count only when child
/// processes are followed.
fn run_with_late_child(extra: &[&str]) -> u64 {
    let script = format!("sleep 1.5; {DAEMON} echo --json --listen 127.0.0.1:0; true");
    let mut shell = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shell_out = LineReader::new(shell.stdout.take().unwrap());
    let shell = ChildGuard { child: shell };
    let (daemon, lines) = spawn_run(shell.pid(), extra);
    let line = shell_out.wait_for(Duration::from_secs(10), "the child echo", |l| {
        l.contains(r#""event":"listening""#)
    });
    let ready = echo_ready(&line);
    let addr: SocketAddr = ready.addr;
    let _echo = PidGuard(ready.pid);
    let held = connect_and_echo(addr, 30);
    std::thread::sleep(Duration::from_millis(600));
    daemon.interrupt();
    let last = std::iter::from_fn(|| lines.next_line(Duration::from_secs(10)))
        .last()
        .map(|l| run_sample(&l).unwrap())
        .expect("a final sample");
    drop(held);
    last.established_total
}

#[test]
fn child_processes_started_after_attach_are_part_of_the_target() {
    if kernel_tests_allowed("children") {
        assert_eq!(run_with_late_child(&[]), 30);
    }
}

#[test]
fn no_children_watches_only_the_named_process() {
    if kernel_tests_allowed("--no-children") {
        assert_eq!(run_with_late_child(&["--no-children"]), 0);
    }
}
