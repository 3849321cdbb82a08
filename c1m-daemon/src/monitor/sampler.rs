//! Taking samples of the target: the probes' counters, the socket and fd
//! walks, its memory. Shared by `report` (one report at the end) and `run`
//! (a report after every sample).

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    daemon_info::{Availability, DaemonInfo, own_usage},
    gather::{GatherContext, gather},
    target_set::TargetSet,
};
use crate::{
    analysis::{CeilingInputs, analyze, forecasts},
    ebpf::{
        error::ProbeError,
        probes::{AttachMode, KernelLogger, Probes, WalkState, ensure_privileges},
        self_cost::bpf_memory_bytes,
    },
    model::{
        evidence::{EVIDENCE_WINDOW, window_evidence},
        ports::pairs_at,
        report::{Context, NETSTAT_COUNTERS, Report, build_report},
        sample::Sample,
    },
    system::{
        apps::{AppLimits, read_app_limits, server_processes},
        cgroup_target::{CgroupSpec, processes_in},
        memory::{open_fds, pss_bytes, thread_count, uses_epoll},
        netns::{enter_netns_of, netns_inode},
        netstat::{Counters, read_netstat},
        process::TargetProcess,
        slabinfo::read_slabinfo,
        sysctl::read_sysctl_u64,
    },
};

/// Samples kept: the marginal-cost fit and the TIME_WAIT window look at
/// the last 15 minutes at 1 s intervals, and memory stays bounded (~3 KiB
/// per sample).
pub const MAX_SAMPLES: usize = 900;

/// Walks run again once this many times their own duration has passed, so
/// they take at most a fifth of a core.
const WALK_TIME_FACTOR: u32 = 5;

/// How long a sample waits for a walk before carrying the last one over.
const WALK_WAIT_BUDGET: Duration = Duration::from_millis(200);

/// How often the server's own limits are read again (a config reload or a
/// `CONFIG SET` changes them; reading costs a file parse or a query).
const APP_LIMITS_MAX_AGE: Duration = Duration::from_secs(30);

pub struct Sampler {
    probes: Probes,
    /// Public only for `commands/ramp/engine.rs` (`targets.any_alive()`),
    /// which is being rewritten; everything else uses the accessors below.
    pub targets: TargetSet,
    started: Instant,
    samples: VecDeque<Sample>,
    uses_epoll: bool,
    /// Open fds per target process, from the last walk.
    fds_by_pid: BTreeMap<u32, u64>,
    /// TCP connection fds per target process, from the last walk.
    connection_fds_by_pid: BTreeMap<u32, u64>,
    /// When the last socket and fd walks started, and how long they took.
    last_walk: Option<(Instant, Duration)>,
    /// How long the last sample waited for the walker.
    walk_wait: Duration,
    netstat_start: Counters,
    /// Kernel counters of recent samples, for what moved within the
    /// evidence window.
    netstat_recent: VecDeque<(Instant, Counters)>,
    /// What the daemon side could not read, by reason, shown beside the
    /// kernel side's drops (a failed read is a loss, never a zero).
    losses: BTreeMap<&'static str, u64>,
    /// The caps the target's server sets itself, and when they were read.
    app_limits: AppLimits,
    app_limits_read: Option<Instant>,
    /// Files the box spends per connection: 1 (the target's), or 2 when the
    /// clients run on this box too (`selftest`).
    pub files_per_connection: f64,
}

impl Sampler {
    /// Attach the probes and register the target.
    pub fn start(
        named: Vec<TargetProcess>,
        follow_children: bool,
        attach: Option<AttachMode>,
    ) -> anyhow::Result<Sampler> {
        Sampler::start_on(named, None, follow_children, attach)
    }

    /// [`Sampler::start`] with a cgroup target: every process in `cgroup`
    /// (and below) is the target besides the `named` ones.
    pub fn start_on(
        mut named: Vec<TargetProcess>,
        cgroup: Option<CgroupSpec>,
        follow_children: bool,
        attach: Option<AttachMode>,
    ) -> anyhow::Result<Sampler> {
        ensure_privileges()?;
        // A cgroup's processes share its network namespace in practice
        // (a container): the first one now gives it.
        let first_in_cgroup = cgroup
            .as_ref()
            .and_then(|c| processes_in(c).into_iter().next())
            .and_then(|pid| TargetProcess::resolve(pid).ok());
        let netns_of = named.first().cloned().or(first_in_cgroup);
        // Measure a containerised target in its own network namespace (the
        // socket walk covers the namespace of the thread that reads it).
        // Entered before attaching, so the walker thread the probes start
        // is in it too (a thread starts in its creator's namespaces).
        if let Some(first) = &netns_of
            && enter_netns_of(first.tgid)?
        {
            log::info!("entered the network namespace of pid {}", first.tgid);
        }
        // Forks in a cgroup are its processes whatever --no-children says.
        let follow_children = follow_children || cgroup.is_some();
        let mut probes = Probes::attach(attach, follow_children)?;
        if let Some(inode) = netns_of.as_ref().and_then(|first| netns_inode(first.tgid)) {
            probes.set_target_netns(inode)?;
        }
        named.dedup_by_key(|p| p.tgid);
        let targets = TargetSet::start(named, cgroup, follow_children, &mut probes)?;
        let uses_epoll = targets.pids().into_iter().any(uses_epoll);
        let mut sampler = Sampler {
            probes,
            targets,
            started: Instant::now(),
            samples: VecDeque::new(),
            uses_epoll,
            fds_by_pid: BTreeMap::new(),
            connection_fds_by_pid: BTreeMap::new(),
            last_walk: None,
            walk_wait: Duration::ZERO,
            netstat_start: read_netstat().unwrap_or_default(),
            netstat_recent: VecDeque::new(),
            losses: BTreeMap::new(),
            app_limits: AppLimits::default(),
            app_limits_read: None,
            files_per_connection: 1.0,
        };
        // Read the server's own caps now: a server that fills up later may
        // refuse the very query that reads them (redis at maxclients).
        sampler.refresh_app_limits();
        Ok(sampler)
    }

    /// Take one sample. A target process exiting meanwhile counts as zero;
    /// once every one has exited the samples stop, so the report keeps the
    /// last data seen while the target ran.
    pub fn sample(&mut self) -> anyhow::Result<&Sample> {
        self.take_sample(false)
    }

    /// A sample whose walk starts now and is waited for however long it
    /// takes, to end a report on: a walk asked for by an earlier sample may
    /// predate what the counters saw since (a churn that ended meanwhile).
    pub fn final_sample(&mut self) -> anyhow::Result<&Sample> {
        self.take_sample(true)
    }

    fn take_sample(&mut self, walk_from_now: bool) -> anyhow::Result<&Sample> {
        self.targets.refresh(&mut self.probes)?;
        if !self.targets.any_alive() && !self.samples.is_empty() {
            return Ok(self.samples.back().expect("not empty"));
        }
        let pids = self.targets.pids();
        // Walk the sockets and file tables (on the walker thread) when due:
        // every sample while a walk is cheap, at most a fifth of the time
        // when it is not (a million sockets take over a second). A sample
        // waits a short budget for the walk; past it, it carries the last
        // walk over and stays on time, and a later sample collects it.
        let walk_due = self.probes.walk_in_flight()
            || self
                .last_walk
                .is_none_or(|(at, took)| at.elapsed() >= took * WALK_TIME_FACTOR);
        let wait_started = Instant::now();
        let walk = if walk_from_now {
            Some(self.walk_from_now())
        } else if walk_due {
            Some(self.probes.walk_within(WALK_WAIT_BUDGET))
        } else {
            None
        };
        let carried = || self.samples.back().and_then(|last| last.census.clone());
        let (census, scan_fresh) = if let Some(walk) = walk {
            match walk.context("walking the target's sockets and files")? {
                WalkState::Done(walk) => {
                    log::debug!("socket and fd walks took {:?}", walk.took);
                    self.last_walk = Some((walk.started, walk.took));
                    if walk.sockets.listeners_truncated {
                        *self.losses.entry("listeners_truncated").or_insert(0) += 1;
                    }
                    self.fds_by_pid = walk.fds.by_pid;
                    self.connection_fds_by_pid = walk.fds.connections_by_pid;
                    (Some(walk.sockets), true)
                }
                WalkState::Walking => (carried(), false),
                WalkState::Unavailable => {
                    self.fds_by_pid = pids
                        .iter()
                        .filter_map(|&p| open_fds(p).ok().map(|n| (p, n)))
                        .collect();
                    (None, true)
                }
            }
        } else {
            (carried(), false)
        };
        self.walk_wait = wait_started.elapsed();
        let open_fds = self.fds_by_pid.values().sum();
        let connection_fds = census
            .is_some()
            .then(|| self.connection_fds_by_pid.values().sum());
        let sample = Sample {
            at_seconds: self.started.elapsed().as_secs_f64(),
            transitions: self.probes.read_transitions()?,
            census,
            scan_fresh,
            user_bytes: pids
                .iter()
                .filter_map(|&p| {
                    let pss = pss_bytes(p).ok();
                    // A process that vanished meanwhile holds nothing; one
                    // that is there but unreadable is a loss, not a zero.
                    if pss.is_none() && std::path::Path::new(&format!("/proc/{p}")).exists() {
                        *self.losses.entry("pss_unreadable").or_insert(0) += 1;
                    }
                    pss
                })
                .sum(),
            open_fds,
            threads: pids.iter().filter_map(|&p| thread_count(p)).sum(),
            events: self.probes.read_events()?,
            connection_fds,
            conntrack: read_sysctl_u64("net.netfilter.nf_conntrack_count")
                .ok()
                .filter(|n| *n > 0),
            dialled_closes: self.probes.read_dialled_closes()?,
        };
        log::debug!(
            "sample at {:.2}s: {} connections, {} fds, {} bytes PSS",
            sample.at_seconds,
            sample.connections(),
            sample.open_fds,
            sample.user_bytes
        );
        if let Ok(counters) = read_netstat() {
            self.keep_netstat(counters);
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        Ok(self.samples.back().expect("just pushed"))
    }

    /// A walk that starts now: after the one under way, if any, is done.
    fn walk_from_now(&mut self) -> Result<WalkState, ProbeError> {
        if self.probes.walk_in_flight() {
            self.probes.walk_now()?;
        }
        Ok(match self.probes.walk_now()? {
            Some(walk) => WalkState::Done(walk),
            None => WalkState::Unavailable,
        })
    }

    /// The report over the samples taken so far (at least one).
    pub fn report(&mut self) -> anyhow::Result<Report> {
        if self.samples.is_empty() {
            self.sample()?;
        }
        // Without /proc/slabinfo (it needs root) the objects are listed as
        // unknown sizes rather than failing the report.
        let slabs = read_slabinfo().unwrap_or_else(|err| {
            log::warn!("{err}: kernel object sizes unknown");
            Default::default()
        });
        let mut report = build_report(
            self.samples.make_contiguous(),
            Context {
                pids: self.targets.pids(),
                alive: self.targets.any_alive(),
                exited: self.targets.exited().to_vec(),
                slabs: &slabs,
                uses_epoll: self.uses_epoll,
                max_tw_buckets: read_sysctl_u64("net.ipv4.tcp_max_tw_buckets").ok(),
                cgroup: self.targets.cgroup().map(|c| c.name.clone()),
                drops: {
                    let mut drops = self.probes.read_drops()?;
                    drops.extend(self.losses.iter().map(|(k, v)| (*k, *v)));
                    drops
                },
            },
        );
        self.refresh_app_limits();
        // Read in the target's network namespace (entered at start), once
        // for the report's counters and the ceiling's.
        let now = read_netstat().unwrap_or_default();
        report.netstat = NETSTAT_COUNTERS
            .iter()
            .filter_map(|&name| Some((name, *now.get(name)?)))
            .collect();
        let inputs = self.ceiling_inputs_at(&report, &now);
        let mut ceiling = analyze(&inputs);
        ceiling.forecasts = forecasts(self.samples.make_contiguous(), &inputs, &ceiling.limits);
        report.ceiling = Some(ceiling);
        Ok(report)
    }

    /// The limits as they stand, for this report (the selftest derives its
    /// box-wide projections from them).
    pub fn ceiling_inputs(&mut self, report: &Report) -> CeilingInputs {
        self.ceiling_inputs_at(report, &read_netstat().unwrap_or_default())
    }

    /// [`Sampler::ceiling_inputs`] with the kernel counters as read now.
    fn ceiling_inputs_at(&mut self, report: &Report, now: &Counters) -> CeilingInputs {
        // The counters each sample kept: the oldest is the window's start.
        let window_start = self
            .netstat_recent
            .front()
            .map_or_else(|| self.netstat_start.clone(), |(_, c)| c.clone());
        gather(&GatherContext {
            report,
            fds_by_pid: &self.fds_by_pid,
            connection_fds_by_pid: &self.connection_fds_by_pid,
            netstat_start: &self.netstat_start,
            netstat_window_start: &window_start,
            netstat_now: now,
            evidence: &window_evidence(self.samples.make_contiguous()),
            app: &self.app_limits,
            files_per_connection: self.files_per_connection,
            outbound_pairs: self
                .samples
                .len()
                .checked_sub(1)
                .and_then(|last| pairs_at(self.samples.make_contiguous(), last)),
        })
    }

    /// Keep `counters` for the evidence window, and the newest older than
    /// the window as its start.
    fn keep_netstat(&mut self, counters: Counters) {
        let at = Instant::now();
        if self.netstat_recent.is_empty() {
            self.netstat_recent
                .push_back((self.started, self.netstat_start.clone()));
        }
        while self
            .netstat_recent
            .get(1)
            .is_some_and(|(then, _)| at.duration_since(*then) >= EVIDENCE_WINDOW)
        {
            self.netstat_recent.pop_front();
        }
        self.netstat_recent.push_back((at, counters));
    }

    /// Read the server's own limits when due. A read that fails keeps what
    /// an earlier read found for that server: redis at its cap refuses the
    /// very query that would read the cap.
    fn refresh_app_limits(&mut self) {
        if self
            .app_limits_read
            .is_some_and(|at| at.elapsed() < APP_LIMITS_MAX_AGE)
        {
            return;
        }
        let listening = self.listening_addresses();
        let mut fresh = read_app_limits(&server_processes(&self.targets.pids(), &listening));
        let previous = std::mem::take(&mut self.app_limits);
        fresh.unreadable.retain(|err| {
            let known: Vec<_> = previous
                .limits
                .iter()
                .filter(|l| l.name.split('.').next() == Some(err.server))
                .cloned()
                .collect();
            if known.is_empty() {
                return true;
            }
            log::info!("{err}; keeping the value read earlier");
            fresh.limits.extend(known);
            false
        });
        self.app_limits = fresh;
        self.app_limits_read = Some(Instant::now());
    }

    /// The addresses the target listens on (a wildcard as loopback), for
    /// readers that ask the server itself.
    fn listening_addresses(&self) -> Vec<std::net::SocketAddr> {
        let ports: std::collections::BTreeSet<u16> = self
            .samples
            .back()
            .and_then(|s| s.census.as_ref())
            .map(|scan| scan.listeners.iter().map(|l| l.port).collect())
            .unwrap_or_default();
        let Some(&pid) = self.targets.pids().first() else {
            return Vec::new();
        };
        crate::system::process::listening_addresses(pid)
            .into_iter()
            .filter(|a| ports.is_empty() || ports.contains(&a.port()))
            .collect()
    }

    /// Time from the start of a sample (which took `took`, report
    /// included) to the next: `interval`, stretched only when the sample
    /// was slow by itself. The walks pace themselves on their own thread
    /// (see [`Sampler::sample`]), so the wait for one does not count; the
    /// rest (/proc reads, the report) may take at most a fifth of the time.
    pub fn next_sample_in(&self, interval: Duration, took: Duration) -> Duration {
        interval.max(took.saturating_sub(self.walk_wait) * 5)
    }

    /// c1m's own state, for the API's `daemon` section.
    pub fn daemon_info(&self, interval: Duration, samples: u64) -> DaemonInfo {
        let (rss_bytes, cpu_seconds) = own_usage();
        let programs = self.probes.program_costs();
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            attach_mode: self.probes.attach_mode.to_string(),
            children: Availability::from(&self.probes.children),
            accept_errors: Availability::from(&self.probes.accept_errors),
            scans: match self.probes.walks_unavailable() {
                Some(why) => Availability::no(why),
                None => Availability::yes("iter/tcp + iter/task_file"),
            },
            interval_ms: interval.as_millis() as u64,
            samples,
            walk_ms: self.last_walk.map(|(_, took)| took.as_millis() as u64),
            walk_age_ms: self
                .last_walk
                .map(|(at, _)| at.elapsed().as_millis() as u64),
            rss_bytes,
            cpu_seconds,
            bpf_memory_bytes: bpf_memory_bytes(),
            program_stats: match &programs {
                Ok(_) => Availability::yes("BPF_ENABLE_STATS (held while c1m runs)"),
                Err(why) => Availability::no(why.clone()),
            },
            programs: programs.unwrap_or_default(),
        }
    }

    /// How the TCP state changes are observed.
    pub fn attach_mode(&self) -> AttachMode {
        self.probes.attach_mode
    }

    /// How child processes are followed, or why they are not.
    pub fn children(&self) -> &Result<&'static str, String> {
        &self.probes.children
    }

    /// Why socket and fd walks are unavailable, if they are.
    pub fn walks_unavailable(&self) -> Option<&str> {
        self.probes.walks_unavailable()
    }

    /// Hand the kernel-side log reader to the caller (once).
    pub fn take_kernel_logger(&mut self) -> Option<KernelLogger> {
        self.probes.take_logger()
    }

    /// Every target process now.
    pub fn pids(&self) -> Vec<u32> {
        self.targets.pids()
    }

    /// Whether any target process still runs.
    pub fn any_alive(&self) -> bool {
        self.targets.any_alive()
    }

    /// The processes the user named, for messages ("1234, 5678").
    pub fn describe_targets(&self) -> String {
        self.targets.describe_named()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
