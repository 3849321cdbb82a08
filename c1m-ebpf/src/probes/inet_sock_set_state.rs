//! TCP state transitions: `inet_sock_set_state`.
//!
//! Kernel prototype (include/trace/events/sock.h, since 4.16):
//! `TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)`.
//!
//! Two programs for the same hook, the daemon attaches the best one that
//! works: `tp_btf` (BTF-typed arguments, kernel >= 5.5 with BTF) and the
//! classic `tracepoint` (any kernel >= 4.16, needs tracefs for its id).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use c1m_common::DropReason;

use crate::{
    maps::count_drop,
    offsets::kernel_offsets,
    sock_tracker::{Transition, on_transition},
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    try_inet_sock_set_state_btf(&ctx);
    0
}

fn try_inet_sock_set_state_btf(ctx: &BtfTracePointContext) {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let offsets = kernel_offsets();
    // SAFETY: `sk` is a live `struct sock` for the duration of the hook;
    // bpf_probe_read_kernel tolerates a bad offset by returning an error.
    let fields = unsafe {
        (
            bpf_probe_read_kernel(sk.add(offsets.skc_family as usize) as *const u16),
            bpf_probe_read_kernel(sk.add(offsets.skc_num as usize) as *const u16),
        )
    };
    let (Ok(family), Ok(local_port)) = fields else {
        count_drop(ctx, DropReason::ReadFailed);
        return;
    };
    on_transition(
        ctx,
        &Transition {
            sk: sk as u64,
            old_state: old_state as u32,
            new_state: new_state as u32,
            local_port,
            family,
        },
    );
}

/// Field offsets of the classic tracepoint's record, from
/// `/sys/kernel/tracing/events/sock/inet_sock_set_state/format` (unchanged
/// since the tracepoint appeared in 4.16).
mod record {
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
}

const IPPROTO_TCP: u16 = 6;

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state_tp(ctx: TracePointContext) -> i32 {
    try_inet_sock_set_state_tp(&ctx);
    0
}

fn try_inet_sock_set_state_tp(ctx: &TracePointContext) {
    // SAFETY: offsets of the record layout above; read_at is bounds-checked
    // by the kernel helper.
    let fields = unsafe {
        (
            ctx.read_at::<u64>(record::SKADDR),
            ctx.read_at::<i32>(record::OLDSTATE),
            ctx.read_at::<i32>(record::NEWSTATE),
            ctx.read_at::<u16>(record::SPORT),
            ctx.read_at::<u16>(record::FAMILY),
            ctx.read_at::<u16>(record::PROTOCOL),
        )
    };
    let (Ok(sk), Ok(old_state), Ok(new_state), Ok(local_port), Ok(family), Ok(protocol)) = fields
    else {
        count_drop(ctx, DropReason::ReadFailed);
        return;
    };
    if protocol != IPPROTO_TCP {
        return;
    }
    on_transition(
        ctx,
        &Transition {
            sk,
            old_state: old_state as u32,
            new_state: new_state as u32,
            local_port,
            family,
        },
    );
}
