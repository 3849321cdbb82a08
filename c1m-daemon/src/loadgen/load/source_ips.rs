//! Source addresses for outbound connections. The kernel gives each
//! (source IP, destination IP, destination port) its own range of ephemeral
//! ports (`net.ipv4.ip_local_port_range`, 28,232 ports by default), so more
//! connections to one server than that need more source IPs. All of
//! 127.0.0.0/8 is loopback, so on loopback they are free for the taking.

use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceIpError {
    #[error(
        "--source-ips {0:?}: write a range such as 127.0.0.2-127.0.0.64 or a comma list of addresses"
    )]
    Syntax(String),
    #[error("--source-ips {0:?}: the range ends before it starts")]
    Backwards(String),
    #[error("--source-ips {0:?}: more than 65536 addresses is surely a typo")]
    TooMany(String),
}

/// `127.0.0.2-127.0.0.64`, `10.0.0.1,10.0.0.2`, or a mix of both.
pub fn parse_source_ips(text: &str) -> Result<Vec<IpAddr>, SourceIpError> {
    let syntax = || SourceIpError::Syntax(text.to_owned());
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((from, to)) => {
                let from: Ipv4Addr = from.trim().parse().map_err(|_| syntax())?;
                let to: Ipv4Addr = to.trim().parse().map_err(|_| syntax())?;
                let (from, to) = (u32::from(from), u32::from(to));
                if to < from {
                    return Err(SourceIpError::Backwards(text.to_owned()));
                }
                if to - from >= 65536 {
                    return Err(SourceIpError::TooMany(text.to_owned()));
                }
                ips.extend((from..=to).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => ips.push(part.parse().map_err(|_| syntax())?),
        }
        if ips.len() > 65536 {
            return Err(SourceIpError::TooMany(text.to_owned()));
        }
    }
    if ips.is_empty() {
        return Err(syntax());
    }
    Ok(ips)
}

/// Source IPs for `connections` to `target` when the user named none: on
/// IPv4 loopback, enough of 127.0.0.0/8 that each IP uses at most a
/// quarter of its ports (the kernel's search for a free port slows down
/// sharply as a range fills: at 70% full, connect rates drop tenfold);
/// elsewhere none (the kernel picks the source address).
pub fn auto_source_ips(target: IpAddr, connections: u64, ports_per_ip: u64) -> Vec<IpAddr> {
    let IpAddr::V4(v4) = target else {
        return Vec::new();
    };
    let usable = (ports_per_ip / 4).max(1);
    if !v4.is_loopback() || connections <= usable {
        return Vec::new();
    }
    let count = connections.div_ceil(usable).min(1 << 16) as u32;
    // 127.0.0.1, 127.0.0.2, ... (127.0.0.0 is the network address).
    (1..=count)
        .map(|n| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_lists() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4,10.0.0.9").unwrap();
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.0.0.9"]);
        assert_eq!(parse_source_ips("::1").unwrap().len(), 1);
    }

    #[test]
    fn refuses_nonsense_with_the_expected_syntax() {
        let err = parse_source_ips("127.0.0.x").unwrap_err();
        assert!(err.to_string().contains("127.0.0.2-127.0.0.64"));
        assert!(matches!(
            parse_source_ips("127.0.0.9-127.0.0.1"),
            Err(SourceIpError::Backwards(_))
        ));
        assert!(matches!(
            parse_source_ips("10.0.0.0-10.9.0.0"),
            Err(SourceIpError::TooMany(_))
        ));
    }

    #[test]
    fn loopback_gets_enough_ips_for_the_ports() {
        let target: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(auto_source_ips(target, 7_000, 28_232).is_empty());
        let ips = auto_source_ips(target, 1_000_000, 28_232);
        assert_eq!(ips.len(), 142); // 1M / (28232 / 4) rounded up
        assert_eq!(ips[0].to_string(), "127.0.0.1");
        assert!(auto_source_ips("10.1.1.1".parse().unwrap(), 1_000_000, 28_232).is_empty());
    }
}
