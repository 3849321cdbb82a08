//! Arbitrary text as every command-line value c1m parses (durations,
//! rates, sizes, source IP ranges): an error for bad input, never a panic
//! (and never an allocation the size of the input's wildest number).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        c1m_daemon::parsers::parse_cli_values(text);
    }
});
