//! The shape of `/proc` files made of `Key:   value [unit]` lines
//! (meminfo, smaps_rollup), checked before the procfs crate parses them:
//! procfs 0.18 multiplies each value by its unit without checking for
//! overflow and slices off each key's last byte, which panic (found by
//! fuzzing) on text the kernel never writes.

/// What procfs multiplies a value by for its unit (any unit it does not
/// know is an error for meminfo and 1024 for smaps: 1024 is safe for both).
fn unit_multiplier(unit: Option<&str>) -> u64 {
    match unit {
        None | Some("B") => 1,
        Some("MiB" | "miB" | "MB" | "mB") => 1 << 20,
        Some("GiB" | "giB" | "GB" | "gB") => 1 << 30,
        Some(_) => 1 << 10,
    }
}

/// Whether every line that looks like a `Key: value` line has a key ending
/// in an ASCII `:` (when `keys_end_in_colon`) and a value small enough to
/// be multiplied by its unit. Other lines (smaps_rollup's header) pass.
pub fn key_value_lines_are_sound(text: &str, keys_end_in_colon: bool) -> bool {
    text.lines().filter(|line| !line.is_empty()).all(|line| {
        let mut words = line.split_whitespace();
        let key_ok = words
            .next()
            .is_some_and(|key| !keys_end_in_colon || key.ends_with(':'));
        let value = words.next().and_then(|value| value.parse::<u64>().ok());
        let multiplier = unit_multiplier(words.next());
        let value_ok = value.is_none_or(|value| value.checked_mul(multiplier).is_some());
        key_ok && value_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_lines_pass_and_overflowing_or_odd_ones_do_not() {
        assert!(key_value_lines_are_sound(
            "MemTotal:  24684084 kB\n\n",
            true
        ));
        assert!(key_value_lines_are_sound(
            "00400000-7ff [rollup]\nRss: 1 kB",
            false
        ));
        assert!(!key_value_lines_are_sound(
            "MemTotal:  18446744073709551615 kB",
            true
        ));
        assert!(!key_value_lines_are_sound("MemTotal 1 kB", true));
        assert!(!key_value_lines_are_sound("MemTotal\u{e9} 1 kB", true));
        assert!(!key_value_lines_are_sound(
            "Rss: 18446744073709551615 kB",
            false
        ));
    }
}
