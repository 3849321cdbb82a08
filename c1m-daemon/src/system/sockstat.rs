//! `/proc/net/sockstat`: box-wide (per network namespace) socket counts,
//! e.g. `TCP: inuse 1 orphan 0 tw 908 alloc 1 mem 107` (mem in pages).

use std::collections::BTreeMap;

/// `TCP.mem` -> 107, `TCP.orphan` -> 0, `sockets.used` -> 8... Fields that
/// are not `name number` pairs are skipped: the parser never fails.
pub fn parse_sockstat(text: &str) -> BTreeMap<String, u64> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let Some((prefix, rest)) = line.split_once(':') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [name, value] = pair
                && let Ok(value) = value.parse::<u64>()
            {
                values.insert(format!("{}.{}", prefix.trim(), name), value);
            }
        }
    }
    values
}

pub fn read_sockstat() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/net/sockstat")
        .map(|text| parse_sockstat(&text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format_and_tolerates_garbage() {
        let s = parse_sockstat(
            "sockets: used 8\nTCP: inuse 1 orphan 0 tw 908 alloc 1 mem 107\nFRAG: inuse 0 memory 0\n",
        );
        assert_eq!(s["TCP.mem"], 107);
        assert_eq!(s["TCP.tw"], 908);
        assert_eq!(s["sockets.used"], 8);
        let junk = parse_sockstat("TCP: inuse\n::: x y z\n\u{0}");
        assert!(junk.is_empty());
    }
}
