//! Kernel tests of c1m under faults: a kernel without BTF, a target that
//! exits or loses a child while watched, and signals arriving at any point
//! of `run`. Each must end in one clear outcome with nothing left attached.

mod common;

use std::{
    collections::BTreeSet,
    io::Read as _,
    net::TcpStream,
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Runs the daemon in a private mount namespace where an empty tmpfs hides
/// `/sys/kernel/btf`: what c1m sees on a kernel built without BTF.
const WITHOUT_BTF: &[&str] = &[
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"",
    "sh",
];

fn connect(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect()
}

/// Wait for a child and collect its stdout and stderr (both piped).
fn finish(mut child: std::process::Child) -> (std::process::ExitStatus, String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), out, err)
}

#[test]
fn without_kernel_btf_it_falls_back_to_the_tracepoint_and_still_counts() {
    if !kernel_tests_allowed("no BTF") {
        return;
    }
    let (target, addr) = spawn_echo();
    let child = daemon_in(WITHOUT_BTF)
        .args([
            "report",
            "--json",
            "--duration",
            "3s",
            "--interval",
            "200ms",
        ])
        .args(["--pid", &target.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let held = connect(addr, 25);
    let (status, out, err) = finish(child);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("falling back"), "{err}");
    assert!(err.contains("/sys/kernel/btf/vmlinux"), "{err}");
    assert!(
        err.contains("attached through tracepoint/sock/inet_sock_set_state"),
        "{err}"
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    // Without BTF the scans cannot read struct fields: counts come from the
    // state changes, and say so.
    assert_eq!(report["connections"]["source"], "transitions", "{report}");
    assert_eq!(report["connections"]["accepted_total"], 25, "{report}");
    assert_eq!(report["connections"]["current"], 25, "{report}");
    drop(held);
}

#[test]
fn forcing_tp_btf_without_kernel_btf_is_one_clear_line_and_a_non_zero_exit() {
    if !kernel_tests_allowed("no BTF, forced tp_btf") {
        return;
    }
    let (target, _) = spawn_echo();
    let child = daemon_in(WITHOUT_BTF)
        .args(["run", "--listen", "127.0.0.1:0", "--attach", "tp-btf"])
        .args(["--pid", &target.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out, err) = finish(child);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("c1m-daemon: cannot observe TCP state changes"),
        "{err}"
    );
    assert!(last.contains("BTF") && last.contains("doctor"), "{err}");
    assert!(!out.contains("attached"), "{out}");
}

#[test]
fn a_target_that_exits_during_report_keeps_its_last_data() {
    if !kernel_tests_allowed("target exit during report") {
        return;
    }
    let (target, addr) = spawn_echo();
    let (report, stdout) = spawn_report(
        &[],
        &[
            "--duration",
            "30s",
            "--interval",
            "200ms",
            "--pid",
            &target.pid().to_string(),
        ],
    );
    let held = connect(addr, 20);
    std::thread::sleep(Duration::from_millis(1500));
    drop(target); // SIGKILL: its sockets close with it
    let mut report = report;
    let status = report.child.wait().unwrap();
    let mut out = String::new();
    { stdout }.read_to_string(&mut out).unwrap();
    assert_eq!(status.code(), Some(3), "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["target"]["alive"], false, "{report}");
    assert_eq!(report["target"]["pids"], serde_json::json!([]), "{report}");
    // The last data seen while it ran, not the zeros after its death.
    assert_eq!(report["connections"]["current"], 20, "{report}");
    let exited = report["target"]["exited"].as_array().unwrap();
    assert!(
        exited.iter().any(|p| p["named"] == true),
        "the named process is listed as exited: {report}"
    );
    drop(held);
}

#[test]
fn a_child_that_exits_is_listed_and_the_target_stays_alive() {
    if !kernel_tests_allowed("child exit") {
        return;
    }
    // A shell whose child (`sleep 2`) exits while c1m watches.
    let shell = ChildGuard {
        child: Command::new("sh")
            .args(["-c", "sleep 2; exec sleep 60"])
            .spawn()
            .unwrap(),
    };
    let (status, out, err) = finish(
        daemon()
            .args([
                "report",
                "--json",
                "--duration",
                "4s",
                "--interval",
                "200ms",
            ])
            .args(["--pid", &shell.pid().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(status.success(), "{status}: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["target"]["alive"], true, "{report}");
    assert_eq!(
        report["target"]["pids"],
        serde_json::json!([shell.pid()]),
        "{report}"
    );
    let exited = report["target"]["exited"].as_array().unwrap();
    assert_eq!(exited.len(), 1, "{report}");
    assert_eq!(exited[0]["comm"], "sleep", "{report}");
    assert_eq!(exited[0]["named"], false, "{report}");
}

/// The BPF objects (programs, links, maps) a process holds, by kind and id,
/// read from its fdinfo.
fn bpf_objects_of(pid: u32) -> BTreeSet<(&'static str, u64)> {
    let mut objects = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return objects;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            for (key, kind) in [
                ("prog_id:", "prog"),
                ("link_id:", "link"),
                ("map_id:", "map"),
            ] {
                if let Some(id) = line.strip_prefix(key).and_then(|v| v.trim().parse().ok()) {
                    objects.insert((kind, id));
                }
            }
        }
    }
    objects
}

/// Whether a BPF object still exists 3 s after its holder exited (the
/// kernel frees maps from a work queue, a moment after the last fd closes).
fn bpf_object_outlives(kind: &str, id: u64) -> bool {
    let exists = || {
        Command::new("bpftool")
            .args([kind, "show", "id", &id.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("bpftool (installed by `cargo xtask setup`)")
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while exists() {
        if Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sigint_or_sigterm_at_any_point_of_run_leaves_nothing_attached() {
    if !kernel_tests_allowed("signals during run") {
        return;
    }
    let (target, addr) = spawn_echo();
    // Enough sockets that a sample takes a moment to be caught in.
    let held = connect(addr, 2000);
    let pins_before = pins();
    let delays_ms = [0u64, 30, 100, 250, 500, 1000, 2000];
    for (round, delay) in delays_ms.into_iter().enumerate() {
        let signal = if round % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let mut run = ChildGuard {
            child: daemon()
                .args(["run", "--listen", "127.0.0.1:0", "--interval", "50ms"])
                .args(["--pid", &target.pid().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        };
        let pid = run.pid();
        // Watch what it holds until the signal, then send it.
        let mut held_objects = BTreeSet::new();
        let signal_at = Instant::now() + Duration::from_millis(delay);
        while Instant::now() < signal_at {
            held_objects.extend(bpf_objects_of(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
        held_objects.extend(bpf_objects_of(pid));
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = run.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "run ignored signal {signal} sent after {delay} ms"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        run.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        // Either it stopped cleanly through its handler, or the signal came
        // before the handler existed and the default action ended it.
        assert!(
            status.success() || status.signal() == Some(signal),
            "signal {signal} after {delay} ms: {status}: {err}"
        );
        for (kind, id) in &held_objects {
            assert!(
                !bpf_object_outlives(kind, *id),
                "{kind} {id} outlived run (signal {signal} after {delay} ms)"
            );
        }
        if delay >= 1000 {
            assert!(
                held_objects.iter().any(|(kind, _)| *kind == "link"),
                "by {delay} ms run had attached: the check above must have covered links"
            );
        }
    }
    assert_eq!(pins(), pins_before, "nothing may be pinned in /sys/fs/bpf");
    drop(held);
}

/// Everything pinned under /sys/fs/bpf.
fn pins() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            }
            found.insert(path.display().to_string());
        }
    }
    let mut found = BTreeSet::new();
    walk(std::path::Path::new("/sys/fs/bpf"), &mut found);
    found
}
