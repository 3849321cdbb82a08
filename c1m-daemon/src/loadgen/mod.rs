//! The load generator c1m ships to measure a box: an echo server to be the
//! target (`echo/`), a multi-process load that opens and holds connections
//! against it (`load/`), the child-process helpers they share, and the one
//! [`protocol`] their processes (and `selftest`, `xtask`, the tests) speak.

pub mod child;
pub mod echo;
pub mod errno;
pub mod load;
pub mod protocol;
