//! TCP states as the kernel numbers them (`include/net/tcp_states.h`), and
//! the layout of the transition counter array.

/// Number of slots per dimension of the transition matrix. The kernel has
/// 13 TCP states (1..=13, `TCP_BOUND_INACTIVE` since 6.7); 16 leaves room and
/// keeps the index a shift.
pub const TCP_STATE_SLOTS: u32 = 16;
/// Entries in the per-CPU transition array: `old * TCP_STATE_SLOTS + new`.
pub const TRANSITION_SLOTS: u32 = TCP_STATE_SLOTS * TCP_STATE_SLOTS;

pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_SYN_SENT: u32 = 2;
pub const TCP_SYN_RECV: u32 = 3;
pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_TIME_WAIT: u32 = 6;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_LISTEN: u32 = 10;
pub const TCP_CLOSING: u32 = 11;
pub const TCP_NEW_SYN_RECV: u32 = 12;
pub const TCP_BOUND_INACTIVE: u32 = 13;

/// Index of the counter for `old -> new`, or `None` when a state is out of
/// range (a kernel newer than this table).
#[inline(always)]
pub fn transition_index(old: u32, new: u32) -> Option<u32> {
    if old < TCP_STATE_SLOTS && new < TCP_STATE_SLOTS {
        Some(old * TCP_STATE_SLOTS + new)
    } else {
        None
    }
}

/// The kernel's name of a TCP state, as `ss` and `/proc/net/tcp` users know it.
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_SYN_SENT => "SYN_SENT",
        TCP_SYN_RECV => "SYN_RECV",
        TCP_FIN_WAIT1 => "FIN_WAIT1",
        TCP_FIN_WAIT2 => "FIN_WAIT2",
        TCP_TIME_WAIT => "TIME_WAIT",
        TCP_CLOSE => "CLOSE",
        TCP_CLOSE_WAIT => "CLOSE_WAIT",
        TCP_LAST_ACK => "LAST_ACK",
        TCP_LISTEN => "LISTEN",
        TCP_CLOSING => "CLOSING",
        TCP_NEW_SYN_RECV => "NEW_SYN_RECV",
        TCP_BOUND_INACTIVE => "BOUND_INACTIVE",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_index_is_row_major_and_bounded() {
        assert_eq!(
            transition_index(TCP_SYN_RECV, TCP_ESTABLISHED),
            Some(3 * 16 + 1)
        );
        assert_eq!(transition_index(15, 15), Some(TRANSITION_SLOTS - 1));
        assert_eq!(transition_index(16, 1), None);
        assert_eq!(transition_index(1, 16), None);
    }

    #[test]
    fn state_names_match_the_kernel() {
        assert_eq!(tcp_state_name(1), "ESTABLISHED");
        assert_eq!(tcp_state_name(10), "LISTEN");
        assert_eq!(tcp_state_name(99), "UNKNOWN");
    }
}
