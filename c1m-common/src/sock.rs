//! Per-socket records and the kernel struct offsets the probes need.

/// How a target socket came to be: this decides how it is attributed.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOrigin {
    /// The target called `listen()`; seen in the target's own context.
    Listener = 1,
    /// The target called `connect()`; seen in the target's own context.
    Connected = 2,
    /// A child of a target listener, created in softirq context where the
    /// current task is not the owner: attributed by the listener's port.
    Accepted = 3,
}

/// Value of `OWNED_SOCKS`, keyed by the socket's kernel address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedSock {
    /// The target process that owns it (for accepted sockets, 0 until known).
    pub tgid: u32,
    /// Current TCP state.
    pub state: u8,
    /// A [`SockOrigin`] value.
    pub origin: u8,
    /// Address family (`AF_INET` = 2, `AF_INET6` = 10).
    pub family: u16,
}
const _: () = assert!(core::mem::size_of::<OwnedSock>() == 8);

/// Byte offsets inside `struct sock` (and `task_struct.tgid`), read from the running kernel's BTF by
/// the daemon and passed to the probes as a global (Rust eBPF has no CO-RE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    /// `sk->__sk_common.skc_family` (u16).
    pub skc_family: u32,
    /// `sk->__sk_common.skc_num` (u16, local port in host order).
    pub skc_num: u32,
    /// `sk->__sk_common.skc_state` (u8); valid for timewait sockets too.
    pub skc_state: u32,
    /// `sk->sk_backlog.rmem_alloc` (`sk_rmem_alloc`, atomic int).
    pub sk_rmem_alloc: u32,
    /// `sk->sk_wmem_queued` (int).
    pub sk_wmem_queued: u32,
    /// `sk->sk_forward_alloc` (int).
    pub sk_forward_alloc: u32,
    /// `task_struct.tgid` (int), for `iter/task_file`.
    pub task_tgid: u32,
    /// `socket.sk` (pointer), from a socket file to its `struct sock`.
    pub socket_sk: u32,
}
const _: () = assert!(core::mem::size_of::<SockOffsets>() == 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with no padding (sizes asserted above).
    unsafe impl aya::Pod for super::OwnedSock {}
    unsafe impl aya::Pod for super::SockOffsets {}
}
