//! What every BPF iterator program here reads the same way: its context's
//! fields, kernel memory at a BTF offset, and the walk's seq file and
//! object number. Shared by the target walks (`scans.rs`) and the host
//! overview (`overview.rs`).

use aya_ebpf::{bindings::seq_file, helpers::bpf_probe_read_kernel};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// Objects between two keep-alive writes: a read of an iterator that
/// visits a million objects without writing a byte ends with EAGAIN (the
/// kernel's MAX_ITER_OBJECTS), and resuming it does not move on.
pub const KEEPALIVE_EVERY: u64 = 1 << 16;

/// Pointer-sized field `index` of an iterator's context struct
/// (`struct bpf_iter__tcp { meta; sk_common; uid }`,
/// `struct bpf_iter__task_file { meta; task; fd; file }`).
#[inline(always)]
pub fn ctx_pointer(ctx: *const u64, index: usize) -> u64 {
    // SAFETY: the kernel hands iterator programs a context of this layout;
    // the verifier checks the access against its BTF.
    unsafe { *ctx.add(index) }
}

/// # Safety
/// `base + offset` must be a kernel address; a bad one makes the helper
/// fail, which reads as `None`.
#[inline(always)]
pub unsafe fn read_kernel<T>(base: u64, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

/// The seq file to write to and this object's number in the walk.
#[inline(always)]
pub fn seq_and_number(ctx: *const u64) -> Option<(*mut seq_file, u64)> {
    // `struct bpf_iter_meta { struct seq_file *seq; u64 session_id; u64 seq_num; }`
    // SAFETY: ctx field 0 is the meta pointer; the verifier types the loads.
    unsafe {
        let meta = ctx_pointer(ctx, 0) as *const u64;
        if meta.is_null() {
            return None;
        }
        Some((*meta as *mut seq_file, *meta.add(2)))
    }
}
