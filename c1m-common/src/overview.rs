//! The host overview (`c1m-daemon top`): two BPF iterators that walk every
//! task's socket files and this network namespace's TCP sockets and stream
//! one fixed-size [`OverviewRecord`] per thing found into the reader's
//! buffer (no maps to clear or read back: the read itself is the answer).

/// Program names (the Rust function names in `c1m-ebpf/src/probes/overview.rs`).
pub const PROG_OVERVIEW_TASK_SOCKETS: &str = "overview_task_sockets";
pub const PROG_OVERVIEW_OWNERLESS: &str = "overview_ownerless";
/// The walk's state between two files (the process being counted).
pub const MAP_OVERVIEW_FILE_RUN: &str = "OVERVIEW_FILE_RUN";
/// Global holding [`OverviewOffsets`], resolved from BTF at load time.
pub const GLOBAL_OVERVIEW_OFFSETS: &str = "OVERVIEW_OFFSETS";

/// What an [`OverviewRecord`] says.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverviewKind {
    /// Written every 65,536 objects so that a read never visits a million
    /// objects without output (the kernel then answers EAGAIN and does not
    /// move on); carries nothing.
    KeepAlive = 0,
    /// A TCP socket a process holds an fd for: `tgid`, `state`, `family`,
    /// `local_port`, `netns`, the buffers.
    TaskSocket = 1,
    /// The number of open files (`count`) of process `tgid`. A process's
    /// files come in one run, so this is written once its run ends; a
    /// process whose threads do not share one table gets several, to add.
    TaskFiles = 2,
    /// A socket no process holds an fd for, in the reader's network
    /// namespace: a timewait socket, a request socket (NEW_SYN_RECV), a
    /// connection waiting in an accept queue, or an orphan the process
    /// closed (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING): `state`, `family`,
    /// `local_port`.
    Ownerless = 3,
}

impl OverviewKind {
    pub fn from_u8(value: u8) -> Option<OverviewKind> {
        match value {
            0 => Some(OverviewKind::KeepAlive),
            1 => Some(OverviewKind::TaskSocket),
            2 => Some(OverviewKind::TaskFiles),
            3 => Some(OverviewKind::Ownerless),
            _ => None,
        }
    }
}

/// One record of the overview's iterators; 32 bytes, written whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverviewRecord {
    /// An [`OverviewKind`].
    pub kind: u8,
    /// TCP state (`tcp_states.h` numbering).
    pub state: u8,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Local port, host order.
    pub local_port: u16,
    pub _pad: u16,
    /// Process (thread group) id, as the root pid namespace sees it.
    pub tgid: u32,
    /// Open files ([`OverviewKind::TaskFiles`]).
    pub count: u32,
    /// Network namespace inode number of a task's socket (0: unknown).
    pub netns: u32,
    /// `sk_rmem_alloc`: bytes of receive buffers allocated.
    pub rmem_alloc_bytes: u32,
    /// `sk_wmem_queued`: bytes of send queue.
    pub wmem_queued_bytes: u32,
    /// `sk_forward_alloc`: bytes charged to `tcp_mem`, not yet used.
    pub forward_alloc_bytes: u32,
}
const _: () = assert!(core::mem::size_of::<OverviewRecord>() == 32);
const _: () = assert!(core::mem::align_of::<OverviewRecord>() == 4);

/// The running count of one process's files while the walk is in it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRun {
    pub tgid: u32,
    pub files: u32,
}
const _: () = assert!(core::mem::size_of::<FileRun>() == 8);

/// Offsets the overview needs beyond [`crate::SockOffsets`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverviewOffsets {
    /// `sk->sk_socket` (pointer): null for a socket no file holds (an
    /// orphan, or a connection still in an accept queue). 0: unknown, and
    /// then no full socket is reported as ownerless.
    pub sk_socket: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<OverviewOffsets>() == 8);

impl OverviewOffsets {
    pub const ZERO: OverviewOffsets = OverviewOffsets {
        sk_socket: 0,
        _pad: 0,
    };
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]` integers, no implicit padding (sizes asserted).
    unsafe impl aya::Pod for super::OverviewRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FileRun {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OverviewOffsets {}
}
