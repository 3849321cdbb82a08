//! Readers of what the system exposes as files and syscalls: sysctls,
//! rlimits, capabilities, processes. They parse and return typed values; they
//! do no analysis.

pub mod apps;
pub mod cgroup;
pub mod cgroup_target;
pub mod key_value;
pub mod limits;
pub mod meminfo;
pub mod memory;
pub mod netns;
pub mod netstat;
pub mod privileges;
pub mod process;
pub mod process_limits;
pub mod slabinfo;
pub mod sockstat;
pub mod sysctl;
