//! The tools c1m ships to measure a box: an echo server to be the target.
//! (The load generator and the selftest ramp join it here.)

pub mod echo;
