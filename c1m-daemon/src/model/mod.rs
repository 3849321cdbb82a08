//! Pure computations over samples: no I/O, unit-tested with plain data.

pub mod ceiling;
pub mod evidence;
pub mod overview;
pub mod ports;
pub mod regression;
pub mod report;
pub mod sample;
pub mod sock_census;
pub mod transitions;
