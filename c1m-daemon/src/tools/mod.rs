//! The tools c1m ships to measure a box: an echo server to be the target
//! and a load generator to drive it.

pub mod child;
pub mod echo;
pub mod errno;
pub mod load;
pub mod selftest;
