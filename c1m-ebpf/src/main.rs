//! c1m's kernel programs. `c1m-daemon`'s build script compiles this binary
//! for the bpf target and embeds the object; the daemon loads it, fills the
//! globals (struct offsets from the running kernel's BTF) and attaches the
//! best program each hook supports on this kernel.
#![no_std]
#![no_main]
// For `asm!` on the bpf target (the atomic add); the build sets
// RUSTC_BOOTSTRAP for this crate and aya-ebpf only.
#![feature(asm_experimental_arch)]

mod maps;
mod offsets;
mod pairs;
mod probes;
mod sock_tracker;
mod target_task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this never runs.
    loop {}
}

// GPL-compatible: `bpf_probe_read_kernel` and tp_btf need it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
