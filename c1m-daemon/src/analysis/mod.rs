//! Where the ceiling comes from: every limit that bounds the target's
//! connection count, the connections each allows at the measured cost per
//! connection, and the one that binds first. `limits` is pure arithmetic
//! over [`CeilingInputs`]; `monitor::gather` reads those inputs from the
//! system.

pub mod forecast;
pub mod inputs;
pub mod limits;
mod pressure;

pub use forecast::forecasts;
pub use inputs::CeilingInputs;
pub use limits::analyze;
