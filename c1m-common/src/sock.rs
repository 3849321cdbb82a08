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
    /// `bpf_ktime_get_ns()` when the target accepted this socket (its
    /// accept() returned it), or when it became ESTABLISHED where accepts
    /// are not seen (0 before either): how soon the server closed it after
    /// that tells a refusal from service.
    pub established_ns: u64,
}
const _: () = assert!(core::mem::size_of::<OwnedSock>() == 16);

impl OwnedSock {
    pub const fn new(tgid: u32, state: u8, origin: u8, family: u16) -> OwnedSock {
        OwnedSock {
            tgid,
            state,
            origin,
            family,
            established_ns: 0,
        }
    }
}

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
    /// `sk->__sk_common.skc_net` (`possible_net_t`: a `struct net *`); 0
    /// when unknown (no BTF): the probes then skip what needs the fields
    /// below.
    pub skc_net: u32,
    /// `net->ns.inum` (unsigned int): the network namespace's inode number.
    pub net_ns_inum: u32,
    /// `sk->sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `sk->sk_ack_backlog` (u32): connections waiting in a listener's
    /// accept queue.
    pub sk_ack_backlog: u32,
    /// `sk->sk_max_ack_backlog` (u32): the accept queue's length.
    pub sk_max_ack_backlog: u32,
    /// `sk->sk_drops` (atomic int): for a listener, the connections it
    /// dropped because its accept queue was full (`tcp_listendrop`).
    pub sk_drops: u32,
    /// `tcp_sock.copied_seq` (u32): the next byte the application reads.
    pub tcp_copied_seq: u32,
    /// `tcp_sock.rcv_nxt` (u32): the next byte expected from the peer.
    pub tcp_rcv_nxt: u32,
    /// `tcp_sock.bytes_received` (u64): payload bytes received.
    pub tcp_bytes_received: u32,
    /// `sk->__sk_common.skc_daddr` / `skc_rcv_saddr` (IPv4, network order),
    /// `skc_dport` (network order), `skc_v6_daddr` / `skc_v6_rcv_saddr`
    /// (16 bytes each): the (source, destination) of a dialled connection,
    /// whose ephemeral port comes from that pair's range.
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `task_struct.files`, `files_struct.fdt`, `fdtable.fd`,
    /// `file.private_data`: from the fd an accept() returned to its socket,
    /// to time a refusal from the accept rather than the handshake.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    /// Reserved (keeps the size a multiple of 16).
    pub _pad: [u32; 2],
}
const _: () = assert!(core::mem::size_of::<SockOffsets>() == 112);

impl SockOffsets {
    /// All unknown: what the kernel side holds until the daemon sets it.
    pub const ZERO: SockOffsets = SockOffsets {
        skc_family: 0,
        skc_num: 0,
        skc_state: 0,
        sk_rmem_alloc: 0,
        sk_wmem_queued: 0,
        sk_forward_alloc: 0,
        task_tgid: 0,
        socket_sk: 0,
        skc_net: 0,
        net_ns_inum: 0,
        sk_protocol: 0,
        sk_ack_backlog: 0,
        sk_max_ack_backlog: 0,
        sk_drops: 0,
        tcp_copied_seq: 0,
        tcp_rcv_nxt: 0,
        tcp_bytes_received: 0,
        skc_daddr: 0,
        skc_rcv_saddr: 0,
        skc_dport: 0,
        skc_v6_daddr: 0,
        skc_v6_rcv_saddr: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_fd: 0,
        file_private_data: 0,
        _pad: [0; 2],
    };
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with no padding (sizes asserted above).
    unsafe impl aya::Pod for super::OwnedSock {}
    unsafe impl aya::Pod for super::SockOffsets {}
    unsafe impl aya::Pod for super::ListenerSlot {}
    unsafe impl aya::Pod for super::FdCount {}
    unsafe impl aya::Pod for super::OutboundPair {}
    unsafe impl aya::Pod for super::CgroupTarget {}
}

/// One listening socket of the target as the `iter/tcp` walk found it
/// (value of `LISTENERS_FOUND`, keyed by the socket's kernel address): its
/// accept queue now and the connections it dropped since it was created.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerSlot {
    /// Local port, host byte order.
    pub port: u16,
    pub family: u16,
    /// `sk_ack_backlog`: connections waiting to be accepted.
    pub queued: u32,
    /// `sk_max_ack_backlog`: the queue's length (listen() backlog, capped
    /// by net.core.somaxconn).
    pub queue_max: u32,
    /// `sk_drops`: connections dropped because the queue was full.
    pub drops: u32,
}
const _: () = assert!(core::mem::size_of::<ListenerSlot>() == 16);

/// What the `iter/task_file` walk counted for one target process (value of
/// `FD_COUNTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdCount {
    /// Open files of every kind.
    pub files: u64,
    /// Of those, TCP sockets that are not listening: the connections this
    /// process holds an fd for.
    pub tcp_connections: u64,
}
const _: () = assert!(core::mem::size_of::<FdCount>() == 16);

/// A (source address, destination address and port) the target dials out
/// on: each such pair has its own range of ephemeral ports. Key of
/// `OUTBOUND_PAIRS`, whose value is the target's open connections on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboundPair {
    /// IPv4 in the first 4 bytes, or IPv6; network order.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Destination port, host order.
    pub dport: u16,
    pub family: u16,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<OutboundPair>() == 40);

/// A cgroup (v2) whose every process is the target: its id (the cgroup
/// directory's inode number, what `bpf_get_current_cgroup_id` returns) and
/// its depth below the root (for `bpf_get_current_ancestor_cgroup_id`, so
/// processes in its sub-cgroups count too). `id` 0: no cgroup target.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupTarget {
    pub id: u64,
    pub level: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CgroupTarget>() == 16);
