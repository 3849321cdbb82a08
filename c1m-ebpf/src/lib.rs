//! Library half of `c1m-ebpf`: empty on purpose. The kernel programs live in
//! the `c1m` binary target (`main.rs`); this target exists so `c1m-daemon`
//! can name the crate as a build dependency (`c1m-daemon/Cargo.toml`,
//! `[build-dependencies]`), which makes cargo re-run its `build.rs`, and so
//! rebuild the embedded object, when the probes or `c1m-common` change.
#![no_std]
