//! One formula per limit. Each turns a limit's value, its current use and
//! the use per connection into the connections it allows; the tightest
//! allowed count (or a limit being hit right now) binds, whatever its kind:
//! a server's own cap (application), a per-process limit, or the kernel's.

use super::inputs::{
    Capacity, CeilingInputs, CgroupMemory, ProcessLimits, ThreadBound, Threads, UnreadableApp,
};
use crate::{
    human::human_count,
    model::ceiling::{Binding, Ceiling, Limit, LimitKind},
    system::apps::AppLimit,
};

pub const PAGE_BYTES: f64 = 4096.0;

/// A process that only supervises (few fds) accepts nothing: its fd
/// headroom is not connection headroom.
const SUPERVISOR_FDS: u64 = 64;

pub fn analyze(i: &CeilingInputs) -> Ceiling {
    let mut limits = vec![
        file_max(i),
        memory(i),
        tcp_mem(i),
        time_wait_buckets(i),
        accept_backlog(i),
    ];
    // Without target processes (a projection for the box, where servers
    // and clients can add processes), per-process fd limits do not bind.
    if !i.processes.is_empty() {
        limits.push(nofile(i));
        limits.push(nr_open(i));
    }
    limits.extend(cgroup_memory(i));
    limits.extend(ephemeral_ports(i));
    limits.extend(conntrack(i));
    limits.extend(orphans(i));
    limits.extend(threads(i));
    limits.extend(i.app_limits.iter().map(|app| application(i, app)));
    limits.extend(i.app_unreadable.iter().map(unreadable_application));
    super::pressure::attribute(i, &mut limits);
    limits.sort_by_key(|l| (!l.exceeded, l.max_connections.unwrap_or(u64::MAX), l.kind));
    prefer_application_on_a_tie(&mut limits);
    let binding = limits
        .iter()
        .find(|l| l.exceeded || l.max_connections.is_some())
        .map(|l| Binding {
            kind: l.kind,
            name: l.name,
            source: l.source.clone(),
            max_connections: l.max_connections,
            exceeded: l.exceeded,
            evidence: l.evidence.clone(),
            explanation: l.explanation.clone(),
            remedy: l.remedy.clone(),
        });
    let verdict = verdict(&limits, &i.kernel_unknown);
    Ceiling {
        binding,
        limits,
        verdict,
        window: i.evidence.clone(),
        // Forecasts need the samples: `forecast::forecasts` adds them.
        forecasts: Vec::new(),
    }
}

/// A server that sets its own fd limit from its connection cap (memcached
/// `-c`) shows both at about the same count; the cap is what to change, so
/// an application limit within 2% of a tighter process or kernel limit
/// (with the same "being hit" status) binds instead.
fn prefer_application_on_a_tie(limits: &mut [Limit]) {
    let Some(first) = limits.first() else {
        return;
    };
    let (Some(tightest), exceeded) = (first.max_connections, first.exceeded) else {
        return;
    };
    if first.kind == LimitKind::Application {
        return;
    }
    let tie = limits.iter().position(|l| {
        l.kind == LimitKind::Application
            && l.exceeded == exceeded
            && l.max_connections
                .is_some_and(|n| n as f64 <= tightest as f64 * 1.02)
    });
    if let Some(index) = tie {
        limits[..=index].rotate_right(1);
    }
}

fn verdict(limits: &[Limit], kernel_unknown: &[&'static str]) -> String {
    let mut bounded = limits
        .iter()
        .filter(|l| l.exceeded || l.max_connections.is_some());
    let Some(first) = bounded.next() else {
        return "Ceiling: no limit could be computed yet (no connections to price).".into();
    };
    // nr_open is how far nofile could be raised, not a ceiling of its own.
    let next = bounded
        .find(|l| l.max_connections.is_some() && l.name != first.name && l.name != "nr_open")
        .map(|l| {
            format!(
                " Next: {} at {}.",
                l.name,
                human_count(l.max_connections.unwrap_or(0))
            )
        })
        .unwrap_or_default();
    let lower_bound = if kernel_unknown.is_empty() {
        String::new()
    } else {
        format!(
            " (Kernel cost is a lower bound: the size of {} is unknown here.)",
            kernel_unknown.join(", ")
        )
    };
    let whence = if first.kind == LimitKind::Application {
        format!("; {}", first.source)
    } else {
        String::new()
    };
    // One sentence: a reader's explanation may go on (after a `;`) about
    // what else the server counts; the limit's entry keeps all of it.
    let explanation = first.explanation.split("; ").next().unwrap_or_default();
    let evidence = first
        .evidence
        .first()
        .map(|e| format!(" Evidence: {e}."))
        .unwrap_or_default();
    match first.max_connections {
        Some(n) if !first.exceeded => format!(
            "Ceiling: {} connections, set by {} ({explanation}{whence}).{next}{lower_bound}",
            human_count(n),
            first.name,
        ),
        Some(n) => format!(
            "Ceiling: being hit now at {} connections: {} ({explanation}{whence}).{evidence}{next}{lower_bound}",
            human_count(n),
            first.name,
        ),
        None => format!(
            "Ceiling: being hit now: {} ({explanation}{whence}).{evidence}{next}{lower_bound}",
            first.name
        ),
    }
}

/// Connections a headroom allows at `per` each, plus those open now.
fn allowed(current: u64, headroom: f64, per: f64) -> Option<u64> {
    (per > 0.0).then(|| current + (headroom.max(0.0) / per).floor() as u64)
}

fn limit(kind: LimitKind, name: &'static str, source: String) -> Limit {
    Limit {
        kind,
        name,
        source,
        value: None,
        used: None,
        per_connection: None,
        max_connections: None,
        exceeded: false,
        evidence: Vec::new(),
        explanation: String::new(),
        remedy: String::new(),
    }
}

/// A server's own cap, as read from its configuration. Whether it is being
/// hit is decided with the other limits, from the target's own signs
/// (see `pressure`).
fn application(i: &CeilingInputs, app: &AppLimit) -> Limit {
    let mut l = limit(LimitKind::Application, app.name, app.source.clone());
    l.value = Some(app.setting as f64);
    // Connections still in the accept queue are not the server's yet.
    l.used = Some(i.connections.saturating_sub(i.evidence.queued()) as f64);
    l.per_connection = Some(1.0);
    l.max_connections = Some(app.max_connections);
    l.explanation = app.explanation.clone();
    l.remedy = app.remedy.clone();
    l
}

/// A known server whose cap could not be read: shown, without a count,
/// so nobody takes the kernel's limit for the server's.
fn unreadable_application(app: &UnreadableApp) -> Limit {
    let mut l = limit(
        LimitKind::Application,
        "application.unreadable",
        app.server.to_owned(),
    );
    l.explanation = format!(
        "{} caps its own connections, but c1m could not read how far: {}",
        app.server, app.why
    );
    l.remedy = format!("check {}'s connection limit by hand", app.server);
    l
}

fn accepting(i: &CeilingInputs) -> Vec<&ProcessLimits> {
    let busy: Vec<&ProcessLimits> = i
        .processes
        .iter()
        .filter(|p| match p.connection_fds {
            Some(held) => held > 0,
            None => p.open_fds > SUPERVISOR_FDS,
        })
        .collect();
    if busy.is_empty() {
        i.processes.iter().collect()
    } else {
        busy
    }
}

/// A process-per-connection server (PostgreSQL, Apache prefork): this
/// many processes or more, each holding about one connection.
const PROCESS_PER_CONNECTION_MIN: usize = 8;

/// Whether the target runs a process per connection: then the
/// per-process fd limit is not a connection limit (processes are).
fn process_per_connection(procs: &[&ProcessLimits]) -> bool {
    let known: Vec<u64> = procs.iter().filter_map(|p| p.connection_fds).collect();
    known.len() >= PROCESS_PER_CONNECTION_MIN
        && known.iter().sum::<u64>() as f64 / (known.len() as f64) <= 2.0
}

/// nofile: each process can hold as many connections as its fd limit has
/// room for after the fds it needs for other things, at the fds each
/// connection takes: `connections_p + (soft_p - open_p) / fds_per_conn`,
/// summed over the processes that accept. E.g. a worker with nofile 20000,
/// 1010 fds open of which 1000 connections, 1 fd each: 1000 + 18990 =
/// 19990. Sockets without an fd (accept queue, TIME_WAIT) do not count.
fn nofile(i: &CeilingInputs) -> Limit {
    let procs = accepting(i);
    let mut l = limit(
        LimitKind::Process,
        "nofile",
        format!(
            "RLIMIT_NOFILE of pid {}",
            procs
                .iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let soft: u64 = procs.iter().map(|p| p.nofile_soft).sum();
    let open: u64 = procs.iter().map(|p| p.open_fds).sum();
    l.value = Some(soft as f64);
    l.used = Some(open as f64);
    l.per_connection = Some(i.fds_per_connection);
    let per_process = procs.first().map_or(0, |p| p.nofile_soft);
    if process_per_connection(&procs) {
        l.explanation = format!(
            "each of the target's {} processes holds about one connection (a process per \
             connection): the per-process fd limit (nofile {per_process}) does not bound the \
             count, the number of processes does",
            procs.len()
        );
    } else {
        let by_process = procs.iter().map(|p| match p.connection_fds {
            Some(held) => allowed(
                held,
                p.nofile_soft as f64 - p.open_fds as f64,
                i.fds_per_connection,
            ),
            None => None,
        });
        l.max_connections = match by_process.collect::<Option<Vec<u64>>>() {
            Some(each) if !each.is_empty() => Some(each.iter().sum()),
            // Without the fd walk, the connections each process holds are
            // unknown: all of them, against all the headroom.
            _ => allowed(
                i.connections,
                soft as f64 - open as f64,
                i.fds_per_connection,
            ),
        };
        l.explanation = if procs.len() > 1 {
            format!(
                "the per-process file descriptor limit, nofile {per_process} in each of {} processes",
                procs.len()
            )
        } else {
            format!("the per-process file descriptor limit, nofile {per_process}")
        };
    }
    let hard = procs.first().map_or(0, |p| p.nofile_hard);
    l.remedy = format!(
        "raise the server's fd limit: `ulimit -n {n}` before starting it, `prlimit --pid PID \
         --nofile={n}:{n}`, or LimitNOFILE={n} in its systemd unit (hard limit now {hard}; \
         above it needs root, up to fs.nr_open)",
        n = (per_process * 2).max(65536),
    );
    l
}

fn nr_open(i: &CeilingInputs) -> Limit {
    let mut l = limit(LimitKind::Kernel, "nr_open", "sysctl fs.nr_open".into());
    let procs = accepting(i).len().max(1) as f64;
    if let Some(nr_open) = i.nr_open {
        l.value = Some(nr_open as f64);
        l.per_connection = Some(i.fds_per_connection);
        let open: u64 = accepting(i).iter().map(|p| p.open_fds).sum();
        l.max_connections = allowed(
            i.connections,
            nr_open as f64 * procs - open as f64,
            i.fds_per_connection,
        );
        l.explanation =
            format!("the most any process's fd limit can be raised to, fs.nr_open {nr_open}");
        l.remedy = format!("sysctl -w fs.nr_open={}", nr_open * 2);
    }
    l
}

fn file_max(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        LimitKind::Kernel,
        "file_max",
        "sysctl fs.file-max (fs.file-nr)".into(),
    );
    if let (Some(max), Some(allocated)) = (i.file_max, i.files_allocated) {
        l.value = Some(max as f64);
        l.used = Some(allocated as f64);
        l.per_connection = Some(i.files_per_connection);
        if i.file_max_exempt {
            l.explanation = format!(
                "fs.file-max {} does not apply: the kernel lets processes with CAP_SYS_ADMIN \
                 (root) exceed it",
                human_count(max)
            );
        } else {
            l.max_connections = allowed(
                i.connections,
                max as f64 - allocated as f64,
                i.files_per_connection,
            );
            l.explanation = format!(
                "the box-wide file handle limit, fs.file-max {}",
                human_count(max)
            );
        }
        l.remedy = format!("sysctl -w fs.file-max={}", max * 2);
    }
    l
}

fn memory(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        LimitKind::Kernel,
        "memory",
        "/proc/meminfo MemAvailable - SReclaimable".into(),
    );
    if let Some(available) = i.mem_available {
        // Socket inodes are "reclaimable" slab that cannot be reclaimed
        // while the socket is open, so MemAvailable overstates the room.
        let budget = available.saturating_sub(i.mem_reclaimable_slab.unwrap_or(0));
        let per = i.kernel_bytes.unwrap_or(0.0) + i.user_bytes.unwrap_or(0.0);
        l.value = Some(budget as f64);
        l.per_connection = (per > 0.0).then_some(per);
        l.max_connections = allowed(i.connections, budget as f64, per);
        l.explanation = format!(
            "memory: {} available at {} per connection (kernel + userspace {})",
            bytesize::ByteSize(budget),
            bytesize::ByteSize(per as u64),
            i.user_bytes_basis
        );
        l.remedy = "add memory, or lower the per-connection cost (smaller buffers, less \
                    userspace state per connection)"
            .into();
    }
    l
}

fn cgroup_memory(i: &CeilingInputs) -> Option<Limit> {
    let CgroupMemory {
        source,
        limit_bytes: max,
        usage_bytes: usage,
        sock_bytes,
    } = i.cgroup_memory.clone()?;
    let mut l = limit(LimitKind::Kernel, "cgroup_memory", source.clone());
    let per = i.kernel_bytes.unwrap_or(0.0) + i.user_bytes.unwrap_or(0.0);
    l.value = Some(max as f64);
    l.used = Some(usage as f64);
    l.per_connection = (per > 0.0).then_some(per);
    l.max_connections = allowed(i.connections, max as f64 - usage as f64, per);
    l.explanation = format!(
        "the target's cgroup memory limit, {}",
        bytesize::ByteSize(max)
    );
    if let Some(sock) = sock_bytes {
        l.explanation.push_str(&format!(
            "; its sockets' buffers use {} by the cgroup's memory.stat",
            bytesize::ByteSize(sock)
        ));
    }
    l.remedy = format!(
        "raise {source} (e.g. MemoryMax=/MemoryHigh= in the systemd unit, --memory for a container)"
    );
    Some(l)
}

fn tcp_mem(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        LimitKind::Kernel,
        "tcp_mem",
        "sysctl net.ipv4.tcp_mem (pages)".into(),
    );
    if let Some([_, pressure, max]) = i.tcp_mem_pages {
        let used = i.tcp_mem_used_pages.unwrap_or(0);
        l.value = Some(max as f64);
        l.used = Some(used as f64);
        let per_pages = i.buffer_bytes.unwrap_or(0.0) / PAGE_BYTES;
        l.per_connection = Some(per_pages);
        l.max_connections = allowed(i.connections, (max as f64) - used as f64, per_pages);
        l.exceeded = used >= max;
        l.explanation = if per_pages > 0.0 {
            format!(
                "TCP buffer memory, tcp_mem max {max} pages (pressure at {pressure}) at {per_pages:.2} pages per connection"
            )
        } else {
            format!("TCP buffer memory, tcp_mem max {max} pages: idle connections hold no buffers")
        };
        l.remedy = format!(
            "sysctl -w net.ipv4.tcp_mem=\"{} {} {}\"",
            pressure,
            max,
            max * 2
        );
    }
    l
}

fn time_wait_buckets(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        LimitKind::Kernel,
        "time_wait_buckets",
        "sysctl net.ipv4.tcp_max_tw_buckets".into(),
    );
    if let Some(max) = i.tw_max_buckets {
        l.value = Some(max as f64);
        l.used = Some(i.tw_current as f64);
        let overflowing = i.tw_overflows > 0 && i.tw_entered > 0;
        l.exceeded = overflowing || i.tw_steady_state >= max as f64;
        l.explanation = if overflowing {
            format!(
                "TIME_WAIT buckets: {} sockets dropped (TCPTimeWaitOverflow), tcp_max_tw_buckets {max}",
                i.tw_overflows
            )
        } else {
            format!(
                "TIME_WAIT buckets: heading to {:.0} of tcp_max_tw_buckets {max} at the current close rate",
                i.tw_steady_state
            )
        };
        l.remedy = format!(
            "sysctl -w net.ipv4.tcp_max_tw_buckets={}; or let clients close first, or reuse connections",
            (max * 2).max(i.tw_steady_state as u64 * 2)
        );
    }
    l
}

/// The accept queue: a rate limit, hit when the target's own listeners
/// drop connections (their `sk_drops`) within the evidence window. The
/// namespace's `ListenOverflows` is any process's, so it is only context.
fn accept_backlog(i: &CeilingInputs) -> Limit {
    let mut l = limit(
        LimitKind::Kernel,
        "accept_backlog",
        "listen() backlog, capped by net.core.somaxconn".into(),
    );
    l.value = i.somaxconn.map(|v| v as f64);
    let e = &i.evidence;
    l.used = Some(e.queued() as f64);
    for listener in e.listeners.iter().filter(|q| q.dropped > 0) {
        l.evidence.push(format!(
            "the accept queue of port {} dropped {} connections in the last {:.0} s ({} of {} queued now)",
            listener.port, listener.dropped, e.seconds, listener.queued, listener.queue_max
        ));
    }
    l.exceeded = !l.evidence.is_empty();
    let context = if i.namespace_listen_overflows > 0 {
        format!(
            " (the namespace's ListenOverflows/ListenDrops moved {} since attach, all processes \
             together: context, not counted against the target)",
            i.namespace_listen_overflows
        )
    } else {
        String::new()
    };
    l.explanation = if l.exceeded {
        format!(
            "the target's accept queue overflowed: it accepts slower than connections arrive{context}"
        )
    } else if !e.listeners_known {
        format!("the target's accept queues could not be read (no socket walk){context}")
    } else {
        format!("the target's accept queues have not overflowed{context}")
    };
    l.remedy = format!(
        "accept faster (more workers), and raise the backlog: listen(fd, N) and sysctl -w net.core.somaxconn={}",
        (i.somaxconn.unwrap_or(4096) * 4).max(16384)
    );
    l
}

/// Ephemeral ports: every (source address, destination) pair the target
/// dials on has its own range, `ports_per_pair`, so the dialled connections
/// can grow to `pairs x ports_per_pair` less the ports its closes hold in
/// TIME_WAIT for 60 s: e.g. 2 pairs of 28,232 ports with 1,000 open and
/// 6,000 in TIME_WAIT allow 50,464 dialled connections. The fullest pair
/// runs out first; its connections fail with EADDRNOTAVAIL.
fn ephemeral_ports(i: &CeilingInputs) -> Option<Limit> {
    let out = i.outbound.as_ref()?;
    if out.pairs.is_empty() {
        return None;
    }
    let mut l = limit(
        LimitKind::Kernel,
        "ephemeral_ports",
        "sysctl net.ipv4.ip_local_port_range, per (source IP, destination) in use".into(),
    );
    let per = out.ports_per_pair;
    let open: u64 = out.pairs.iter().map(|p| p.open).sum();
    let time_wait: u64 = out.pairs.iter().map(|p| p.time_wait).sum();
    let total = per * out.pairs.len() as u64;
    l.value = Some(total as f64);
    l.used = Some((open + time_wait) as f64);
    l.per_connection = Some(1.0);
    // Only the dialled connections use ports: the allowance adds to them,
    // less the ports TIME_WAIT holds.
    l.max_connections = Some(i.connections.saturating_sub(open) + total.saturating_sub(time_wait));
    let fullest = out
        .pairs
        .iter()
        .max_by_key(|p| p.ports())
        .expect("not empty");
    l.exceeded = fullest.ports() >= per;
    l.explanation = format!(
        "ephemeral ports for dialled connections: {per} per (source IP, destination) x {} pair(s) \
         in use; the fullest, {} -> {}, holds {} ({} open, {} in TIME_WAIT)",
        out.pairs.len(),
        fullest.source,
        fullest.destination,
        fullest.ports(),
        fullest.open,
        fullest.time_wait
    );
    if l.exceeded {
        l.evidence.push(format!(
            "{} -> {} uses all {per} ports of its range",
            fullest.source, fullest.destination
        ));
    }
    l.remedy = "add source IPs (load --source-ips), widen net.ipv4.ip_local_port_range, or \
                connect to more destination addresses/ports"
        .into();
    Some(l)
}

fn conntrack(i: &CeilingInputs) -> Option<Limit> {
    let Capacity { max, used: count } = i.conntrack?;
    let mut l = limit(
        LimitKind::Kernel,
        "conntrack",
        "sysctl net.netfilter.nf_conntrack_max".into(),
    );
    l.value = Some(max as f64);
    l.used = Some(count as f64);
    l.per_connection = Some(1.0);
    l.max_connections = allowed(i.connections, max as f64 - count as f64, 1.0);
    l.explanation = format!("connection tracking entries, nf_conntrack_max {max}");
    l.exceeded = count >= max || i.conntrack_drops > 0;
    if i.conntrack_drops > 0 {
        l.evidence.push(format!(
            "{} packets dropped for a full table in the last 10 s (nf_conntrack drop/early_drop)",
            i.conntrack_drops
        ));
    }
    l.remedy = format!(
        "sysctl -w net.netfilter.nf_conntrack_max={}, or exempt this traffic (NOTRACK)",
        max * 2
    );
    Some(l)
}

fn orphans(i: &CeilingInputs) -> Option<Limit> {
    let Capacity { max, used: now } = i.orphans?;
    let mut l = limit(
        LimitKind::Kernel,
        "orphans",
        "sysctl net.ipv4.tcp_max_orphans".into(),
    );
    l.value = Some(max as f64);
    l.used = Some(now as f64);
    l.exceeded = now >= max;
    l.explanation = format!("closed-but-unfinished sockets: {now} of tcp_max_orphans {max}");
    l.remedy = format!("sysctl -w net.ipv4.tcp_max_orphans={}", max * 2);
    Some(l)
}

fn threads(i: &CeilingInputs) -> Option<Limit> {
    let Threads {
        per_connection: per,
        bounds,
    } = i.threads.clone()?;
    // The bound with the least room left.
    let ThreadBound {
        source,
        limit: max,
        in_use: used,
    } = bounds
        .into_iter()
        .min_by_key(|b| b.limit.saturating_sub(b.in_use))?;
    let mut l = limit(LimitKind::Process, "threads", source.clone());
    l.value = Some(max as f64);
    l.used = Some(used as f64);
    // A thread per connection is a thread-per-connection server: then
    // threads bound the count. Below one per hundred, they do not.
    if per >= 0.01 {
        l.per_connection = Some(per);
        l.max_connections = allowed(i.connections, max as f64 - used as f64, per);
        l.explanation = format!("threads: {per:.2} per connection, {source} {max}");
    } else {
        l.explanation = "threads do not grow with connections".into();
    }
    l.remedy = format!(
        "use an event loop instead of a thread per connection, or raise {source} (kernel.threads-max, kernel.pid_max, RLIMIT_NPROC / LimitNPROC=, TasksMax= / pids.max)"
    );
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::inputs::Outbound,
        model::{
            evidence::{ListenerQueue, WindowEvidence},
            sock_census::PairUse,
        },
    };

    fn base() -> CeilingInputs {
        CeilingInputs {
            connections: 1000,
            kernel_bytes: Some(4000.0),
            user_bytes: Some(1000.0),
            buffer_bytes: Some(0.0),
            fds_per_connection: 1.0,
            files_per_connection: 1.0,
            processes: vec![ProcessLimits {
                pid: 7,
                nofile_soft: 20000,
                nofile_hard: 20000,
                open_fds: 1010,
                connection_fds: None,
            }],
            nr_open: Some(1_048_576),
            files_allocated: Some(2000),
            file_max: Some(2_466_177),
            mem_available: Some(24 << 30),
            mem_reclaimable_slab: Some(0),
            tcp_mem_pages: Some([287901, 383868, 575802]),
            tcp_mem_used_pages: Some(10),
            tw_max_buckets: Some(131072),
            somaxconn: Some(4096),
            ..CeilingInputs::default()
        }
    }

    fn find<'a>(c: &'a Ceiling, name: &str) -> &'a Limit {
        c.limits.iter().find(|l| l.name == name).unwrap()
    }

    fn bound(source: &str, limit: u64, in_use: u64) -> ThreadBound {
        ThreadBound {
            source: source.to_owned(),
            limit,
            in_use,
        }
    }

    #[test]
    fn nofile_allows_the_fd_headroom_plus_current() {
        let c = analyze(&base());
        assert_eq!(
            find(&c, "nofile").max_connections,
            Some(1000 + 20000 - 1010)
        );
        let b = c.binding.unwrap();
        assert_eq!(b.name, "nofile");
        assert!(
            c.verdict
                .starts_with("Ceiling: 19,990 connections, set by nofile"),
            "{}",
            c.verdict
        );
        assert!(c.verdict.contains("Next: "), "{}", c.verdict);
        assert!(b.remedy.contains("LimitNOFILE="));
    }

    #[test]
    fn supervisors_do_not_add_headroom() {
        let mut i = base();
        i.processes.push(ProcessLimits {
            pid: 8,
            nofile_soft: 20000,
            nofile_hard: 20000,
            open_fds: 10,
            connection_fds: None,
        });
        assert_eq!(find(&analyze(&i), "nofile").max_connections, Some(19990));
        i.processes[1].open_fds = 1010;
        assert_eq!(
            find(&analyze(&i), "nofile").max_connections,
            Some(1000 + 2 * 18990)
        );
    }

    #[test]
    fn memory_divides_the_budget_by_kernel_plus_user_bytes() {
        let mut i = base();
        i.mem_available = Some(5_000_000);
        i.mem_reclaimable_slab = Some(1_000_000);
        let l = find(&analyze(&i), "memory").clone();
        assert_eq!(l.max_connections, Some(1000 + 4_000_000 / 5000));
        assert_eq!(l.per_connection, Some(5000.0));
    }

    #[test]
    fn file_max_counts_files_per_connection_on_the_box() {
        let mut i = base();
        i.files_per_connection = 2.0;
        i.file_max = Some(10_000);
        i.files_allocated = Some(4_000);
        assert_eq!(
            find(&analyze(&i), "file_max").max_connections,
            Some(1000 + 3000)
        );
    }

    #[test]
    fn tcp_mem_binds_only_when_connections_hold_buffers() {
        let mut i = base();
        assert_eq!(find(&analyze(&i), "tcp_mem").max_connections, None);
        i.buffer_bytes = Some(8192.0);
        i.tcp_mem_pages = Some([100, 200, 300]);
        i.tcp_mem_used_pages = Some(100);
        assert_eq!(
            find(&analyze(&i), "tcp_mem").max_connections,
            Some(1000 + 100)
        );
    }

    #[test]
    fn a_limit_being_hit_binds_before_any_count() {
        let mut i = base();
        i.tw_overflows = 12;
        // Overflows caused by others (the target closes nothing first).
        assert!(!find(&analyze(&i), "time_wait_buckets").exceeded);
        i.tw_entered = 500;
        let c = analyze(&i);
        assert_eq!(c.binding.as_ref().unwrap().name, "time_wait_buckets");
        assert!(c.verdict.contains("being hit now"), "{}", c.verdict);
        assert!(c.verdict.contains("TCPTimeWaitOverflow"), "{}", c.verdict);
    }

    fn listener(port: u16, queued: u32, dropped: u64) -> ListenerQueue {
        ListenerQueue {
            port,
            ipv6: false,
            queued,
            queue_max: 511,
            dropped,
            stuck: 0,
        }
    }

    /// Window evidence of a target holding `held` (steady) with `refused`
    /// refusals and its listener's drops.
    fn holding(held: u64, refused: u64, dropped: u64) -> WindowEvidence {
        WindowEvidence {
            seconds: 10.0,
            closed_after_accept: refused,
            refused,
            listeners: vec![listener(6379, 0, dropped)],
            connections_min: held,
            connections_max: held,
            steady_seconds: 3.0,
            listeners_known: true,
            ..WindowEvidence::default()
        }
    }

    fn app(name: &'static str, max: u64) -> AppLimit {
        AppLimit {
            name,
            setting: max,
            max_connections: max,
            source: "/etc/app.conf:12".into(),
            explanation: format!("{name} {max}"),
            remedy: format!("raise {name}"),
        }
    }

    #[test]
    fn the_namespace_overflow_counter_is_context_not_a_hit() {
        // Other processes overflowed their queues some time ago: the target
        // is not being hit (c1m said "being hit now: accept_backlog" for ever).
        let mut i = base();
        i.namespace_listen_overflows = 1433;
        i.evidence = holding(1000, 0, 0);
        let c = analyze(&i);
        let l = find(&c, "accept_backlog");
        assert!(!l.exceeded && l.evidence.is_empty());
        assert!(l.explanation.contains("1433"), "{}", l.explanation);
        assert_eq!(c.binding.unwrap().name, "nofile");
        // The target's own listener dropping connections is.
        i.evidence = holding(300, 0, 57);
        i.connections = 300;
        let c = analyze(&i);
        let l = find(&c, "accept_backlog");
        assert!(l.exceeded, "{l:?}");
        assert!(l.evidence[0].contains("57"), "{:?}", l.evidence);
    }

    #[test]
    fn a_server_cap_binds_before_kernel_limits_and_says_where_it_is_set() {
        let mut i = base();
        i.connections = 8000;
        i.app_limits = vec![app("nginx.worker_connections", 31_998)];
        let c = analyze(&i);
        let b = c.binding.clone().unwrap();
        assert_eq!(b.name, "nofile", "nofile at 19,990 is tighter");
        i.app_limits = vec![app("redis.maxclients", 12_000)];
        let c = analyze(&i);
        let b = c.binding.clone().unwrap();
        assert_eq!(
            (b.kind, b.name),
            (LimitKind::Application, "redis.maxclients")
        );
        assert!(!b.exceeded && b.evidence.is_empty());
        assert_eq!(
            c.verdict,
            "Ceiling: 12,000 connections, set by redis.maxclients (redis.maxclients 12000; \
             /etc/app.conf:12). Next: nofile at 26,990."
        );
        // At the cap and refusing: being hit, with what c1m saw.
        i.evidence = holding(12_000, 1234, 0);
        let c = analyze(&i);
        let b = c.binding.unwrap();
        assert_eq!(b.name, "redis.maxclients");
        assert!(b.exceeded);
        assert!(
            b.evidence.iter().any(|e| e.contains("refused 1234")),
            "{:?}",
            b.evidence
        );
        assert!(
            c.verdict.starts_with("Ceiling: being hit now at 12,000"),
            "{}",
            c.verdict
        );
        // And it clears with the window.
        i.evidence = holding(12_000, 0, 0);
        assert!(!analyze(&i).binding.unwrap().exceeded);
    }

    #[test]
    fn a_server_reclaiming_idle_connections_below_its_cap_is_at_it() {
        // nginx, 2 x 298 slots: it held 540 and closed idle ones unread.
        let mut i = base();
        i.connections = 540;
        i.app_limits = vec![app("nginx.worker_connections", 596)];
        i.evidence = holding(540, 0, 0);
        i.evidence.closed_unread = 495;
        let c = analyze(&i);
        let b = c.binding.unwrap();
        assert_eq!(b.name, "nginx.worker_connections");
        assert!(b.exceeded, "{b:?}");
        assert!(b.evidence.iter().any(|e| e.contains("not read from")));
        // A kernel limit gets no such slack.
        i.app_limits.clear();
        i.processes[0].connection_fds = Some(560);
        i.processes[0].nofile_soft = 610;
        i.processes[0].open_fds = 570;
        i.evidence.refused = 5;
        let c = analyze(&i);
        assert!(!find(&c, "nofile").exceeded);
    }

    #[test]
    fn a_cap_that_sets_the_fd_limit_itself_is_named_instead_of_nofile() {
        // memcached -c 1200 sets its own nofile to 1200: both allow ~1,190.
        let mut i = base();
        i.connections = 1000;
        i.processes[0].nofile_soft = 1200;
        i.processes[0].open_fds = 1012;
        i.processes[0].connection_fds = Some(1000);
        i.app_limits = vec![app("memcached.conn_limit", 1190)];
        let c = analyze(&i);
        assert_eq!(find(&c, "nofile").max_connections, Some(1188));
        assert_eq!(c.binding.unwrap().name, "memcached.conn_limit");
    }

    #[test]
    fn sockets_without_an_fd_do_not_inflate_the_fd_allowance() {
        // 5,000 counted connections, of which the process holds fds for
        // 1,000 (the rest wait in the accept queue): (20000 - 10) / 1.
        let mut i = base();
        i.connections = 5000;
        i.processes[0].connection_fds = Some(1000);
        assert_eq!(find(&analyze(&i), "nofile").max_connections, Some(19_990));
        // Two fds per connection (a proxy): 1000 + 18990 / 2.
        i.fds_per_connection = 2.0;
        assert_eq!(
            find(&analyze(&i), "nofile").max_connections,
            Some(1000 + 9495)
        );
    }

    #[test]
    fn a_process_per_connection_server_is_not_bound_by_nofile() {
        // PostgreSQL: a postmaster and 60 backends with one connection each.
        let mut i = base();
        i.connections = 60;
        i.processes = (0..61)
            .map(|n| ProcessLimits {
                pid: 100 + n,
                nofile_soft: 1024,
                nofile_hard: 524_288,
                open_fds: 12,
                connection_fds: Some(u64::from(n > 0)),
            })
            .collect();
        i.threads = Some(Threads {
            per_connection: 1.0,
            bounds: vec![bound("RLIMIT_NPROC", 200, 80)],
        });
        let c = analyze(&i);
        let nofile = find(&c, "nofile");
        assert_eq!(nofile.max_connections, None);
        assert!(nofile.explanation.contains("process per connection"));
        let b = c.binding.unwrap();
        assert_eq!((b.name, b.kind), ("threads", LimitKind::Process));
        assert_eq!(b.max_connections, Some(60 + 120));
    }

    #[test]
    fn a_server_that_stops_at_its_fd_limit_is_hitting_nofile_not_an_unknown_cap() {
        // c1m's echo under nofile 1000: it stops accepting at ~990 and its
        // queue overflows; nofile allows just that.
        let mut i = base();
        i.connections = 990;
        i.processes[0].nofile_soft = 1000;
        i.processes[0].open_fds = 1000;
        i.processes[0].connection_fds = Some(990);
        i.evidence = holding(990, 0, 40);
        let c = analyze(&i);
        let b = c.binding.unwrap();
        assert_eq!(b.name, "nofile");
        assert!(b.exceeded);
        assert!(c.limits.iter().all(|l| l.name != "application.observed"));
    }

    #[test]
    fn a_cap_nobody_configured_is_observed_from_refusals() {
        // A server c1m has no reader for refuses everything past 700.
        let mut i = base();
        i.connections = 700;
        i.evidence = holding(700, 25, 0);
        let c = analyze(&i);
        let b = c.binding.unwrap();
        assert_eq!(
            (b.kind, b.name),
            (LimitKind::Application, "application.observed")
        );
        assert_eq!(b.max_connections, Some(700));
        assert!(b.exceeded && !b.evidence.is_empty());
        // A count still growing is not a cap.
        i.evidence.connections_min = 300;
        assert!(
            analyze(&i)
                .limits
                .iter()
                .all(|l| l.name != "application.observed")
        );
        // Nor is an HTTP server closing after answering (it read the request).
        i.evidence = holding(64, 0, 0);
        i.evidence.closed_after_accept = 5000;
        assert!(analyze(&i).limits.iter().all(|l| !l.exceeded));
    }

    #[test]
    fn a_known_server_whose_cap_cannot_be_read_is_shown_without_a_count() {
        let mut i = base();
        i.app_unreadable = vec![UnreadableApp {
            server: "redis",
            why: "NOAUTH: set a password with --redis-password".into(),
        }];
        let c = analyze(&i);
        let l = find(&c, "application.unreadable");
        assert_eq!(l.max_connections, None);
        assert!(l.explanation.contains("NOAUTH"));
    }

    #[test]
    fn ephemeral_ports_multiply_by_source_ips_and_destinations() {
        let pair = |source: &str, open| PairUse {
            source: source.parse().unwrap(),
            destination: "10.0.0.5:5432".parse().unwrap(),
            open,
            time_wait: 0,
        };
        let mut i = base();
        i.outbound = Some(Outbound {
            ports_per_pair: 28232,
            pairs: vec![pair("127.0.0.2", 600), pair("127.0.0.3", 400)],
        });
        let l = find(&analyze(&i), "ephemeral_ports").clone();
        // 1,000 connections, all dialled: 2 pairs x 28,232.
        assert_eq!(l.max_connections, Some(56464));
        assert!(
            l.explanation
                .contains("127.0.0.2 -> 10.0.0.5:5432, holds 600 (600 open")
        );
        assert!(l.remedy.contains("source IPs"));
        assert!(!l.exceeded);
        i.outbound = Some(Outbound {
            ports_per_pair: 100,
            pairs: vec![pair("127.0.0.2", 100)],
        });
        assert!(find(&analyze(&i), "ephemeral_ports").exceeded);
        // A churn's TIME_WAIT takes ports too: 40 open + 60 closing.
        i.outbound = Some(Outbound {
            ports_per_pair: 100,
            pairs: vec![PairUse {
                time_wait: 60,
                ..pair("127.0.0.2", 40)
            }],
        });
        let l = find(&analyze(&i), "ephemeral_ports").clone();
        assert!(l.exceeded);
        assert!(
            l.explanation
                .contains("holds 100 (40 open, 60 in TIME_WAIT)")
        );
    }

    #[test]
    fn threads_bound_only_thread_per_connection_servers() {
        let mut i = base();
        let bounds = vec![
            bound("kernel.threads-max", 100_000, 200),
            bound("pids.max", 1000, 200),
        ];
        i.threads = Some(Threads {
            per_connection: 0.0,
            bounds: bounds.clone(),
        });
        assert_eq!(find(&analyze(&i), "threads").max_connections, None);
        i.threads = Some(Threads {
            per_connection: 1.0,
            bounds,
        });
        let l = find(&analyze(&i), "threads").clone();
        assert_eq!(l.max_connections, Some(1800));
        assert_eq!(l.source, "pids.max", "the tightest bound is named");
        assert_eq!(analyze(&i).binding.unwrap().name, "threads");
    }

    #[test]
    fn conntrack_and_cgroup_appear_only_when_in_play() {
        let c = analyze(&base());
        assert!(
            c.limits
                .iter()
                .all(|l| l.name != "conntrack" && l.name != "cgroup_memory")
        );
        let mut i = base();
        i.conntrack = Some(Capacity {
            max: 5000,
            used: 1000,
        });
        i.cgroup_memory = Some(CgroupMemory {
            source: "memory.max".into(),
            limit_bytes: 10_000_000,
            usage_bytes: 5_000_000,
            sock_bytes: Some(65_536),
        });
        let c = analyze(&i);
        assert_eq!(find(&c, "conntrack").max_connections, Some(5000));
        assert!(!find(&c, "conntrack").exceeded);
        let mut full = i.clone();
        full.conntrack_drops = 12;
        let l = find(&analyze(&full), "conntrack").clone();
        assert!(l.exceeded);
        assert!(
            l.evidence[0].starts_with("12 packets dropped"),
            "{:?}",
            l.evidence
        );
        assert_eq!(find(&c, "cgroup_memory").max_connections, Some(2000));
        assert!(
            find(&c, "cgroup_memory")
                .explanation
                .contains("buffers use 64.0 KiB")
        );
        assert_eq!(c.binding.unwrap().name, "cgroup_memory");
    }

    #[test]
    fn a_box_projection_has_no_per_process_limits() {
        let mut i = base();
        i.processes.clear();
        let c = analyze(&i);
        assert!(
            c.limits
                .iter()
                .all(|l| l.name != "nofile" && l.name != "nr_open")
        );
        assert_eq!(c.binding.unwrap().name, "file_max");
    }

    #[test]
    fn limits_are_sorted_tightest_first() {
        let c = analyze(&base());
        let counts: Vec<u64> = c.limits.iter().filter_map(|l| l.max_connections).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }
}
