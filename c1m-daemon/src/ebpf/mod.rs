//! Everything that touches the kernel's BPF interfaces: the embedded object,
//! struct offsets from BTF, loading and attaching with fallbacks, feature
//! probing for `doctor`, and readers of the maps.

pub mod btf_offsets;
pub mod error;
pub mod features;
pub mod overview;
pub mod probes;
pub mod self_cost;
pub mod sizing;
pub mod tracefs;
pub mod walk_programs;
pub mod walker;

/// The kernel programs, built from `c1m-ebpf` by `build.rs`.
pub static C1M_EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/c1m"));

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
