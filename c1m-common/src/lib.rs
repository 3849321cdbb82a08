//! Types shared by c1m's kernel programs (`c1m-ebpf`) and its userspace
//! daemon (`c1m-daemon`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree
//! on the bytes; `const` asserts pin sizes so a change on one side cannot
//! silently misread the other. With the `user` feature the types implement
//! `aya::Pod`, which lets userspace read and write them in maps and globals.
#![cfg_attr(not(test), no_std)]

pub mod maps;
pub mod overview;
pub mod scan;
pub mod sock;
pub mod stats;
pub mod tcp_state;

pub use maps::*;
pub use overview::*;
pub use scan::*;
pub use sock::*;
pub use stats::*;
pub use tcp_state::*;
