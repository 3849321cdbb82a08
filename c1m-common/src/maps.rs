//! Names and sizes of every map and program in `c1m-ebpf`, defined once so
//! the daemon looks them up by the same constant the kernel side declares.

/// Target processes (by tgid, as the root pid namespace sees them) -> the
/// tgid of the target process that started it (itself for those named by
/// the user).
pub const MAP_TARGET_TGIDS: &str = "TARGET_TGIDS";
/// Sockets owned by the target, keyed by kernel socket address.
pub const MAP_OWNED_SOCKS: &str = "OWNED_SOCKS";
/// Local ports on which the target listens, with the number of listeners.
pub const MAP_TARGET_LISTEN_PORTS: &str = "TARGET_LISTEN_PORTS";
/// Per-CPU counters of TCP state transitions of owned sockets.
pub const MAP_TRANSITIONS: &str = "TRANSITIONS";
/// Per-CPU counters of what the kernel side could not record, by reason.
pub const MAP_STATS: &str = "STATS";

/// Sums over the target's sockets, filled by the `iter/tcp` scan.
pub const MAP_SOCK_SCAN: &str = "SOCK_SCAN";
/// Target tgid -> open files, filled by the `iter/task_file` scan.
pub const MAP_FD_COUNTS: &str = "FD_COUNTS";
/// Local port -> listening sockets the target holds, found by the same scan
/// (so listeners that existed before c1m attached are known without
/// reading every fd link under /proc).
pub const MAP_LISTEN_FOUND: &str = "LISTEN_FOUND";

/// Per-CPU counters of [`crate::TargetEvent`]s.
pub const MAP_TARGET_EVENTS: &str = "TARGET_EVENTS";
/// The target's network namespace (inode number), one entry: accepted
/// connections count only when their socket is in it (0: not set).
pub const MAP_TARGET_NETNS: &str = "TARGET_NETNS";
/// Target listeners found by the `iter/tcp` walk, keyed by socket address.
pub const MAP_LISTENERS_FOUND: &str = "LISTENERS_FOUND";
/// (source, destination) pairs the target dials out on, with its open
/// connections on each, filled by the `iter/tcp` walk.
pub const MAP_OUTBOUND_PAIRS: &str = "OUTBOUND_PAIRS";
/// (source, destination) -> the target's dialled connections that closed
/// into TIME_WAIT on it since attach (cumulative, never cleared): the
/// TIME_WAIT each pair holds for 60 s, which no walk can attribute.
pub const MAP_DIALLED_CLOSES: &str = "DIALLED_CLOSES";
/// Most pairs the walk reports (and `DIALLED_CLOSES` holds).
pub const MAX_OUTBOUND_PAIRS: u32 = 4096;
/// Most listening sockets of one target the walk reports.
pub const MAX_TARGET_LISTENERS: u32 = 256;

/// Most processes one target may have (threads are covered by their tgid).
pub const MAX_TARGET_TGIDS: u32 = 4096;
/// Most sockets tracked at once. An entry costs about 100 bytes of kernel
/// memory (key, value and hash overhead), so 4M entries cap at ~400 MiB of
/// preallocated-on-demand memory (the map is created with BPF_F_NO_PREALLOC).
pub const MAX_OWNED_SOCKS: u32 = 4 * 1024 * 1024;
/// Most distinct listening ports of one target.
pub const MAX_TARGET_LISTEN_PORTS: u32 = 1024;

/// One entry: the [`crate::CgroupTarget`] (id 0: the target is named by
/// pid only).
pub const MAP_TARGET_CGROUP: &str = "TARGET_CGROUP";
/// Thread id -> the cgroup id it moved into: processes moved into the
/// target cgroup after attach, for the daemon to make targets (it removes
/// the entries it handled).
pub const MAP_CGROUP_JOINED: &str = "CGROUP_JOINED";

/// Global holding [`crate::SockOffsets`], resolved from BTF at load time.
pub const GLOBAL_SOCK_OFFSETS: &str = "SOCK_OFFSETS";

/// Program names (the Rust function names in `c1m-ebpf`).
pub const PROG_SET_STATE_TP_BTF: &str = "inet_sock_set_state_btf";
pub const PROG_SET_STATE_TRACEPOINT: &str = "inet_sock_set_state_tp";
pub const PROG_NEW_TASK_TRACEPOINT: &str = "task_newtask_tp";
pub const PROG_SOCK_SCAN: &str = "sock_scan";
pub const PROG_FD_SCAN: &str = "fd_scan";
pub const PROG_CGROUP_ATTACH_TRACEPOINT: &str = "cgroup_attach_task_tp";
pub const PROG_ACCEPT_EXIT: &str = "sys_exit_accept_tp";
pub const PROG_ACCEPT4_EXIT: &str = "sys_exit_accept4_tp";
