//! Struct field offsets of the running kernel, read from its BTF.
//!
//! Rust eBPF programs have no CO-RE relocations, so a probe that reads
//! `sk->__sk_common.skc_num` needs the offset of that field on *this*
//! kernel. The daemon resolves it here and passes it to the probes as a
//! global before loading them.

use btf_rs::{Btf, Type};
use c1m_common::SockOffsets;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OffsetError {
    #[error("kernel BTF unusable: {0}")]
    Btf(String),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member} in this kernel's BTF")]
    NoMember { strukt: String, member: String },
    #[error("member {0} is a bitfield, which c1m cannot read by offset")]
    Bitfield(String),
}

fn btf_err(err: impl std::fmt::Display) -> OffsetError {
    OffsetError::Btf(err.to_string())
}

/// The offsets `inet_sock_set_state_btf` and the walks need.
pub fn resolve_sock_offsets(btf: &Btf) -> Result<SockOffsets, OffsetError> {
    Ok(SockOffsets {
        skc_family: member_offset(btf, "sock", "skc_family")?,
        skc_num: member_offset(btf, "sock", "skc_num")?,
        skc_state: member_offset(btf, "sock", "skc_state")?,
        // `sk_rmem_alloc` is a macro for `sk_backlog.rmem_alloc`.
        sk_rmem_alloc: member_offset(btf, "sock", "rmem_alloc")?,
        sk_wmem_queued: member_offset(btf, "sock", "sk_wmem_queued")?,
        sk_forward_alloc: member_offset(btf, "sock", "sk_forward_alloc")?,
        task_tgid: member_offset(btf, "task_struct", "tgid")?,
        socket_sk: member_offset(btf, "socket", "sk")?,
        // The evidence fields below are optional: an older kernel without
        // one (sk_protocol was a bitfield before 5.6) keeps counting, and
        // the probes skip what needs the missing field (offset 0).
        skc_net: optional(btf, "sock", "skc_net"),
        net_ns_inum: match (
            optional(btf, "net", "ns"),
            optional(btf, "ns_common", "inum"),
        ) {
            (0, _) | (_, 0) => 0,
            (ns, inum) => ns + inum,
        },
        sk_protocol: optional(btf, "sock", "sk_protocol"),
        sk_ack_backlog: optional(btf, "sock", "sk_ack_backlog"),
        sk_max_ack_backlog: optional(btf, "sock", "sk_max_ack_backlog"),
        sk_drops: optional(btf, "sock", "sk_drops"),
        tcp_copied_seq: optional(btf, "tcp_sock", "copied_seq"),
        tcp_rcv_nxt: optional(btf, "tcp_sock", "rcv_nxt"),
        tcp_bytes_received: optional(btf, "tcp_sock", "bytes_received"),
        skc_daddr: member_offset(btf, "sock", "skc_daddr").unwrap_or(0),
        skc_rcv_saddr: optional(btf, "sock", "skc_rcv_saddr"),
        skc_dport: optional(btf, "sock", "skc_dport"),
        skc_v6_daddr: optional(btf, "sock", "skc_v6_daddr"),
        skc_v6_rcv_saddr: optional(btf, "sock", "skc_v6_rcv_saddr"),
        task_files: optional(btf, "task_struct", "files"),
        files_fdt: member_offset(btf, "files_struct", "fdt").unwrap_or(0),
        fdtable_fd: optional(btf, "fdtable", "fd"),
        file_private_data: optional(btf, "file", "private_data"),
        ..SockOffsets::ZERO
    })
}

/// An offset the probes can do without: 0 (and a warning) when this
/// kernel's BTF lacks it. No field c1m reads this way sits at offset 0
/// (but `skc_daddr` and `files_fdt`, which are only read when `skc_dport`
/// and `task_files` are known).
fn optional(btf: &Btf, strukt: &str, member: &str) -> u32 {
    member_offset(btf, strukt, member).unwrap_or_else(|err| {
        log::warn!("{err}: the evidence that needs it is not collected on this kernel");
        0
    })
}

/// Byte offset of `member` in `struct strukt`, looking through embedded
/// structs and anonymous unions (`skc_num` lives in `sock.__sk_common`,
/// inside an anonymous union of `skc_portpair`).
pub fn member_offset(btf: &Btf, strukt: &str, member: &str) -> Result<u32, OffsetError> {
    let ty = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| OffsetError::NoStruct(strukt.to_owned()))?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))
        .ok_or_else(|| OffsetError::NoStruct(strukt.to_owned()))?;
    let bits = find_member_bits(btf, &ty, member, 0)?.ok_or_else(|| OffsetError::NoMember {
        strukt: strukt.to_owned(),
        member: member.to_owned(),
    })?;
    if bits % 8 != 0 {
        return Err(OffsetError::Bitfield(member.to_owned()));
    }
    Ok(bits / 8)
}

/// Depth-first search; only descends into members that are structs or
/// unions (embedded, not pointed to), so the offset stays inside `ty`.
fn find_member_bits(
    btf: &Btf,
    ty: &Type,
    member: &str,
    base_bits: u32,
) -> Result<Option<u32>, OffsetError> {
    let (Type::Struct(s) | Type::Union(s)) = ty else {
        return Ok(None);
    };
    for m in &s.members {
        let bits = base_bits + m.bit_offset();
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == member {
            if m.bitfield_size().is_some_and(|size| size != 0) {
                return Err(OffsetError::Bitfield(member.to_owned()));
            }
            return Ok(Some(bits));
        }
        let member_type = strip_modifiers(btf, btf.resolve_chained_type(m).map_err(btf_err)?)?;
        if let Some(found) = find_member_bits(btf, &member_type, member, bits)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Follow typedefs and qualifiers to the underlying type.
fn strip_modifiers(btf: &Btf, mut ty: Type) -> Result<Type, OffsetError> {
    loop {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).map_err(btf_err)?,
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(t).map_err(btf_err)?
            }
            _ => return Ok(ty),
        };
    }
}

/// The running kernel's BTF.
pub fn load_kernel_btf() -> Result<Btf, OffsetError> {
    Btf::from_file(super::VMLINUX_BTF)
        .map_err(|err| OffsetError::Btf(format!("{}: {err}", super::VMLINUX_BTF)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the kernel's BTF, which every CI machine has.
    #[test]
    fn resolves_sock_common_offsets_on_this_kernel() {
        let btf = load_kernel_btf().expect("/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)");
        let offsets = resolve_sock_offsets(&btf).unwrap();
        // struct sock_common has been laid out like this on 64-bit kernels
        // since 4.x: addrpair (8), hash (4), u16hashes (4), then dport/num,
        // then family.
        assert_eq!(offsets.skc_num, 14);
        assert_eq!(offsets.skc_family, 16);
        assert_eq!(offsets.skc_state, 18);
        // Buffer fields live in `struct sock` proper, past `sock_common`.
        for offset in [
            offsets.sk_rmem_alloc,
            offsets.sk_wmem_queued,
            offsets.sk_forward_alloc,
        ] {
            assert!((136..1024).contains(&offset), "offset {offset}");
        }
        assert!(offsets.task_tgid > 0);
        // `possible_net_t skc_net` sits in sock_common; the rest in sock
        // and tcp_sock, past it.
        assert!((0..136).contains(&offsets.skc_net), "{offsets:?}");
        for offset in [
            offsets.sk_ack_backlog,
            offsets.sk_max_ack_backlog,
            offsets.sk_drops,
            offsets.tcp_copied_seq,
            offsets.tcp_rcv_nxt,
            offsets.tcp_bytes_received,
        ] {
            assert!((136..4096).contains(&offset), "{offsets:?}");
        }
        assert_eq!(offsets.sk_max_ack_backlog, offsets.sk_ack_backlog + 4);
    }

    #[test]
    fn unknown_names_are_errors_not_zero() {
        let btf = load_kernel_btf().unwrap();
        assert!(matches!(
            member_offset(&btf, "sock", "no_such_member"),
            Err(OffsetError::NoMember { .. })
        ));
        assert!(matches!(
            member_offset(&btf, "no_such_struct_c1m", "x"),
            Err(OffsetError::NoStruct(_))
        ));
    }
}
