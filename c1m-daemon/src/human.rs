//! Units both ways: parsing the human values of the command line
//! (`--duration 30s`, `--rate 20000/s`, `--state-bytes 16KiB`) and
//! formatting counts for people (`1,234`, `1.2M`). One place, so the CLI,
//! the verdicts and the fuzz targets agree.

use std::time::Duration;

/// `20000/s`, `20000`, `1200/m`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let (number, per) = text.split_once('/').unwrap_or((text, "s"));
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: write a rate such as 20000/s"))?;
    let per_second = match per.trim() {
        "s" | "sec" => number,
        "m" | "min" => number.div_ceil(60),
        _ => return Err(format!("{text:?}: write a rate such as 20000/s or 1200/m")),
    };
    if per_second == 0 {
        return Err("a rate must be at least 1/s".into());
    }
    Ok(per_second)
}

/// Sizes such as `16KiB`, `1MB`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("{err}; write a size such as 4096, 16KiB or 1MiB"))
}

/// Human durations (`30s`, `1m30s`, `250ms`), refusing zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // humantime 2.x panics (found by fuzzing) when the seconds add up to
    // u64::MAX and the sub-second part carries over; no real duration
    // needs a number of more than 9 digits or more than 32 characters.
    let longest_number = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_number > 9 || text.len() > 32 {
        return Err(format!(
            "{:?}: too long; write a duration such as 500ms, 30s or 5m",
            text.chars().take(40).collect::<String>()
        ));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err}; write a duration such as 500ms, 30s or 5m"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// 19990 -> "19,990"; 1234567 -> "1.2M".
pub fn human_count(n: u64) -> String {
    if n >= 1_000_000 {
        return format!("{:.1}M", n as f64 / 1e6);
    }
    let digits = n.to_string();
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 200 -> "3 min 20 s"; 45 -> "45 s"; 7500 -> "2 h 5 min"; 200000 -> "2 d 7 h".
pub fn human_seconds(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_the_two_largest_units() {
        assert_eq!(human_seconds(200.0), "3 min 20 s");
        assert_eq!(human_seconds(44.6), "45 s");
        assert_eq!(human_seconds(7500.0), "2 h 5 min");
        assert_eq!(human_seconds(200_000.0), "2 d 7 h");
    }

    #[test]
    fn durations_accept_human_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        // Found by fuzzing: humantime panicked on this one.
        assert!(parse_duration("18446744073709551615s1000ms").is_err());
    }

    #[test]
    fn durations_refuse_nonsense_and_zero() {
        assert!(parse_duration("soon").unwrap_err().contains("such as"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("such as"));
    }

    #[test]
    fn rates_accept_units() {
        assert_eq!(parse_rate("20000/s"), Ok(20000));
        assert_eq!(parse_rate("500"), Ok(500));
        assert_eq!(parse_rate("120/m"), Ok(2));
        assert!(parse_rate("fast").unwrap_err().contains("such as"));
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn counts_read_like_a_person_writes_them() {
        assert_eq!(human_count(19990), "19,990");
        assert_eq!(human_count(1_234_567), "1.2M");
        assert_eq!(human_count(999), "999");
    }
}
