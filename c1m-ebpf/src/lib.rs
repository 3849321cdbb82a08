//! Library half of `c1m-ebpf`: empty on purpose. The kernel programs live in
//! the `c1m` binary target (`main.rs`); this target exists so `c1m-daemon`
//! can name the crate as a build dependency, which makes cargo rebuild the
//! daemon when the probes change.
#![no_std]
