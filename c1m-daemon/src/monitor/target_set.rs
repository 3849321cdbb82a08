//! Which processes make up the target: the pids the user named, plus their
//! child processes (existing ones found at start, new ones added by the
//! kernel side as they are forked), minus those that exited; or every
//! process of a cgroup, those the kernel side sees fork, open a socket or
//! move into it later included.

use std::collections::BTreeMap;

use crate::{
    ebpf::{error::ProbeError, probes::Probes},
    model::report::ExitedProcess,
    system::{
        cgroup_target::{CgroupSpec, exists, processes_in},
        process::{TargetError, TargetProcess, descendants},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum TargetSetError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Process(#[from] TargetError),
}

pub struct TargetSet {
    /// Every live target process by tgid, named or child.
    processes: BTreeMap<u32, TargetProcess>,
    /// The pids the user named, as they typed them resolved to processes.
    named: Vec<TargetProcess>,
    /// Target processes that exited while watched, oldest first (a pid
    /// reused later is a different process and never a target).
    exited: Vec<ExitedProcess>,
    /// The cgroup whose processes are all targets, if the target is one.
    cgroup: Option<CgroupSpec>,
}

/// At most this many exited processes are remembered: a server forking a
/// process per request would otherwise grow the list without bound.
const MAX_EXITED_REMEMBERED: usize = 64;

impl TargetSet {
    /// Register the named processes and (when following children) their
    /// current descendants with the probes, and seed the listening ports
    /// they already have, so connections accepted on them are attributed.
    pub fn start(
        mut named: Vec<TargetProcess>,
        cgroup: Option<CgroupSpec>,
        follow_children: bool,
        probes: &mut Probes,
    ) -> Result<TargetSet, TargetSetError> {
        if let Some(cgroup) = &cgroup {
            // The kernel side matches the cgroup from now on; the processes
            // already in it are registered like named ones.
            probes.set_target_cgroup(cgroup.id, cgroup.level)?;
            named.extend(
                processes_in(cgroup)
                    .into_iter()
                    .filter_map(|pid| TargetProcess::resolve(pid).ok()),
            );
        }
        let mut processes = BTreeMap::new();
        for target in &named {
            probes.add_target(target.tgid, target.tgid)?;
            processes.insert(target.tgid, target.clone());
            if follow_children {
                for (pid, parent) in descendants(target.tgid) {
                    // A child that exits meanwhile is simply not a target.
                    if let Ok(child) = TargetProcess::resolve(pid) {
                        probes.add_target(child.tgid, parent)?;
                        processes.insert(child.tgid, child);
                    }
                }
            }
        }
        // Listeners that already exist: from the fd scan when this kernel
        // has it (cheap at any scale); otherwise from /proc, which reads
        // every fd link and the whole TCP table of the target's namespace.
        if let Some(walk) = probes.walk_now()? {
            for (port, listeners) in walk.fds.listening_ports {
                probes.add_listen_port(port, listeners)?;
            }
            return Ok(TargetSet {
                processes,
                named,
                exited: Vec::new(),
                cgroup,
            });
        }
        for process in processes.values() {
            match process.listening_ports() {
                Ok(ports) => {
                    for (port, listeners) in ports {
                        probes.add_listen_port(port, listeners)?;
                    }
                }
                // A child that just exited has no listeners to seed.
                Err(TargetError::Exited { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(TargetSet {
            processes,
            named,
            exited: Vec::new(),
            cgroup,
        })
    }

    /// Learn about children the kernel side added, forget processes that
    /// exited (and remove them from the kernel's map, so a reused pid is not
    /// taken for the target).
    pub fn refresh(&mut self, probes: &mut Probes) -> Result<(), TargetSetError> {
        if self.cgroup.is_some() {
            self.join_moved_processes(probes)?;
        }
        for (tgid, _parent) in probes.target_tgids()? {
            if self.processes.contains_key(&tgid) {
                continue;
            }
            match TargetProcess::resolve(tgid) {
                Ok(child) => {
                    self.processes.insert(tgid, child);
                }
                Err(_) => probes.remove_target(tgid)?,
            }
        }
        let exited: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, p)| !p.is_alive())
            .map(|(tgid, _)| *tgid)
            .collect();
        for tgid in exited {
            if let Some(process) = self.processes.remove(&tgid) {
                log::info!("target process {} ({}) exited", tgid, process.comm);
                if self.exited.len() == MAX_EXITED_REMEMBERED {
                    self.exited.remove(0);
                }
                self.exited.push(ExitedProcess {
                    pid: tgid,
                    named: self.named.iter().any(|n| n.tgid == tgid),
                    comm: process.comm,
                });
            }
            probes.remove_target(tgid)?;
        }
        Ok(())
    }

    /// Processes moved into the target cgroup (the kernel side saw their
    /// threads move) become targets, with the listeners they brought: a
    /// server moved in may only ever accept on them.
    fn join_moved_processes(&mut self, probes: &mut Probes) -> Result<(), TargetSetError> {
        for tid in probes.take_cgroup_joined()? {
            let Ok(process) = TargetProcess::resolve(tid) else {
                continue;
            };
            if self.processes.contains_key(&process.tgid) {
                continue;
            }
            probes.add_target(process.tgid, process.tgid)?;
            if let Ok(ports) = process.listening_ports() {
                for (port, listeners) in ports {
                    probes.add_listen_port_if_new(port, listeners)?;
                }
            }
            log::info!(
                "process {} ({}) moved into the target cgroup",
                process.tgid,
                process.comm
            );
            self.processes.insert(process.tgid, process);
        }
        Ok(())
    }

    /// Live target processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.keys().copied().collect()
    }

    /// Target processes that exited while watched.
    pub fn exited(&self) -> &[ExitedProcess] {
        &self.exited
    }

    /// Whether the target is still there: a process of it runs, or its
    /// cgroup exists (an empty cgroup may get processes later).
    pub fn any_alive(&self) -> bool {
        !self.processes.is_empty() || self.cgroup.as_ref().is_some_and(exists)
    }

    /// The target cgroup, if the target is one.
    pub fn cgroup(&self) -> Option<&CgroupSpec> {
        self.cgroup.as_ref()
    }

    /// `1234 (nginx), 1300 (nginx)` for messages.
    pub fn describe_named(&self) -> String {
        if let Some(cgroup) = &self.cgroup {
            return format!(
                "cgroup {} ({} processes now)",
                cgroup.name,
                self.processes.len()
            );
        }
        self.named
            .iter()
            .map(|t| format!("{} ({})", t.tgid, t.comm))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
