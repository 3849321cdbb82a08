//! Arbitrary bytes as every kernel file c1m parses (/proc/net/sockstat,
//! /proc/net/netstat, /proc/slabinfo, /proc/<pid>/limits, cgroup files,
//! sysctls...) and every server text the application-limit readers parse
//! (nginx/haproxy configs, redis replies and config lines, memcached's
//! command line, postgresql.conf, my.cnf): any input must give a value or
//! an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    c1m_daemon::parsers::parse_kernel_text(data);
});
