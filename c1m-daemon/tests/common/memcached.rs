//! Starting a real memcached from a temporary config for the tests (being written).
