//! Loading c1m's kernel programs, attaching the best one this kernel
//! supports for each hook, telling them which process is the target, and
//! reading their counters back.

use std::{collections::BTreeMap, fmt, os::fd::OwnedFd, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{BtfTracePoint, TracePoint},
};
use c1m_common::{
    CgroupTarget, DropReason, GLOBAL_SOCK_OFFSETS, MAP_CGROUP_JOINED, MAP_DIALLED_CLOSES,
    MAP_STATS, MAP_TARGET_CGROUP, MAP_TARGET_EVENTS, MAP_TARGET_LISTEN_PORTS, MAP_TARGET_NETNS,
    MAP_TARGET_TGIDS, MAP_TRANSITIONS, OutboundPair, PROG_ACCEPT_EXIT, PROG_ACCEPT4_EXIT,
    PROG_CGROUP_ATTACH_TRACEPOINT, PROG_NEW_TASK_TRACEPOINT, PROG_SET_STATE_TP_BTF,
    PROG_SET_STATE_TRACEPOINT, SockOffsets, TRANSITION_SLOTS, TargetEvent,
};
use serde::Serialize;

use super::{
    C1M_EBPF_OBJECT, btf_offsets,
    error::{ProbeError, error_chain, map_error, program_mut},
    self_cost::{ProgramCost, enable_run_stats, program_costs, program_ids},
    tracefs,
    walk_programs::{WalkPrograms, pair_addresses},
    walker::{Walk, Walker},
};
use crate::{
    model::{sock_census::Pair, transitions::TransitionCounts},
    system::privileges::Privileges,
};

/// Reader of the kernel side's aya-log messages, into the `log` crate.
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Which program observes `inet_sock_set_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// BTF-typed tracepoint: cheapest, needs kernel BTF (5.5+).
    TpBtf,
    /// Classic tracepoint: any kernel since 4.16, needs tracefs.
    Tracepoint,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::TpBtf => "tp_btf/inet_sock_set_state",
            AttachMode::Tracepoint => "tracepoint/sock/inet_sock_set_state",
        })
    }
}

/// The loaded and attached probes. Dropping it detaches everything: aya
/// owns the links and closes them, and nothing is pinned.
pub struct Probes {
    /// The loaded object, which holds the attached probes' links.
    kernel: Kernel,
    pub attach_mode: AttachMode,
    /// How child processes are followed, or why they are not.
    pub children: Result<&'static str, String>,
    /// How the target's failed accepts are seen, or why they are not.
    pub accept_errors: Result<&'static str, String>,
    maps: Maps,
    logger: Option<KernelLogger>,
    /// Kernel ids of c1m's loaded programs, by name (for their run stats).
    program_ids: Vec<(String, u32)>,
    /// Held while c1m runs: the kernel counts program run time meanwhile.
    run_stats: Result<OwnedFd, String>,
}

/// The maps userspace reads and writes, taken out of the object.
struct Maps {
    target_tgids: HashMap<MapData, u32, u32>,
    listen_ports: HashMap<MapData, u32, u64>,
    target_netns: Array<MapData, u32>,
    transitions: PerCpuArray<MapData, u64>,
    events: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    dialled_closes: HashMap<MapData, OutboundPair, u64>,
    target_cgroup: Array<MapData, CgroupTarget>,
    cgroup_joined: HashMap<MapData, u32, u64>,
}

impl Maps {
    fn take(ebpf: &mut Ebpf) -> Result<Maps, ProbeError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(ProbeError::MissingMap(name));
        Ok(Maps {
            target_netns: Array::try_from(take(MAP_TARGET_NETNS)?)
                .map_err(map_error(MAP_TARGET_NETNS))?,
            events: PerCpuArray::try_from(take(MAP_TARGET_EVENTS)?)
                .map_err(map_error(MAP_TARGET_EVENTS))?,
            target_tgids: HashMap::try_from(take(MAP_TARGET_TGIDS)?)
                .map_err(map_error(MAP_TARGET_TGIDS))?,
            listen_ports: HashMap::try_from(take(MAP_TARGET_LISTEN_PORTS)?)
                .map_err(map_error(MAP_TARGET_LISTEN_PORTS))?,
            transitions: PerCpuArray::try_from(take(MAP_TRANSITIONS)?)
                .map_err(map_error(MAP_TRANSITIONS))?,
            stats: PerCpuArray::try_from(take(MAP_STATS)?).map_err(map_error(MAP_STATS))?,
            dialled_closes: HashMap::try_from(take(MAP_DIALLED_CLOSES)?)
                .map_err(map_error(MAP_DIALLED_CLOSES))?,
            target_cgroup: Array::try_from(take(MAP_TARGET_CGROUP)?)
                .map_err(map_error(MAP_TARGET_CGROUP))?,
            cgroup_joined: HashMap::try_from(take(MAP_CGROUP_JOINED)?)
                .map_err(map_error(MAP_CGROUP_JOINED))?,
        })
    }
}

/// Where the loaded object lives: on the walker thread when this kernel
/// can walk sockets and fd tables (BPF iterators), else here.
enum Kernel {
    Walker(Walker),
    CannotWalk { _ebpf: Ebpf, why: String },
}

/// What asking for a walk gave.
pub enum WalkState {
    /// This kernel cannot walk (see [`Probes::walks_unavailable`]).
    Unavailable,
    /// A walk is under way and did not finish within the budget.
    Walking,
    Done(Walk),
}

/// Whether this process may load and attach the probes; the error names
/// the capabilities it lacks.
pub fn ensure_privileges() -> Result<(), ProbeError> {
    let privileges = Privileges::of_this_process();
    if privileges.can_trace() {
        Ok(())
    } else {
        Err(ProbeError::NoPrivilege {
            missing: privileges.missing_for_tracing().join(" + "),
        })
    }
}

impl Probes {
    /// Load and attach. `only` forces one attach mode (to test a fallback,
    /// or on a kernel whose preferred mode misbehaves); `follow_children`
    /// makes processes the target starts targets too.
    pub fn attach(only: Option<AttachMode>, follow_children: bool) -> Result<Probes, ProbeError> {
        ensure_privileges()?;
        let (mut ebpf, offsets) = load_object()?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                log::warn!("kernel-side log messages unavailable: {err}");
                None
            }
        };
        let attach_mode = match attach_state_probe(&mut ebpf, only, offsets) {
            Ok(mode) => mode,
            Err(err) => {
                tracefs::unmount_if_ours();
                return Err(err);
            }
        };
        log::info!("attached {attach_mode}");
        let children = attach_children(&mut ebpf, follow_children);
        let accept_errors = attach_accept_errors(&mut ebpf);
        // Only a cgroup target uses it (it returns at once otherwise); a
        // kernel without it still follows forks and sockets in the cgroup.
        if let Err(err) = attach_tracepoint(
            &mut ebpf,
            PROG_CGROUP_ATTACH_TRACEPOINT,
            "cgroup",
            "cgroup_attach_task",
        ) {
            log::warn!("processes moved into a target cgroup will not be seen at once: {err}");
        }
        tracefs::unmount_if_ours();
        let maps = Maps::take(&mut ebpf)?;
        let (kernel, program_ids) = start_walker(ebpf)?;
        let run_stats = enable_run_stats();
        if let Err(why) = &run_stats {
            log::warn!("c1m's own programs' run time will not be shown: {why}");
        }
        Ok(Probes {
            kernel,
            attach_mode,
            children,
            accept_errors,
            maps,
            logger,
            program_ids,
            run_stats,
        })
    }

    /// Runs and run time of each of c1m's programs, when run-time stats are
    /// on (else why not).
    pub fn program_costs(&self) -> Result<Vec<ProgramCost>, String> {
        match &self.run_stats {
            Ok(_) => Ok(program_costs(&self.program_ids)),
            Err(why) => Err(why.clone()),
        }
    }

    /// Why walks are unavailable, if they are.
    pub fn walks_unavailable(&self) -> Option<&str> {
        match &self.kernel {
            Kernel::Walker(_) => None,
            Kernel::CannotWalk { why, .. } => Some(why),
        }
    }

    /// Whether a walk was asked for and not collected yet.
    pub fn walk_in_flight(&self) -> bool {
        matches!(&self.kernel, Kernel::Walker(walker) if walker.in_flight())
    }

    /// Ask for a walk of the target's sockets and fd tables (unless one is
    /// under way) and wait up to `budget` for it.
    pub fn walk_within(&mut self, budget: Duration) -> Result<WalkState, ProbeError> {
        match &mut self.kernel {
            Kernel::Walker(walker) => Ok(match walker.walk_within(budget)? {
                Some(walk) => WalkState::Done(walk),
                None => WalkState::Walking,
            }),
            Kernel::CannotWalk { .. } => Ok(WalkState::Unavailable),
        }
    }

    /// A walk, however long it takes; `None` when this kernel cannot walk.
    pub fn walk_now(&mut self) -> Result<Option<Walk>, ProbeError> {
        match &mut self.kernel {
            Kernel::Walker(walker) => walker.walk_now().map(Some),
            Kernel::CannotWalk { .. } => Ok(None),
        }
    }

    /// Hand the kernel-side log reader to the caller (to poll it, e.g.
    /// with tokio's `AsyncFd`).
    pub fn take_logger(&mut self) -> Option<KernelLogger> {
        self.logger.take()
    }

    /// Sockets created by this process from now on belong to the target.
    /// `parent` is the target process it descends from (itself if named).
    pub fn add_target(&mut self, tgid: u32, parent: u32) -> Result<(), ProbeError> {
        self.maps
            .target_tgids
            .insert(tgid, parent, 0)
            .map_err(map_error(MAP_TARGET_TGIDS))
    }

    pub fn remove_target(&mut self, tgid: u32) -> Result<(), ProbeError> {
        match self.maps.target_tgids.remove(&tgid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(map_error(MAP_TARGET_TGIDS)(source)),
        }
    }

    /// Every target process, with the target process it descends from:
    /// those named by the user and the children the kernel side added.
    pub fn target_tgids(&self) -> Result<Vec<(u32, u32)>, ProbeError> {
        self.maps
            .target_tgids
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAP_TARGET_TGIDS))
    }

    /// Every process in this cgroup (v2 id, depth below the root) or below
    /// it is a target, from now on: the kernel programs match it.
    pub fn set_target_cgroup(&mut self, id: u64, level: u32) -> Result<(), ProbeError> {
        let target = CgroupTarget { id, level, _pad: 0 };
        self.maps
            .target_cgroup
            .set(0, target, 0)
            .map_err(map_error(MAP_TARGET_CGROUP))
    }

    /// Threads moved into the target cgroup since the last call (the
    /// kernel side records them; they are forgotten once read).
    pub fn take_cgroup_joined(&mut self) -> Result<Vec<u32>, ProbeError> {
        let joined = self
            .maps
            .cgroup_joined
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAP_CGROUP_JOINED))?;
        for tid in &joined {
            match self.maps.cgroup_joined.remove(tid) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(map_error(MAP_CGROUP_JOINED)(source)),
            }
        }
        Ok(joined)
    }

    /// A port on which the target already listened before c1m attached, so
    /// connections accepted on it are the target's.
    pub fn add_listen_port(&mut self, port: u16, listeners: u64) -> Result<(), ProbeError> {
        self.maps
            .listen_ports
            .insert(port as u32, listeners, 0)
            .map_err(map_error(MAP_TARGET_LISTEN_PORTS))
    }

    /// Like [`Probes::add_listen_port`], unless the port is known already
    /// (a process joining the target with a listener another target
    /// process shares).
    pub fn add_listen_port_if_new(&mut self, port: u16, listeners: u64) -> Result<(), ProbeError> {
        match self.maps.listen_ports.get(&(port as u32), 0) {
            Ok(_) => Ok(()),
            Err(MapError::KeyNotFound) => self.add_listen_port(port, listeners),
            Err(source) => Err(map_error(MAP_TARGET_LISTEN_PORTS)(source)),
        }
    }

    /// Accepted connections count only in this network namespace (by its
    /// inode number): a container with its own listener on the target's
    /// port is not the target.
    pub fn set_target_netns(&mut self, inode: u32) -> Result<(), ProbeError> {
        self.maps
            .target_netns
            .set(0, inode, 0)
            .map_err(map_error(MAP_TARGET_NETNS))
    }

    /// The target's own evidence counters since attach, by event name.
    pub fn read_events(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        TargetEvent::ALL
            .iter()
            .map(|event| {
                let per_cpu = self
                    .maps
                    .events
                    .get(&(*event as u32), 0)
                    .map_err(map_error(MAP_TARGET_EVENTS))?;
                Ok((event.name(), per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The target's dialled connections that closed into TIME_WAIT since
    /// attach, per (source, destination) pair.
    pub fn read_dialled_closes(&self) -> Result<BTreeMap<Pair, u64>, ProbeError> {
        self.maps
            .dialled_closes
            .iter()
            .map(|entry| entry.map(|(pair, closes)| (pair_addresses(&pair), closes)))
            .collect::<Result<_, _>>()
            .map_err(map_error(MAP_DIALLED_CLOSES))
    }

    pub fn read_transitions(&self) -> Result<TransitionCounts, ProbeError> {
        let mut slots = Vec::with_capacity(TRANSITION_SLOTS as usize);
        for index in 0..TRANSITION_SLOTS {
            let per_cpu = self
                .maps
                .transitions
                .get(&index, 0)
                .map_err(map_error(MAP_TRANSITIONS))?;
            slots.push(per_cpu.iter().sum());
        }
        Ok(TransitionCounts::from_slots(slots))
    }

    /// Losses on the kernel side, by reason (every reason, zeros included,
    /// so a reader sees what is counted).
    pub fn read_drops(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        DropReason::ALL
            .iter()
            .map(|reason| {
                let per_cpu = self
                    .maps
                    .stats
                    .get(&(*reason as u32), 0)
                    .map_err(map_error(MAP_STATS))?;
                Ok((reason.name(), per_cpu.iter().sum()))
            })
            .collect()
    }
}

/// Load the object with the `struct sock` offsets of this kernel's BTF;
/// also returns whether they resolved (tp_btf needs them). Without BTF,
/// tp_btf cannot work anyway, and the zero offsets are never used.
fn load_object() -> Result<(Ebpf, Result<(), String>), ProbeError> {
    let btf = btf_offsets::load_kernel_btf();
    let offsets = match &btf {
        Ok(btf) => btf_offsets::resolve_sock_offsets(btf),
        Err(err) => Err(err.clone()),
    };
    let ebpf = EbpfLoader::new()
        .override_global(
            GLOBAL_SOCK_OFFSETS,
            offsets.as_ref().unwrap_or(&SockOffsets::default()),
            true,
        )
        .load(C1M_EBPF_OBJECT)
        .map_err(ProbeError::Load)?;
    Ok((ebpf, offsets.map(drop).map_err(|err| err.to_string())))
}

/// Attach the `inet_sock_set_state` observer: tp_btf first, the classic
/// tracepoint if that fails (or only the mode `only` names).
fn attach_state_probe(
    ebpf: &mut Ebpf,
    only: Option<AttachMode>,
    offsets: Result<(), String>,
) -> Result<AttachMode, ProbeError> {
    let mut attempts = Vec::new();
    for mode in [AttachMode::TpBtf, AttachMode::Tracepoint] {
        if only.is_some_and(|only| only != mode) {
            continue;
        }
        let result = match mode {
            AttachMode::TpBtf => match &offsets {
                Ok(()) => attach_tp_btf(ebpf),
                Err(err) => Err(err.clone()),
            },
            AttachMode::Tracepoint => attach_tracepoint(
                ebpf,
                PROG_SET_STATE_TRACEPOINT,
                "sock",
                "inet_sock_set_state",
            ),
        };
        match result {
            Ok(()) => return Ok(mode),
            Err(err) => {
                log::warn!("{mode} unavailable, falling back: {err}");
                attempts.push(format!("{mode}: {err}"));
            }
        }
    }
    Err(ProbeError::NoAttachPoint {
        attempts: attempts.join("; "),
    })
}

/// Follow the processes the target starts, or say why not.
fn attach_children(ebpf: &mut Ebpf, follow_children: bool) -> Result<&'static str, String> {
    if !follow_children {
        return Err("--no-children".to_owned());
    }
    attach_tracepoint(ebpf, PROG_NEW_TASK_TRACEPOINT, "task", "task_newtask")
        .map(|()| "tracepoint/task/task_newtask")
        .inspect_err(|err| {
            log::warn!("child processes of the target will not be followed: {err}");
        })
}

/// See the target's failed accepts. Syscall tracepoints need tracefs and
/// CONFIG_FTRACE_SYSCALLS; without them c1m still works, with one kind of
/// evidence less.
fn attach_accept_errors(ebpf: &mut Ebpf) -> Result<&'static str, String> {
    [
        (PROG_ACCEPT4_EXIT, "sys_exit_accept4"),
        (PROG_ACCEPT_EXIT, "sys_exit_accept"),
    ]
    .into_iter()
    .try_for_each(|(program, name)| attach_tracepoint(ebpf, program, "syscalls", name))
    .map(|()| "tracepoint/syscalls/sys_exit_accept{,4}")
    .inspect_err(|err| log::warn!("failed accepts of the target will not be seen: {err}"))
}

/// Hand the object to the walker thread when this kernel can walk sockets
/// and fd tables; else keep it here, with the reason.
fn start_walker(mut ebpf: Ebpf) -> Result<(Kernel, Vec<(String, u32)>), ProbeError> {
    let walk_programs = WalkPrograms::load(&mut ebpf)?;
    // Every program is loaded now (the iterators just were).
    let ids = program_ids(&ebpf);
    let kernel = match walk_programs {
        Ok(programs) => Kernel::Walker(Walker::start(ebpf, programs)),
        Err(why) => {
            log::warn!("socket walks unavailable, counts will be estimated: {why}");
            Kernel::CannotWalk { _ebpf: ebpf, why }
        }
    };
    Ok((kernel, ids))
}

fn attach_tp_btf(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    let program: &mut BtfTracePoint = program_mut(ebpf, PROG_SET_STATE_TP_BTF)?;
    program
        .load("inet_sock_set_state", &btf)
        .map_err(error_chain)?;
    program.attach().map_err(error_chain)?;
    Ok(())
}

/// Load the classic-tracepoint program `program` and attach it to
/// `category/name`, mounting tracefs first if nothing has.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), String> {
    tracefs::ensure_tracefs().map_err(|e| format!("cannot mount tracefs: {e}"))?;
    let program: &mut TracePoint = program_mut(ebpf, program)?;
    program.load().map_err(error_chain)?;
    program.attach(category, name).map_err(error_chain)?;
    Ok(())
}
