//! Which processes make up the target: the pids the user named, plus their
//! child processes (existing ones found at start, new ones added by the
//! kernel side as they are forked), minus those that exited.

use std::collections::BTreeMap;

use crate::{
    ebpf::{error::ProbeError, probes::Probes},
    model::report::ExitedProcess,
    system::process::{TargetError, TargetProcess, descendants},
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
}

/// At most this many exited processes are remembered: a server forking a
/// process per request would otherwise grow the list without bound.
const MAX_EXITED_REMEMBERED: usize = 64;

impl TargetSet {
    /// Register the named processes and (when following children) their
    /// current descendants with the probes, and seed the listening ports
    /// they already have, so connections accepted on them are attributed.
    pub fn start(
        named: Vec<TargetProcess>,
        follow_children: bool,
        probes: &mut Probes,
    ) -> Result<TargetSet, TargetSetError> {
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
        })
    }

    /// Learn about children the kernel side added, forget processes that
    /// exited (and remove them from the kernel's map, so a reused pid is not
    /// taken for the target).
    pub fn refresh(&mut self, probes: &mut Probes) -> Result<(), TargetSetError> {
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

    /// Live target processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.keys().copied().collect()
    }

    /// Target processes that exited while watched.
    pub fn exited(&self) -> &[ExitedProcess] {
        &self.exited
    }

    pub fn any_alive(&self) -> bool {
        !self.processes.is_empty()
    }

    /// `1234 (nginx), 1300 (nginx)` for messages.
    pub fn describe_named(&self) -> String {
        self.named
            .iter()
            .map(|t| format!("{} ({})", t.tgid, t.comm))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
