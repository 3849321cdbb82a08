//! The (source, destination) pair of a connection: each has its own range
//! of ephemeral ports, so the port limit and its forecast count per pair.
//! Read by the socket and fd walks (open dialled connections) and by the
//! state probe (dialled connections closing into TIME_WAIT).

use aya_ebpf::helpers::bpf_probe_read_kernel;
use c1m_common::OutboundPair;

use crate::offsets::kernel_offsets;

const AF_INET6: u16 = 10;

/// The pair of the socket at `sk` (a `sock_common`), `None` when this
/// kernel's BTF gave no destination port offset.
#[inline(always)]
pub fn pair_of(sk: u64, family: u16) -> Option<OutboundPair> {
    let offsets = kernel_offsets();
    if offsets.skc_dport == 0 {
        return None;
    }
    let read = |offset: u32| (sk + offset as u64) as *const u8;
    let mut pair = OutboundPair {
        family,
        ..OutboundPair::default()
    };
    // SAFETY: reads of `sock_common` fields through bpf_probe_read_kernel;
    // failures leave zeros.
    unsafe {
        pair.dport =
            u16::from_be(bpf_probe_read_kernel(read(offsets.skc_dport).cast::<u16>()).unwrap_or(0));
        if family == AF_INET6 {
            pair.saddr = bpf_probe_read_kernel(read(offsets.skc_v6_rcv_saddr).cast::<[u8; 16]>())
                .unwrap_or([0; 16]);
            pair.daddr = bpf_probe_read_kernel(read(offsets.skc_v6_daddr).cast::<[u8; 16]>())
                .unwrap_or([0; 16]);
        } else {
            let saddr = bpf_probe_read_kernel(read(offsets.skc_rcv_saddr).cast::<[u8; 4]>())
                .unwrap_or([0; 4]);
            let daddr =
                bpf_probe_read_kernel(read(offsets.skc_daddr).cast::<[u8; 4]>()).unwrap_or([0; 4]);
            pair.saddr[..4].copy_from_slice(&saddr);
            pair.daddr[..4].copy_from_slice(&daddr);
        }
    }
    Some(pair)
}
