//! Kernel test: a cgroup (and a container, found by its id in the cgroup
//! path) as the target. Two echo servers, one moved into a test cgroup
//! before c1m attaches and an identical one left outside, both under load:
//! `run --cgroup` counts exactly the inside one's connections; a third
//! echo server moved into the cgroup after attach (already listening, so
//! it never forks or opens a socket again) is followed; the memory limit
//! set for the cgroup's processes is in the ceiling.

mod common;

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use common::{api::poll, *};
use serde_json::Value;

/// A cgroup directory made for the test, removed on drop (after the
/// processes in it are gone: declare it before their guards).
struct CgroupDir(PathBuf);

impl CgroupDir {
    fn new(parent: &Path, name: &str) -> CgroupDir {
        let path = parent.join(name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating the test cgroup {}: {e}", path.display()));
        CgroupDir(path)
    }

    /// Move a process (all its threads) into this cgroup.
    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.0.display()));
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        // The processes were killed just before; they leave the cgroup
        // once reaped, which may take a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the test cgroup {}", self.0.display());
    }
}

/// The cgroup v2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
fn v2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            after
                .starts_with("cgroup2 ")
                .then(|| before.split(' ').nth(4).map(PathBuf::from))?
        })
        .expect("a cgroup2 mount (cgroup v2 is what --cgroup follows)")
}

/// Where the memory limit of a process is set here: its v2 cgroup when the
/// memory controller is enabled there, else its v1 memory cgroup.
fn v1_memory_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    })?;
    let dir = PathBuf::from("/sys/fs/cgroup/memory").join(own.trim_start_matches('/'));
    dir.join("memory.limit_in_bytes").exists().then_some(dir)
}

/// An echo server and its worker processes.
fn echo_processes(echo: &ChildGuard) -> Vec<u32> {
    let mut pids = vec![echo.pid()];
    pids.extend(children_of(echo.pid()));
    pids
}

fn open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(addr).expect("connect to the echo server"))
        .collect()
}

fn current(report: &Value) -> u64 {
    report["connections"]["current"].as_u64().unwrap_or(0)
}

const LIMIT: u64 = 768 * 1024 * 1024;

#[test]
fn a_cgroup_target_counts_its_processes_only_and_follows_new_ones() {
    if !kernel_tests_allowed("cgroup") {
        return;
    }
    let tag = format!("c1m-test-{}", std::process::id());
    let cgroup = CgroupDir::new(&v2_root(), &tag);
    let v2_memory = std::fs::read_to_string(cgroup.0.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
    let memory = if v2_memory {
        None
    } else {
        v1_memory_dir().map(|dir| CgroupDir::new(&dir, &tag))
    };
    let limit_file = match &memory {
        None => cgroup.0.join("memory.max"),
        Some(v1) => v1.0.join("memory.limit_in_bytes"),
    };

    let (inside, inside_line) = spawn_echo_in(&[], &["--workers", "1"]);
    let (outside, outside_line) = spawn_echo_in(&[], &["--workers", "1"]);
    let join = |echo: &ChildGuard| {
        for pid in echo_processes(echo) {
            cgroup.add(pid);
            if let Some(v1) = &memory {
                v1.add(pid);
            }
        }
    };
    join(&inside);
    if v2_memory || memory.is_some() {
        std::fs::write(&limit_file, LIMIT.to_string()).expect("setting the memory limit");
    }

    let (_run, _lines, api) = spawn_run_on(&["--cgroup", cgroup.0.to_str().unwrap()], &[]);
    let _inside_conns = open(echo_address(&inside_line), 30);
    let _outside_conns = open(echo_address(&outside_line), 20);
    let report = poll(&api, Duration::from_secs(15), "30 connections", |r| {
        current(r) == 30
    });
    let name = format!("/{tag}");
    assert_eq!(report["target"]["cgroup"], name.as_str());
    // Held still: the outside server's 20 never join.
    std::thread::sleep(Duration::from_secs(1));
    let report = poll(&api, Duration::from_secs(5), "still 30", |r| {
        current(r) == 30
    });

    if v2_memory || memory.is_some() {
        let limit = report["ceiling"]["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "cgroup_memory")
            .unwrap_or_else(|| panic!("no cgroup_memory limit: {}", report["ceiling"]));
        eprintln!("cgroup_memory: {limit}");
        assert_eq!(limit["value"].as_f64(), Some(LIMIT as f64), "{limit}");
        assert_eq!(limit["source"], limit_file.to_str().unwrap(), "{limit}");
    } else {
        eprintln!("no memory controller for a test cgroup here: the memory limit is not checked");
    }

    // A server started outside and moved in after attach: it only accepts
    // on the listener it has, so the kernel must see it move.
    let (later, later_line) = spawn_echo_in(&[], &["--workers", "1"]);
    join(&later);
    let later_pid = later.pid();
    poll(&api, Duration::from_secs(10), "the moved server", |r| {
        r["target"]["pids"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p.as_u64() == Some(later_pid.into())))
    });
    let _later_conns = open(echo_address(&later_line), 15);
    poll(&api, Duration::from_secs(15), "30 + 15 connections", |r| {
        current(r) == 45
    });
    drop((inside, outside, later));
}

/// `--container ID` finds the cgroup a container runtime would have made
/// (here by hand: `docker-<64 hex>.scope`) from the processes' cgroups.
#[test]
fn a_container_is_found_by_its_id() {
    if !kernel_tests_allowed("cgroup-container") {
        return;
    }
    let id = format!("c1{:08x}{}", std::process::id(), "a".repeat(54));
    let cgroup = CgroupDir::new(&v2_root(), &format!("docker-{id}.scope"));
    let (echo, line) = spawn_echo_in(&[], &["--workers", "1"]);
    for pid in echo_processes(&echo) {
        cgroup.add(pid);
    }
    let (_run, _lines, api) = spawn_run_on(&["--container", &id[..12]], &[]);
    let _conns = open(echo_address(&line), 12);
    let report = poll(&api, Duration::from_secs(15), "12 connections", |r| {
        current(r) == 12
    });
    assert_eq!(
        report["target"]["cgroup"],
        format!("/docker-{id}.scope").as_str()
    );

    // A prefix no container has: one line saying what to check.
    let out = daemon()
        .args(["report", "--container", "ffffffff", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no process runs in a container"),
        "{stderr}"
    );
    drop(echo);
}
