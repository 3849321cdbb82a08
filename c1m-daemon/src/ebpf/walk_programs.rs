//! The walks' programs: BPF iterators, `iter/tcp` over the target's
//! sockets (exact counts and buffer memory) and `iter/task_file` over its
//! open files. Each walk zeroes its map, reads the iterator to the end (the
//! kernel runs the program once per object during the read) and reads the
//! census back. (The kernel-side names, `PROG_SOCK_SCAN`, `MAP_SOCK_SCAN`,
//! stay as they are: they name objects `bpftool` shows.)

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read as _},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
    programs::Iter,
};
use c1m_common::{
    FdCount, ListenerSlot, MAP_FD_COUNTS, MAP_LISTEN_FOUND, MAP_LISTENERS_FOUND,
    MAP_OUTBOUND_PAIRS, MAP_SOCK_SCAN, MAX_OUTBOUND_PAIRS, MAX_TARGET_LISTENERS, OutboundPair,
    PROG_FD_SCAN, PROG_SOCK_SCAN, SOCK_SCAN_SLOTS, SockScanSlot,
};

use super::error::{ProbeError, error_chain, map_error, program_mut};
use crate::model::sock_census::{Pair, PairUse, SockCensus};

pub struct WalkPrograms {
    sock_scan: Array<MapData, SockScanSlot>,
    fd_counts: HashMap<MapData, u32, FdCount>,
    listen_found: HashMap<MapData, u32, u64>,
    listeners_found: HashMap<MapData, u64, ListenerSlot>,
    outbound_pairs: HashMap<MapData, OutboundPair, u64>,
}

/// What one walk of the target's file tables found.
#[derive(Debug, Clone, Default)]
pub struct FdCensus {
    /// Open files per target process.
    pub by_pid: BTreeMap<u32, u64>,
    /// TCP connections (non-listening TCP sockets) each holds an fd for.
    pub connections_by_pid: BTreeMap<u32, u64>,
    /// Local port -> listening sockets the target holds on it.
    pub listening_ports: BTreeMap<u16, u64>,
}

impl WalkPrograms {
    /// Load both iterator programs. `Err` says why walks are unavailable on
    /// this kernel (the daemon then falls back to estimates and `/proc`).
    pub fn load(ebpf: &mut Ebpf) -> Result<Result<WalkPrograms, String>, ProbeError> {
        let loaded = (|| {
            let btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
            for (program, target) in [(PROG_SOCK_SCAN, "tcp"), (PROG_FD_SCAN, "task_file")] {
                let iter: &mut Iter = program_mut(ebpf, program)?;
                iter.load(target, &btf)
                    .map_err(|e| format!("iter/{target}: {}", error_chain(e)))?;
            }
            Ok::<_, String>(())
        })();
        if let Err(why) = loaded {
            return Ok(Err(why));
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(ProbeError::MissingMap(name));
        let sock_scan = Array::try_from(take(MAP_SOCK_SCAN)?).map_err(map_error(MAP_SOCK_SCAN))?;
        let fd_counts =
            HashMap::try_from(take(MAP_FD_COUNTS)?).map_err(map_error(MAP_FD_COUNTS))?;
        let listen_found =
            HashMap::try_from(take(MAP_LISTEN_FOUND)?).map_err(map_error(MAP_LISTEN_FOUND))?;
        let listeners_found = HashMap::try_from(take(MAP_LISTENERS_FOUND)?)
            .map_err(map_error(MAP_LISTENERS_FOUND))?;
        let outbound_pairs =
            HashMap::try_from(take(MAP_OUTBOUND_PAIRS)?).map_err(map_error(MAP_OUTBOUND_PAIRS))?;
        Ok(Ok(WalkPrograms {
            sock_scan,
            fd_counts,
            listen_found,
            listeners_found,
            outbound_pairs,
        }))
    }

    pub fn walk_sockets(&mut self, ebpf: &mut Ebpf) -> Result<SockCensus, ProbeError> {
        for index in 0..SOCK_SCAN_SLOTS {
            self.sock_scan
                .set(index, SockScanSlot::default(), 0)
                .map_err(map_error(MAP_SOCK_SCAN))?;
        }
        clear(&mut self.listeners_found);
        clear(&mut self.outbound_pairs);
        run_iterator(ebpf, PROG_SOCK_SCAN)?;
        let raw = (0..SOCK_SCAN_SLOTS)
            .map(|index| self.sock_scan.get(&index, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAP_SOCK_SCAN))?;
        let mut census = SockCensus::from_slots(&raw);
        census.listeners = self
            .listeners_found
            .iter()
            .map(|entry| entry.map(|(_, slot)| slot))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAP_LISTENERS_FOUND))?;
        // A full map drops listeners silently on the kernel side: say so.
        census.listeners_truncated = census.listeners.len() >= MAX_TARGET_LISTENERS as usize;
        Ok(census)
    }

    /// Open files and listening sockets per target process.
    pub fn walk_fds(&mut self, ebpf: &mut Ebpf) -> Result<FdCensus, ProbeError> {
        clear(&mut self.fd_counts);
        clear(&mut self.listen_found);
        run_iterator(ebpf, PROG_FD_SCAN)?;
        let counts = self
            .fd_counts
            .iter()
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(map_error(MAP_FD_COUNTS))?;
        let by_pid = counts.iter().map(|(&pid, c)| (pid, c.files)).collect();
        let connections_by_pid = counts
            .iter()
            .map(|(&pid, c)| (pid, c.tcp_connections))
            .collect();
        let listening_ports = self
            .listen_found
            .iter()
            .map(|entry| entry.map(|(port, n)| (port as u16, n)))
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(map_error(MAP_LISTEN_FOUND))?;
        Ok(FdCensus {
            by_pid,
            connections_by_pid,
            listening_ports,
        })
    }

    /// The target's open dialled connections per (source, destination),
    /// once both walks ran: the socket walk counts those c1m saw open, the
    /// fd walk adds those that predate it.
    pub fn read_outbound(&mut self, census: &mut SockCensus) -> Result<(), ProbeError> {
        census.outbound = self
            .outbound_pairs
            .iter()
            .map(|entry| entry.map(|(pair, open)| outbound_use(&pair, open)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAP_OUTBOUND_PAIRS))?;
        census.outbound_truncated = census.outbound.len() >= MAX_OUTBOUND_PAIRS as usize;
        Ok(())
    }
}

/// A kernel (source, destination) pair as addresses.
pub(super) fn pair_addresses(pair: &OutboundPair) -> Pair {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = |bytes: &[u8; 16]| -> IpAddr {
        if pair.family == 10 {
            IpAddr::V6(Ipv6Addr::from(*bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        }
    };
    (
        ip(&pair.saddr),
        SocketAddr::new(ip(&pair.daddr), pair.dport),
    )
}

/// Open connections on a pair, as the walks counted them.
fn outbound_use(pair: &OutboundPair, open: u64) -> PairUse {
    let (source, destination) = pair_addresses(pair);
    PairUse {
        source,
        destination,
        open,
        time_wait: 0,
    }
}

fn clear<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>) {
    let stale: Vec<K> = map.keys().filter_map(Result::ok).collect();
    for key in stale {
        // Gone already is as good as removed.
        let _ = map.remove(&key);
    }
}

/// One walk: a new iterator instance, read until the kernel says it is done.
fn run_iterator(ebpf: &mut Ebpf, program: &'static str) -> Result<(), ProbeError> {
    let fail = |why: String| ProbeError::Walk { program, why };
    let iter: &mut Iter = program_mut(ebpf, program).map_err(fail)?;
    let link_id = iter.attach().map_err(|e| fail(error_chain(e)))?;
    let link = iter.take_link(link_id).map_err(|e| fail(error_chain(e)))?;
    let mut file = link.into_file().map_err(|e| fail(error_chain(e)))?;
    // The programs write nothing; the read drives the walk. A read that
    // visits a million objects without output returns EAGAIN so the reader
    // may pause (the kernel's MAX_ITER_OBJECTS); the next read continues
    // where it stopped.
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(fail(format!("reading the iterator: {e}"))),
        }
    }
}
