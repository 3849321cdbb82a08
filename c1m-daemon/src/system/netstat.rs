//! `/proc/net/netstat` (and `/proc/net/snmp`): the kernel's TCP counters,
//! e.g. `TcpExt.ListenOverflows` when accept queues overflow or
//! `TcpExt.TCPTimeWaitOverflow` when TIME_WAIT buckets run out. The file
//! holds pairs of lines: `Prefix: Name1 Name2...` then `Prefix: 1 2...`.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum NetstatError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: line {line} does not pair with the header line above it")]
    Parse { path: &'static str, line: usize },
}

/// Counters by `Prefix.Name`, e.g. `TcpExt.ListenOverflows`.
pub type Counters = BTreeMap<String, u64>;

pub fn read_netstat() -> Result<Counters, NetstatError> {
    let mut counters = read_counters("/proc/net/netstat")?;
    // /proc/net/snmp has the same layout (Tcp.CurrEstab, Tcp.ActiveOpens...).
    counters.extend(read_counters("/proc/net/snmp")?);
    // Only with nf_conntrack loaded; no file, no counters.
    if let Ok(text) = std::fs::read_to_string("/proc/net/stat/nf_conntrack") {
        counters.extend(parse_conntrack_stat(&text));
    }
    Ok(counters)
}

/// `/proc/net/stat/nf_conntrack`: a header of names, then one line of hex
/// per CPU, summed into `NfConntrack.<name>` (`insert_failed`: a new
/// connection lost a race for its entry; `drop` / `early_drop`: the table
/// was full). `entries` is the table's total repeated on every line, so it
/// is taken once, not summed. Lines that do not fit the header are skipped.
pub fn parse_conntrack_stat(text: &str) -> Counters {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Counters::new();
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut counters = Counters::new();
    for line in lines {
        let values: Option<Vec<u64>> = line
            .split_whitespace()
            .map(|v| u64::from_str_radix(v, 16).ok())
            .collect();
        let Some(values) = values.filter(|v| v.len() == names.len()) else {
            continue;
        };
        for (name, value) in names.iter().zip(values) {
            let total = counters.entry(format!("NfConntrack.{name}")).or_insert(0);
            *total = if *name == "entries" {
                value
            } else {
                total.saturating_add(value)
            };
        }
    }
    counters
}

fn read_counters(path: &'static str) -> Result<Counters, NetstatError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| NetstatError::Read { path, source })?;
    parse_counters(path, &text)
}

pub fn parse_counters(path: &'static str, text: &str) -> Result<Counters, NetstatError> {
    let mut counters = Counters::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (index, pair) in lines.chunks(2).enumerate() {
        let bad = || NetstatError::Parse {
            path,
            line: index * 2 + 2,
        };
        let [names, values] = pair else {
            return Err(bad());
        };
        let (prefix, names) = names.split_once(':').ok_or_else(bad)?;
        let (value_prefix, values) = values.split_once(':').ok_or_else(bad)?;
        if prefix != value_prefix {
            return Err(bad());
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(bad());
        }
        for (name, value) in names.into_iter().zip(values) {
            // Negative values exist (Tcp.MaxConn is -1): they are not counters.
            if let Ok(value) = value.parse::<u64>() {
                counters.insert(format!("{prefix}.{name}"), value);
            }
        }
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_stat_sums_the_cpus_but_not_the_entries() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop\n\
                    0000000a  00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000005 00000002 00000010 00000001\n\
                    0000000a  00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000005 00000001 00000000 00000000\n\
                    garbage line\n";
        let c = parse_conntrack_stat(text);
        assert_eq!(c["NfConntrack.entries"], 10);
        assert_eq!(c["NfConntrack.insert_failed"], 3);
        assert_eq!(c["NfConntrack.drop"], 16);
        assert_eq!(c["NfConntrack.early_drop"], 1);
        assert!(parse_conntrack_stat("").is_empty());
    }

    #[test]
    fn pairs_names_with_values() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 12 14\n\
                    IpExt: InOctets\nIpExt: 99\n";
        let c = parse_counters("test", text).unwrap();
        assert_eq!(c["TcpExt.ListenOverflows"], 12);
        assert_eq!(c["TcpExt.ListenDrops"], 14);
        assert_eq!(c["IpExt.InOctets"], 99);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for text in [
            "TcpExt: A B\nTcpExt: 1\n",
            "TcpExt: A\nIpExt: 1\n",
            "TcpExt: A\n",
            "nonsense",
        ] {
            assert!(parse_counters("test", text).is_err(), "{text:?}");
        }
        assert!(parse_counters("test", "").unwrap().is_empty());
    }

    #[test]
    fn reads_this_machine() {
        let c = read_netstat().unwrap();
        assert!(c.contains_key("TcpExt.ListenOverflows"));
        assert!(c.contains_key("Tcp.ActiveOpens"));
    }
}
