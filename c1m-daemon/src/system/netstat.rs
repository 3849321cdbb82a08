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
    Ok(counters)
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
