//! Starting a real haproxy from a temporary config for the tests (being written).
