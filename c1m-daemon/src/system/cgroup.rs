//! Which cgroup directories hold a process's controller files, from
//! `/proc/<pid>/cgroup`, and the values of limit files in them.

/// Limits at or above this (v1 writes 2^63 rounded to pages for "none")
/// mean no limit.
const UNLIMITED_FROM: u64 = 1 << 60;

/// The directories where `pid`'s cgroup may keep `controller`'s files, in
/// the order of `/proc/<pid>/cgroup`, each marked v2 (true) or v1 (false).
/// Empty when the file cannot be read (the process exited).
pub fn cgroup_dirs(pid: u32, controller: &str) -> Vec<(String, bool)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| parse_cgroup_dirs(&text, controller))
        .unwrap_or_default()
}

/// [`cgroup_dirs`] from the text of `/proc/<pid>/cgroup`: lines
/// `ID:CONTROLLERS:PATH`. The unified (v2) hierarchy has no controllers and
/// is mounted at /sys/fs/cgroup (or /sys/fs/cgroup/unified on hybrid
/// systems); a v1 hierarchy per controller at /sys/fs/cgroup/<controller>.
/// Lines of any other shape are skipped.
pub fn parse_cgroup_dirs(text: &str, controller: &str) -> Vec<(String, bool)> {
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // A path that escapes the mount (`..`) or is not absolute is not
        // something the kernel writes; do not follow it.
        if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
            continue;
        }
        if controllers.is_empty() {
            dirs.push((format!("/sys/fs/cgroup{path}"), true));
            dirs.push((format!("/sys/fs/cgroup/unified{path}"), true));
        } else if controllers.split(',').any(|c| c == controller) {
            dirs.push((format!("/sys/fs/cgroup/{controller}{path}"), false));
        }
    }
    dirs
}

/// The value of a limit file (`memory.max`, `pids.max`,
/// `memory.limit_in_bytes`): `None` for "max" or v1's huge "no limit", and
/// for anything that is not a number.
pub fn parse_limit(text: &str) -> Option<u64> {
    let value = text.trim().parse::<u64>().ok()?;
    (value < UNLIMITED_FROM).then_some(value)
}

/// A usage file's value (`memory.current`, `pids.current`), 0 when
/// unreadable.
pub fn parse_usage(text: Option<String>) -> u64 {
    text.and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

/// One field of a `memory.stat` file (`sock 12288` lines), `None` when
/// absent or not a number.
pub fn parse_stat_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == field).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_memory_stat_field() {
        let stat = "anon 4096\nfile 0\nsock 12288\nshmem x\n";
        assert_eq!(parse_stat_field(stat, "sock"), Some(12288));
        assert_eq!(parse_stat_field(stat, "shmem"), None);
        assert_eq!(parse_stat_field(stat, "kernel"), None);
    }

    #[test]
    fn finds_this_process_cgroup_directories() {
        let dirs = cgroup_dirs(std::process::id(), "memory");
        assert!(!dirs.is_empty(), "every Linux process is in a cgroup");
        assert!(
            dirs.iter()
                .all(|(dir, _)| dir.starts_with("/sys/fs/cgroup"))
        );
        assert!(cgroup_dirs(u32::MAX, "memory").is_empty());
    }

    #[test]
    fn reads_v1_and_v2_lines_and_skips_the_rest() {
        let text = "12:pids:/user.slice\n4:memory,cpu:/svc\n0::/system.slice/x.service\n\
                    garbage\n3:memory:../../etc\n";
        assert_eq!(
            parse_cgroup_dirs(text, "memory"),
            vec![
                ("/sys/fs/cgroup/memory/svc".to_owned(), false),
                ("/sys/fs/cgroup/system.slice/x.service".to_owned(), true),
                (
                    "/sys/fs/cgroup/unified/system.slice/x.service".to_owned(),
                    true
                ),
            ]
        );
        assert_eq!(
            parse_cgroup_dirs(text, "pids")[0].0,
            "/sys/fs/cgroup/pids/user.slice"
        );
    }

    #[test]
    fn limits_of_max_and_of_v1_none_are_no_limit() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_limit("-1"), None);
        assert_eq!(parse_usage(Some("42\n".into())), 42);
        assert_eq!(parse_usage(None), 0);
    }
}
