//! Do-nothing programs, one per program type c1m may use. `c1m-daemon
//! doctor` loads and attaches each to learn what this kernel allows by
//! trying, not by guessing from the version. They return at once and touch
//! nothing, so attaching one briefly is harmless to the running system.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, raw_tracepoint, sock_ops, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, SockOpsContext,
        TracePointContext,
    },
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn check_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn check_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn check_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[kprobe]
pub fn check_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "tcp_close")]
pub fn check_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[sock_ops]
pub fn check_sock_ops(_ctx: SockOpsContext) -> u32 {
    // 1 = "continue": a sock_ops program must not change socket behaviour.
    1
}

/// `iter/tcp`: aya-ebpf 0.2.1 has no macro for iterators, so the section
/// is named by hand; aya 0.14 loads it as `Iter`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn check_iter_tcp(_ctx: *mut core::ffi::c_void) -> i32 {
    0
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn check_iter_task_file(_ctx: *mut core::ffi::c_void) -> i32 {
    0
}
