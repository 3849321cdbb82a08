//! Starting a real postgresql from a temporary config for the tests (being written).
