//! Kernel struct offsets for this kernel, set by the daemon at load from the
//! running kernel's BTF (Rust eBPF has no CO-RE relocations).

use c1m_common::SockOffsets;

#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::ZERO;

#[inline(always)]
pub fn kernel_offsets() -> SockOffsets {
    // SAFETY: volatile read of a load-time constant, so the compiler does
    // not fold the zeros above into the code.
    unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) }
}
