//! End-to-end tests of the command line: bad input gets one clear line and
//! a non-zero exit; `doctor` reports what this machine really allows.

mod common;

use std::{path::Path, process::Output};

use common::*;
use serde_json::Value;

/// Run the daemon as `nobody` with no capabilities.
fn unprivileged(args: &[&str]) -> Output {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "setpriv (util-linux) is needed for this test; `cargo xtask setup` installs it"
    );
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(DAEMON)
        .args(args)
        .output()
        .unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_with_a_pid_that_does_not_exist_says_so() {
    let output = daemon()
        .args(["run", "--pid", "2147483000"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("no process with pid 2147483000"),
        "{stderr}"
    );
    assert!(stderr.contains("pgrep"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn malformed_durations_say_what_to_write() {
    let output = daemon()
        .args(["run", "--pid", "1", "--duration", "soon"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("such as 500ms"), "{stderr}");
}

#[test]
fn run_without_privileges_names_the_missing_capabilities() {
    // As nobody, watching this test process.
    let output = unprivileged(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--pid",
        &std::process::id().to_string(),
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs root, or the capabilities CAP_BPF + CAP_PERFMON"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn doctor_json_reports_what_this_kernel_allows() {
    if !kernel_tests_allowed("doctor --json") {
        return;
    }
    let output = daemon().args(["doctor", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let usable = |key: &str| report["program_types"][key]["usable"].as_bool().unwrap();

    assert_eq!(
        report["kernel"]["btf"],
        Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    assert!(usable("tp_btf"), "{report:#}");
    assert!(usable("tracepoint"), "{report:#}");
    assert!(usable("iter_tcp"), "{report:#}");
    // kprobes exist exactly when the kernel has the kprobe PMU.
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    assert_eq!(usable("kprobe"), kprobes, "{report:#}");
    assert!(report["program_types"]["fentry"]["usable"].is_boolean());
    // Limits are the ones this process has.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit into a local.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(report["limits"]["rlimit_nofile"]["soft"], limit.rlim_cur);
    assert_eq!(report["limits"]["rlimit_nofile"]["hard"], limit.rlim_max);
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(report["limits"]["somaxconn"], somaxconn);
    assert_eq!(report["can_run"], true);
}

#[test]
fn doctor_without_privileges_exits_non_zero_and_explains() {
    let output = unprivileged(&["doctor"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("c1m cannot run here"), "{stdout}");
    assert!(stdout.contains("CAP_BPF"), "{stdout}");
}

#[test]
fn a_busy_api_port_is_one_clear_line_before_anything_is_attached() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let output = daemon()
        .args([
            "run",
            "--listen",
            &addr,
            "--pid",
            &std::process::id().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve the API on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn serving_beyond_loopback_needs_a_token() {
    let output = daemon()
        .args([
            "run",
            "--listen",
            "0.0.0.0:0",
            "--pid",
            &std::process::id().to_string(),
        ])
        .env_remove("C1M_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("without a token"), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
}

#[test]
fn the_overview_refuses_target_options_a_zero_interval_and_no_privileges() {
    let output = daemon()
        .args(["run", "--attach", "tp-btf", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("give its --pid"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let output = daemon().args(["top", "--interval", "0s"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("longer than zero"), "{stderr}");

    let output = unprivileged(&["top", "--once"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
}
