//! The host overview's refresh: one walk of every process's sockets
//! (`ebpf::overview`), then `/proc` for only the processes it found
//! (name, executable, cgroup, RLIMIT_NOFILE: four small reads each, no
//! `/proc/*/fd` scan), grouped into rows by `model::overview`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use anyhow::Context as _;

use super::daemon_info::own_usage;
use crate::{
    ebpf::overview::OverviewPrograms,
    model::overview::{Overview, OverviewDaemon, ProcessInfo, build},
    system::{
        netns::netns_inode,
        process_limits::{limit_value, read_process_limits},
    },
};

pub struct OverviewSource {
    programs: OverviewPrograms,
    /// This process's network namespace: the one shown.
    netns: Option<u32>,
}

impl OverviewSource {
    pub fn start() -> anyhow::Result<OverviewSource> {
        let programs = OverviewPrograms::load().context(
            "cannot walk this host's sockets (the overview needs BPF iterators: \
             iter/task_file and iter/tcp, Linux 5.9+ with BTF); `c1m-daemon doctor` \
             shows what this kernel allows",
        )?;
        Ok(OverviewSource {
            programs,
            netns: netns_inode(std::process::id()),
        })
    }

    /// Walk and build the rows.
    pub fn refresh(&mut self) -> anyhow::Result<Overview> {
        let started = Instant::now();
        let walk = self.programs.walk()?;
        let netns = self.netns;
        let pids: BTreeSet<u32> = walk
            .sockets
            .iter()
            .filter(|s| netns.is_none_or(|ns| s.netns == 0 || s.netns == ns))
            .map(|s| s.pid)
            .collect();
        let info: BTreeMap<u32, ProcessInfo> = pids
            .into_iter()
            .filter_map(|pid| Some((pid, read_process_info(pid)?)))
            .collect();
        let mut overview = build(&walk, netns, &info);
        let (rss_bytes, cpu_seconds) = own_usage();
        overview.daemon = OverviewDaemon {
            refresh_ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
            cpu_seconds,
            rss_bytes,
        };
        Ok(overview)
    }
}

/// `None` when the process exited since the walk.
fn read_process_info(pid: u32) -> Option<ProcessInfo> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some(name.trim_end_matches(" (deleted)").to_owned())
        });
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| cgroup_path(&text));
    let nofile = read_process_limits(pid)
        .ok()
        .map(|limits| limit_value(limits.max_open_files.soft_limit));
    Some(ProcessInfo {
        comm: comm.trim_end().to_owned(),
        exe,
        cgroup,
        nofile,
    })
}

/// A process's cgroup from the text of `/proc/<pid>/cgroup`: the unified
/// (v2) path when there is one, else systemd's v1 path, else the first
/// line's; `None` for the root cgroup.
fn cgroup_path(text: &str) -> Option<String> {
    let mut paths = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let rank = if controllers.is_empty() {
            0
        } else if controllers == "name=systemd" {
            1
        } else {
            2 + index
        };
        paths.entry(rank).or_insert(path);
    }
    let (_, path) = paths.into_iter().next()?;
    (path != "/").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_path_prefers_v2_and_hides_the_root() {
        assert_eq!(
            cgroup_path(
                "12:memory:/docker/abc\n1:name=systemd:/system.slice/x.service\n0::/system.slice/x.service\n"
            ),
            Some("/system.slice/x.service".into())
        );
        assert_eq!(
            cgroup_path("5:cpu:/a\n1:name=systemd:/user.slice\n"),
            Some("/user.slice".into())
        );
        assert_eq!(cgroup_path("0::/\n"), None);
        assert_eq!(cgroup_path("garbage"), None);
    }

    #[test]
    fn this_process_has_a_name_and_a_limit() {
        let me = read_process_info(std::process::id()).unwrap();
        assert!(!me.comm.is_empty());
        assert!(me.nofile.unwrap() > 0);
    }
}
