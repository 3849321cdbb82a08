//! Starting a real nginx from a temporary config for the tests (being written).
