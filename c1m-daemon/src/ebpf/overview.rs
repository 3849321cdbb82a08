//! The host overview's reader: loads c1m's object with only the two
//! overview iterators (`c1m-ebpf/src/probes/overview.rs`; nothing is
//! attached to any hook), reads each walk to the end and turns the
//! records into typed values. A read is all the walk costs: no map grows
//! with the number of sockets, nothing to clear but one slot.

use std::io::{ErrorKind, Read as _};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::Iter,
};
use c1m_common::{
    FileRun, GLOBAL_OVERVIEW_OFFSETS, GLOBAL_SOCK_OFFSETS, MAP_OVERVIEW_FILE_RUN, OverviewKind,
    OverviewOffsets, OverviewRecord, PROG_OVERVIEW_OWNERLESS, PROG_OVERVIEW_TASK_SOCKETS,
};

use super::{
    C1M_EBPF_OBJECT, btf_offsets,
    error::{ProbeError, error_chain, map_error, program_mut},
    probes::ensure_privileges,
};
use crate::model::overview::{OverviewWalk, OwnerlessSeen, SocketSeen};

const RECORD_BYTES: usize = std::mem::size_of::<OverviewRecord>();

pub struct OverviewPrograms {
    ebpf: Ebpf,
    file_run: Array<MapData, FileRun>,
}

impl OverviewPrograms {
    /// Load the object and its two overview iterators. Needs the kernel's
    /// BTF (struct offsets, and iterators are typed by it).
    pub fn load() -> Result<OverviewPrograms, ProbeError> {
        ensure_privileges()?;
        let unavailable = |why: String| ProbeError::Walk {
            program: "overview",
            why,
        };
        let btf = btf_offsets::load_kernel_btf().map_err(|e| unavailable(e.to_string()))?;
        let offsets =
            btf_offsets::resolve_sock_offsets(&btf).map_err(|e| unavailable(e.to_string()))?;
        let overview_offsets = OverviewOffsets {
            sk_socket: btf_offsets::member_offset(&btf, "sock", "sk_socket").unwrap_or_else(
                |err| {
                    log::warn!("{err}: orphaned sockets and accept queues are not counted");
                    0
                },
            ),
            ..OverviewOffsets::ZERO
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_SOCK_OFFSETS, &offsets, true)
            .override_global(GLOBAL_OVERVIEW_OFFSETS, &overview_offsets, true)
            .load(C1M_EBPF_OBJECT)
            .map_err(ProbeError::Load)?;
        let aya_btf =
            aya::Btf::from_sys_fs().map_err(|e| unavailable(format!("kernel BTF: {e}")))?;
        for (program, target) in [
            (PROG_OVERVIEW_TASK_SOCKETS, "task_file"),
            (PROG_OVERVIEW_OWNERLESS, "tcp"),
        ] {
            let iter: &mut Iter = program_mut(&mut ebpf, program).map_err(unavailable)?;
            iter.load(target, &aya_btf).map_err(|e| {
                unavailable(format!(
                    "iter/{target}: {} (BPF iterators need Linux 5.9 or later)",
                    error_chain(e)
                ))
            })?;
        }
        let map = ebpf
            .take_map(MAP_OVERVIEW_FILE_RUN)
            .ok_or(ProbeError::MissingMap(MAP_OVERVIEW_FILE_RUN))?;
        let file_run = Array::try_from(map).map_err(map_error(MAP_OVERVIEW_FILE_RUN))?;
        Ok(OverviewPrograms { ebpf, file_run })
    }

    /// One walk of every process's sockets and of this thread's network
    /// namespace's ownerless sockets.
    pub fn walk(&mut self) -> Result<OverviewWalk, ProbeError> {
        self.file_run
            .set(0, FileRun::default(), 0)
            .map_err(map_error(MAP_OVERVIEW_FILE_RUN))?;
        let mut walk = OverviewWalk::default();
        let task_records = read_walk(&mut self.ebpf, PROG_OVERVIEW_TASK_SOCKETS)?;
        let ownerless_records = read_walk(&mut self.ebpf, PROG_OVERVIEW_OWNERLESS)?;
        for record in task_records.iter().chain(&ownerless_records) {
            add_record(&mut walk, record);
        }
        Ok(walk)
    }
}

fn add_record(walk: &mut OverviewWalk, record: &OverviewRecord) {
    match OverviewKind::from_u8(record.kind) {
        Some(OverviewKind::TaskSocket) => walk.sockets.push(SocketSeen {
            pid: record.tgid,
            state: record.state as u32,
            local_port: record.local_port,
            netns: record.netns,
            buffer_bytes: record.rmem_alloc_bytes as u64
                + record.wmem_queued_bytes as u64
                + record.forward_alloc_bytes as u64,
        }),
        Some(OverviewKind::TaskFiles) => {
            *walk.files.entry(record.tgid).or_default() += record.count as u64;
        }
        Some(OverviewKind::Ownerless) => walk.ownerless.push(OwnerlessSeen {
            state: record.state as u32,
            local_port: record.local_port,
        }),
        Some(OverviewKind::KeepAlive) | None => {}
    }
}

/// Parse a walk's output: whole records only.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<OverviewRecord>, String> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(format!(
            "{} bytes is not a whole number of {RECORD_BYTES}-byte records: the daemon \
             and its eBPF object disagree",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(RECORD_BYTES)
        .map(|chunk| {
            // SAFETY: 32 bytes read into a `#[repr(C)]` struct of plain
            // integers (any bit pattern is valid), unaligned read.
            unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast::<OverviewRecord>()) }
        })
        .collect())
}

/// A new iterator instance, read to the end.
fn read_walk(ebpf: &mut Ebpf, program: &'static str) -> Result<Vec<OverviewRecord>, ProbeError> {
    let fail = |why: String| ProbeError::Walk { program, why };
    let iter: &mut Iter = program_mut(ebpf, program).map_err(fail)?;
    let link_id = iter.attach().map_err(|e| fail(error_chain(e)))?;
    let link = iter.take_link(link_id).map_err(|e| fail(error_chain(e)))?;
    let mut file = link.into_file().map_err(|e| fail(error_chain(e)))?;
    let mut bytes = Vec::with_capacity(1 << 16);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(fail(format!("reading the iterator: {e}"))),
        }
    }
    parse_records(&bytes).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_whole_and_a_torn_tail_is_an_error() {
        let record = OverviewRecord {
            kind: OverviewKind::TaskSocket as u8,
            state: 1,
            family: 2,
            local_port: 8080,
            tgid: 42,
            netns: 7,
            rmem_alloc_bytes: 10,
            wmem_queued_bytes: 20,
            forward_alloc_bytes: 30,
            ..OverviewRecord::default()
        };
        // SAFETY: viewing a plain `#[repr(C)]` value as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&record as *const OverviewRecord).cast::<u8>(),
                RECORD_BYTES,
            )
        };
        let mut two = bytes.to_vec();
        two.extend_from_slice(bytes);
        let parsed = parse_records(&two).unwrap();
        assert_eq!(parsed, [record, record]);
        let mut walk = OverviewWalk::default();
        add_record(&mut walk, &parsed[0]);
        assert_eq!(walk.sockets[0].buffer_bytes, 60);
        assert_eq!(walk.sockets[0].local_port, 8080);
        assert!(parse_records(&two[..40]).unwrap_err().contains("40 bytes"));
    }
}
