//! Every parser of text c1m does not control, in one place for the fuzz
//! targets (`fuzz/`): kernel files and command-line values. Each must
//! return a value or an error for any input, never panic.
//!
//! The `/proc` files c1m reads through the `procfs` crate are fuzzed as
//! c1m hands them to it: through a shape check first where procfs was
//! found to panic (stat, meminfo, limits, smaps_rollup), directly through its
//! `FromRead` implementations otherwise (status, statm, loadavg, net/tcp).
//!
//! The application-limit readers (`system/apps/`) parse text the server's
//! admin or the server wrote (nginx and haproxy configs, redis RESP replies
//! and config lines, memcached's command line, `postgresql.conf`, `my.cnf`):
//! each exposes `parse_untrusted_text`, fuzzed with the kernel text.

pub use crate::{
    human::{parse_duration, parse_rate, parse_size},
    loadgen::load::source_ips::parse_source_ips,
    system::{
        apps::{haproxy, memcached, mysql, nginx, postgresql, redis},
        cgroup::{parse_cgroup_dirs, parse_limit, parse_stat_field},
        cgroup_target::{container_id_of, parse_v2_mount},
        meminfo::parse_meminfo,
        memory::parse_smaps_rollup,
        netstat::{parse_conntrack_stat, parse_counters},
        process::parse_stat,
        process_limits::parse_process_limits,
        slabinfo::parse_slabinfo,
        sockstat::parse_sockstat,
        sysctl::parse_numbers,
    },
};

/// Run every kernel-text parser on `text` (what the `kernel_text` fuzz
/// target does), returning how many accepted it, so the work is not
/// optimised away.
pub fn parse_kernel_text(bytes: &[u8]) -> usize {
    use procfs::{
        FromRead as _,
        process::{StatM, Status},
    };
    let mut accepted = 0;
    let mut count = |ok: bool| accepted += usize::from(ok);
    count(parse_process_limits(bytes).is_ok());
    count(parse_meminfo(bytes).is_ok());
    count(parse_smaps_rollup(bytes).is_ok());
    count(Status::from_read(bytes).is_ok());
    count(parse_stat(bytes).is_ok());
    count(StatM::from_read(bytes).is_ok());
    count(procfs::LoadAverage::from_read(bytes).is_ok());
    // /proc/<pid>/net/tcp, read for listeners on kernels without iterators.
    let system = procfs::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: true,
    };
    count(
        <procfs::net::TcpNetEntries as procfs::FromReadSI>::from_read(bytes, &system)
            .is_ok_and(|entries| !entries.0.is_empty()),
    );
    let text = String::from_utf8_lossy(bytes);
    count(!parse_sockstat(&text).is_empty());
    count(parse_counters("/proc/net/netstat", &text).is_ok());
    count(!parse_conntrack_stat(&text).is_empty());
    count(parse_slabinfo(&text).is_ok());
    count(parse_numbers::<3>(&text).is_some());
    count(parse_numbers::<1>(&text).is_some());
    count(!parse_cgroup_dirs(&text, "memory").is_empty());
    count(parse_limit(&text).is_some());
    count(parse_stat_field(&text, "sock").is_some());
    count(parse_v2_mount(&text).is_some());
    count(text.split('/').any(|c| container_id_of(c).is_some()));
    accepted + parse_app_text(bytes)
}

/// Run every application-limit reader's parsers on `bytes`.
pub fn parse_app_text(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    nginx::parse_untrusted_text(&text)
        + haproxy::parse_untrusted_text(&text)
        + redis::parse_untrusted_text(bytes)
        + memcached::parse_untrusted_text(&text)
        + postgresql::parse_untrusted_text(&text)
        + mysql::parse_untrusted_text(&text)
}

/// Run every command-line value parser on `text` (the `cli_values` fuzz
/// target).
pub fn parse_cli_values(text: &str) -> usize {
    [
        parse_duration(text).is_ok(),
        parse_rate(text).is_ok(),
        parse_size(text).is_ok(),
        parse_source_ips(text).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_files_of_this_machine_parse() {
        // Every file c1m reads parses with at least one parser.
        for path in [
            "/proc/self/limits",
            "/proc/meminfo",
            "/proc/self/smaps_rollup",
            "/proc/self/status",
            "/proc/self/stat",
            "/proc/loadavg",
            "/proc/net/sockstat",
            "/proc/net/netstat",
            "/proc/self/cgroup",
        ] {
            let bytes = std::fs::read(path).unwrap();
            assert!(parse_kernel_text(&bytes) >= 1, "{path}");
        }
        assert_eq!(parse_cli_values("30s"), 1);
        assert_eq!(parse_cli_values("4096"), 2, "a rate and a size");
        assert_eq!(parse_cli_values("127.0.0.2-127.0.0.9"), 1);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for input in [
            &b""[..],
            b"\xff\xfe\x00",
            b"Max open files  x y z",
            b"TcpExt: a b\nTcpExt: 1",
            b"slabinfo - version: 2.1\n# name\ntcp 1 2 -3",
            b"0::..",
            b"1/2/3 4 5",
        ] {
            parse_kernel_text(input);
            parse_cli_values(&String::from_utf8_lossy(input));
        }
    }
}
