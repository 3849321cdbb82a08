//! Starting a real redis from a temporary config for the tests (being written).
