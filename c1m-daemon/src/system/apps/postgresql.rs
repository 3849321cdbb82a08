//! PostgreSQL's own connection limit, `max_connections`, read where the
//! postmaster gets it: its command line (`-c max_connections=N`,
//! `--max_connections=N`, `-N N`) over `postgresql.auto.conf` (ALTER
//! SYSTEM) over the configuration file (`-c config_file=`, else
//! `DATADIR/postgresql.conf`, with its `include`, `include_if_exists` and
//! `include_dir` directives) over the compiled-in default (100).
//!
//! What a client gets is less than the setting: the last
//! `superuser_reserved_connections` slots (default 3), and on PostgreSQL 16+
//! the `reserved_connections` before them, are kept for superusers (and
//! roles with pg_use_reserved_connections). So `max_connections` here is
//! what an ordinary role gets, the number an application's pool meets.
//!
//! The postmaster works in its data directory (`/proc/PID/cwd`), which is
//! how a relative `-D` is resolved.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{AppLimit, AppLimitError, ServerProcess};

const NAME: &str = "postgresql.max_connections";
const DEFAULT_MAX_CONNECTIONS: u64 = 100;
const DEFAULT_SUPERUSER_RESERVED: u64 = 3;
/// guc-file.l's CONF_FILE_MAX_DEPTH: deeper includes are an error.
const MAX_INCLUDE_DEPTH: usize = 10;

/// The limits of every postmaster among `processes` (backends are left out:
/// they share the postmaster's executable, and are its children).
pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    postmasters(processes).iter().map(read_postmaster).collect()
}

/// The postmasters: processes whose parent is not one of the target's
/// postgres processes. A backend given alone (its postmaster outside the
/// target) stands for its parent when that parent runs postgres.
fn postmasters(processes: &[&ServerProcess]) -> Vec<ServerProcess> {
    let mut found: Vec<ServerProcess> = Vec::new();
    for p in processes {
        if processes.iter().any(|q| q.pid == p.ppid) {
            continue;
        }
        let parent_is_postgres = std::fs::read_link(format!("/proc/{}/exe", p.ppid))
            .is_ok_and(|exe| super::server_of(&exe) == Some("postgresql"));
        let postmaster = if parent_is_postgres {
            super::server_processes(&[p.ppid], &p.listening).pop()
        } else {
            None
        };
        let postmaster = postmaster.unwrap_or_else(|| (*p).clone());
        if !found.iter().any(|f| f.pid == postmaster.pid) {
            found.push(postmaster);
        }
    }
    found
}

fn read_postmaster(pm: &ServerProcess) -> Result<AppLimit, AppLimitError> {
    let fail = |why: String| AppLimitError {
        server: "postgresql",
        pid: pm.pid,
        why,
    };
    let args = parse_command_line(&pm.cmdline);
    let pgdata = read_environ_var(pm.pid, "PGDATA");
    let paths = locate(&args, pgdata.as_deref(), pm.cwd.as_deref()).map_err(fail)?;
    let mut conf = ConfFiles::default();
    conf.read_file(&paths.config_file, true, 0).map_err(fail)?;
    let data_dir = paths.data_dir.clone().or_else(|| {
        conf.get("data_directory")
            .map(|s| PathBuf::from(&s.value))
            .filter(|d| d.is_absolute())
    });
    if let Some(dir) = &data_dir {
        conf.read_file(&dir.join("postgresql.auto.conf"), false, 0)
            .map_err(fail)?;
    }
    let version = data_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("PG_VERSION")).ok())
        .and_then(|v| parse_major_version(&v))
        .or_else(|| version_from_exe(&pm.exe));
    let settings = Settings {
        file: conf.settings,
        command_line: args.settings,
    };
    let started = process_start(pm.pid);
    let stale: Vec<&Path> = conf
        .files
        .iter()
        .filter(|(_, mtime)| started.is_some_and(|s| *mtime > s + Duration::from_secs(2)))
        .map(|(path, _)| path.as_path())
        .collect();
    let place = Place {
        config_file: &paths.config_file,
        data_dir: data_dir.as_deref(),
        stale: &stale,
    };
    limit(&settings, version, &place).map_err(fail)
}

/// A value and where the postmaster got it.
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    value: String,
    origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// The postmaster's command line, as written: `-c max_connections=20`.
    CommandLine(String),
    File {
        path: PathBuf,
        line: usize,
    },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine(flag) => write!(f, "command line {flag}"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Default => f.write_str("compiled-in default"),
        }
    }
}

/// What the postmaster's command line says (postgres's getopt string is
/// `B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:`).
#[derive(Debug, Default, PartialEq)]
struct CommandLine {
    /// `-D DIR`, as written.
    data_dir: Option<String>,
    /// `-c`, `--name=value` and `-N` settings by lower-case name; the last
    /// one given wins, as in postgres.
    settings: HashMap<String, Setting>,
}

fn parse_command_line(argv: &[String]) -> CommandLine {
    let mut parsed = CommandLine::default();
    let mut set = |name: &str, value: &str, flag: String| {
        parsed.settings.insert(
            name.to_ascii_lowercase().replace('-', "_"),
            Setting {
                value: value.to_owned(),
                origin: Origin::CommandLine(flag),
            },
        );
    };
    let mut data_dir = None;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            continue;
        };
        if flags == "-" {
            break;
        }
        for (i, opt) in flags.char_indices() {
            if !"BcCDdfhkNprStvW-".contains(opt) {
                continue;
            }
            // An option with an argument takes the rest of this word, or
            // the next word.
            let rest = &flags[i + opt.len_utf8()..];
            let (value, flag) = if rest.is_empty() {
                let value = args.next().map_or("", String::as_str);
                (value, format!("-{opt} {value}"))
            } else {
                (rest, format!("-{opt}{rest}"))
            };
            let flag = if opt == '-' {
                format!("-{flags}")
            } else {
                flag
            };
            match opt {
                'c' | '-' => {
                    if let Some((name, value)) = value.split_once('=') {
                        set(name, value, flag);
                    }
                }
                'N' => set("max_connections", value, flag),
                'D' => data_dir = Some(value.to_owned()),
                _ => {}
            }
            break;
        }
    }
    parsed.data_dir = data_dir;
    parsed
}

/// Where the configuration is.
#[derive(Debug, PartialEq)]
struct Paths {
    config_file: PathBuf,
    /// Known from the process (its cwd); else `data_directory` in the
    /// configuration, read after it.
    data_dir: Option<PathBuf>,
}

/// postgres's SelectConfigFiles: the config directory is `-D`, else
/// `$PGDATA`; the file `config_file`, else `CONFIGDIR/postgresql.conf`.
/// Relative paths were relative to where the postmaster was started. It
/// now works in its data directory (`cwd`), which is the config directory
/// unless `data_directory` moved it: so a relative `-D` is `cwd`, and the
/// start directory is `cwd` minus that `-D`.
fn locate(args: &CommandLine, pgdata: Option<&str>, cwd: Option<&Path>) -> Result<Paths, String> {
    let config_dir = args.data_dir.as_deref().or(pgdata).map(Path::new);
    let in_cwd = |file: &str| {
        cwd.map(|cwd| cwd.join(file)).ok_or_else(|| {
            "the postmaster's cwd (its data directory) is unreadable; run c1m-daemon as root"
                .to_owned()
        })
    };
    let config_file = match (args.settings.get("config_file"), config_dir) {
        (Some(file), _) if Path::new(&file.value).is_absolute() => PathBuf::from(&file.value),
        (Some(file), dir) => {
            let start = dir.zip(cwd).and_then(|(d, cwd)| strip_suffix(cwd, d));
            start.map(|s| s.join(&file.value)).ok_or_else(|| {
                format!(
                    "config_file {} is relative to the directory the postmaster was started \
                     in, which c1m cannot tell; start it with an absolute path",
                    file.value
                )
            })?
        }
        (None, Some(dir)) if dir.is_absolute() => dir.join("postgresql.conf"),
        (None, _) => in_cwd("postgresql.conf")?,
    };
    Ok(Paths {
        config_file,
        data_dir: cwd.map(Path::to_owned),
    })
}

/// `/a/b/c` minus `b/c` is `/a`.
fn strip_suffix(path: &Path, suffix: &Path) -> Option<PathBuf> {
    let suffix: Vec<_> = suffix
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let whole: Vec<_> = path.components().collect();
    let keep = whole.len().checked_sub(suffix.len())?;
    (whole[keep..] == suffix[..]).then(|| whole[..keep].iter().collect())
}

/// One directive of a postgresql.conf.
#[derive(Debug, Clone, PartialEq)]
enum Directive {
    Set { name: String, value: String },
    Include(String),
    IncludeIfExists(String),
    IncludeDir(String),
}

/// guc-file.l's grammar: each line is empty, or `name [=] value` and an
/// optional `# comment`; a value is one token, a quoted string (`''` and
/// backslash escapes) or a bare word. Names are case-insensitive.
fn parse_conf(text: &str) -> Result<Vec<(usize, Directive)>, String> {
    let mut directives = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let syntax = |why: &str| format!("line {number}: {why}: {line:?}");
        let line = line.trim_start_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$') || !c.is_ascii())
            })
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '$' | '.'))
        {
            return Err(syntax("syntax error"));
        }
        let mut rest = line[name_end..].trim_start_matches([' ', '\t', '\r']);
        if let Some(after) = rest.strip_prefix('=') {
            rest = after.trim_start_matches([' ', '\t', '\r']);
        }
        let (value, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            unquote(quoted).ok_or_else(|| syntax("unterminated quoted string"))?
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '#')
                .unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        if value.is_empty() && !rest.starts_with('\'') {
            return Err(syntax("no value"));
        }
        let after = after.trim_start_matches([' ', '\t', '\r']);
        if !after.is_empty() && !after.starts_with('#') {
            return Err(syntax("syntax error after the value"));
        }
        let directive = match name.to_ascii_lowercase().as_str() {
            "include" => Directive::Include(value),
            "include_if_exists" => Directive::IncludeIfExists(value),
            "include_dir" => Directive::IncludeDir(value),
            lower => Directive::Set {
                name: lower.to_owned(),
                value,
            },
        };
        directives.push((number, directive));
    }
    Ok(directives)
}

/// The body of a quoted string (after its opening quote): its value, and
/// what follows the closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if chars.peek().map(|(_, c)| *c) == Some('\'') => {
                chars.next();
                value.push('\'');
            }
            '\'' => return Some((value, &text[i + 1..])),
            '\\' => {
                let (_, escaped) = chars.next()?;
                match escaped {
                    'b' => value.push('\u{8}'),
                    'f' => value.push('\u{c}'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    '0'..='7' => {
                        let mut code = escaped.to_digit(8)?;
                        for _ in 0..2 {
                            match chars.peek().and_then(|(_, c)| c.to_digit(8)) {
                                Some(d) => {
                                    code = code * 8 + d;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        value.push(char::from_u32(code & 0xff)?);
                    }
                    other => value.push(other),
                }
            }
            c => value.push(c),
        }
    }
    None
}

/// The files read, in the order postgres reads them; the last setting of
/// a name wins.
#[derive(Debug, Default)]
struct ConfFiles {
    settings: HashMap<String, Setting>,
    /// Each file read and when it was last modified.
    files: Vec<(PathBuf, SystemTime)>,
}

impl ConfFiles {
    fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name)
    }

    /// ParseConfigFile: a missing file is an error when `strict`, else
    /// skipped (`include_if_exists`, `postgresql.auto.conf`).
    fn read_file(&mut self, path: &Path, strict: bool, depth: usize) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{}: includes nested deeper than {MAX_INCLUDE_DEPTH} (postgres refuses them too)",
                path.display()
            ));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if !strict && err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(format!(
                    "cannot read {}: {err}{}",
                    path.display(),
                    hint(&err)
                ));
            }
        };
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.files.push((path.to_owned(), mtime));
        let directives = parse_conf(&text).map_err(|why| {
            format!(
                "{}: {why}; postgres would not start with this file, so it changed since the \
                 server started: fix it",
                path.display()
            )
        })?;
        let relative = |p: &str| path.parent().unwrap_or(Path::new("/")).join(p);
        for (line, directive) in directives {
            match directive {
                Directive::Set { name, value } => {
                    let origin = Origin::File {
                        path: path.to_owned(),
                        line,
                    };
                    self.settings.insert(name, Setting { value, origin });
                }
                Directive::Include(p) => self.read_file(&relative(&p), true, depth + 1)?,
                Directive::IncludeIfExists(p) => self.read_file(&relative(&p), false, depth + 1)?,
                Directive::IncludeDir(p) => self.read_dir(&relative(&p), depth + 1)?,
            }
        }
        Ok(())
    }

    /// ParseConfigDirectory: the `*.conf` files not starting with a dot,
    /// in byte order of their names.
    fn read_dir(&mut self, dir: &Path, depth: usize) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|err| {
            format!(
                "cannot read include_dir {}: {err}{}",
                dir.display(),
                hint(&err)
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.as_encoded_bytes();
                name.ends_with(b".conf")
                    && !name.starts_with(b".")
                    && std::fs::metadata(e.path()).is_ok_and(|m| !m.is_dir())
            })
            .map(|e| e.path())
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        for file in files {
            self.read_file(&file, true, depth)?;
        }
        Ok(())
    }
}

fn hint(err: &std::io::Error) -> &'static str {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        "; run c1m-daemon as root"
    } else {
        ""
    }
}

/// postgres's parse_int for a unitless integer: strtol with base 0 (so
/// `0x64` and octal `0144` too), or a real number rounded half to even.
fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let all_digits = |s: &str, radix| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    let magnitude = if let Some(hex) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        all_digits(hex, 16)
            .then(|| i64::from_str_radix(hex, 16).ok())
            .flatten()?
    } else if digits.len() > 1 && digits.starts_with('0') && all_digits(digits, 10) {
        i64::from_str_radix(digits, 8).ok()?
    } else if all_digits(digits, 10) {
        digits.parse().ok()?
    } else if digits.contains(['.', 'e', 'E']) {
        let real: f64 = digits.parse().ok()?;
        let rounded = real.round_ties_even();
        if !rounded.is_finite() || rounded > i32::MAX as f64 {
            return None;
        }
        rounded as i64
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The major version in `PG_VERSION` (`15`, `9.6`): 9.6 is 9.
fn parse_major_version(text: &str) -> Option<u32> {
    text.trim().split('.').next()?.parse().ok()
}

/// Debian's layout: `/usr/lib/postgresql/15/bin/postgres`.
fn version_from_exe(exe: &Path) -> Option<u32> {
    let bin = exe.parent()?;
    (bin.file_name()? == "bin")
        .then(|| bin.parent()?.file_name()?.to_str()?.parse().ok())
        .flatten()
}

/// The settings from the files, and the command line's over them.
struct Settings {
    file: HashMap<String, Setting>,
    command_line: HashMap<String, Setting>,
}

impl Settings {
    fn get(&self, name: &str) -> Option<&Setting> {
        self.command_line.get(name).or_else(|| self.file.get(name))
    }

    /// A count setting, or its default; an unparsable value is an error
    /// (postgres would not have started with it).
    fn count(&self, name: &str, default: u64) -> Result<(u64, Origin), String> {
        match self.get(name) {
            None => Ok((default, Origin::Default)),
            Some(s) => parse_int(&s.value)
                .and_then(|n| u64::try_from(n).ok())
                .map(|n| (n, s.origin.clone()))
                .ok_or_else(|| {
                    format!(
                        "{name} = {:?} at {} is not a number postgres accepts; it would not \
                         start with it, so it changed since the server started: fix it",
                        s.value, s.origin
                    )
                }),
        }
    }
}

/// Where the configuration lives, for the remedy.
struct Place<'a> {
    config_file: &'a Path,
    data_dir: Option<&'a Path>,
    /// Files changed after the server started (max_connections only
    /// changes at a restart, so the server may run an older value).
    stale: &'a [&'a Path],
}

/// The limit from the settings, e.g. max_connections 100 and the default
/// 3 reserved for superusers: an ordinary role gets 97 sessions.
fn limit(settings: &Settings, version: Option<u32>, place: &Place) -> Result<AppLimit, String> {
    let (max, max_origin) = settings.count("max_connections", DEFAULT_MAX_CONNECTIONS)?;
    let (su_reserved, su_origin) =
        settings.count("superuser_reserved_connections", DEFAULT_SUPERUSER_RESERVED)?;
    // reserved_connections exists from PostgreSQL 16 (default 0); older
    // servers refuse to start with it set.
    let (reserved, reserved_origin) = if version.is_none_or(|v| v >= 16) {
        settings.count("reserved_connections", 0)?
    } else {
        (0, Origin::Default)
    };
    if su_reserved + reserved >= max {
        return Err(format!(
            "superuser_reserved_connections {su_reserved} ({su_origin}) plus \
             reserved_connections {reserved} must be less than max_connections {max} \
             ({max_origin}) or postgres does not start; the files changed since it started: fix them"
        ));
    }
    let ordinary = max - su_reserved - reserved;
    // The postmaster forks a process for every accepted connection, up to
    // 2 x (max_connections + autovacuum workers + launcher + wal senders +
    // bg workers) children; past that a startup packet is answered "sorry,
    // too many clients already".
    // (PostgreSQL 18 counts its children differently.)
    let children = 2
        * (max
            + settings.count("autovacuum_max_workers", 3)?.0
            + 1
            + settings.count("max_wal_senders", 10)?.0
            + settings.count("max_worker_processes", 8)?.0);
    let children = match version {
        Some(v) if v >= 18 => "a cap of postmaster children".to_owned(),
        _ => format!("a cap of {children} postmaster children"),
    };
    let server = version.map_or_else(|| "PostgreSQL".to_owned(), |v| format!("PostgreSQL {v}"));
    let mut reserved_text = format!("superuser_reserved_connections {su_reserved} ({su_origin})");
    if reserved > 0 {
        reserved_text += &format!(" and reserved_connections {reserved} ({reserved_origin})");
    }
    let mut explanation = format!(
        "{server} max_connections {max} minus {reserved_text}: an ordinary role gets {ordinary} \
         sessions, superusers also the {} reserved slots; every session is a backend process, \
         so RLIMIT_NPROC, the cgroup's pids.max and kernel.pid_max bound it too, and \
         connections still authenticating (each a process for up to authentication_timeout) \
         count toward {children}, past which sessions are refused",
        su_reserved + reserved
    );
    let affected = !matches!(max_origin, Origin::CommandLine(_));
    if affected && !place.stale.is_empty() {
        let files: Vec<String> = place
            .stale
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        explanation += &format!(
            " (note: {} changed after the server started, and max_connections changes only at \
             a restart, so the running server may still use an earlier value)",
            files.join(", ")
        );
    }
    Ok(AppLimit {
        name: NAME,
        setting: max,
        max_connections: ordinary,
        source: max_origin.to_string(),
        explanation,
        remedy: remedy(max, &max_origin, place),
    })
}

fn remedy(max: u64, origin: &Origin, place: &Place) -> String {
    let want = max * 2;
    let restart = restart_command(place);
    let alter = format!("`ALTER SYSTEM SET max_connections = {want};`");
    let change = match origin {
        Origin::CommandLine(flag) => format!(
            "change `{flag}` on the postmaster's command line to `-c max_connections={want}` \
             (it overrides the configuration files and ALTER SYSTEM)"
        ),
        Origin::File { path, .. } if path.ends_with("postgresql.auto.conf") => {
            format!("run {alter} (it rewrites {})", path.display())
        }
        Origin::File { path, line } => format!(
            "set `max_connections = {want}` at {}:{line} (or run {alter})",
            path.display()
        ),
        Origin::Default => format!(
            "add `max_connections = {want}` to {} (or run {alter})",
            place.config_file.display()
        ),
    };
    format!(
        "{change}, then restart PostgreSQL ({restart}): a reload does not change it; each \
         session is a process of a few MB, so past a few hundred put a pooler (PgBouncer) in front"
    )
}

/// `pg_ctlcluster 15 main restart` for a Debian cluster
/// (`/etc/postgresql/15/main/postgresql.conf`), else `pg_ctl restart -D DIR`.
fn restart_command(place: &Place) -> String {
    let parts: Vec<&str> = place
        .config_file
        .iter()
        .filter_map(|c| c.to_str())
        .collect();
    if let [.., "etc", "postgresql", version, cluster, _] = parts[..] {
        return format!("`pg_ctlcluster {version} {cluster} restart`");
    }
    match place.data_dir {
        Some(dir) => format!("`pg_ctl restart -D {}`", dir.display()),
        None => "`pg_ctl restart -D DATADIR`".to_owned(),
    }
}

/// A variable of a process's environment (`/proc/PID/environ`).
fn read_environ_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// When the process started.
fn process_start(pid: u32) -> Option<SystemTime> {
    let ticks = crate::system::process::read_stat(pid).ok()?.starttime;
    let boot = procfs::boot_time_secs().ok()?;
    let since_boot = Duration::from_secs_f64(ticks as f64 / procfs::ticks_per_second() as f64);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// For the fuzz targets (`parsers.rs`): the parsers of text the server's
/// admin wrote (`postgresql.conf`, the command line, `PG_VERSION`); how many
/// accepted it.
pub fn parse_untrusted_text(text: &str) -> usize {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    parse_command_line(&words);
    usize::from(parse_conf(text).is_ok())
        + usize::from(parse_int(text).is_some())
        + usize::from(parse_major_version(text).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn value(args: &CommandLine, name: &str) -> Option<(String, String)> {
        args.settings
            .get(name)
            .map(|s| (s.value.clone(), s.origin.to_string()))
    }

    use super::super::testing::TempDir;

    #[test]
    fn command_line_settings_in_every_spelling_and_the_last_wins() {
        let debian = parse_command_line(&argv(
            "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main \
             -c config_file=/etc/postgresql/15/main/postgresql.conf",
        ));
        assert_eq!(
            debian.data_dir.as_deref(),
            Some("/var/lib/postgresql/15/main")
        );
        assert_eq!(
            value(&debian, "config_file").unwrap().0,
            "/etc/postgresql/15/main/postgresql.conf"
        );
        assert_eq!(value(&debian, "max_connections"), None);

        for (line, want, flag) in [
            ("postgres -N 50", "50", "command line -N 50"),
            ("postgres -N50", "50", "command line -N50"),
            (
                "postgres -c max_connections=20",
                "20",
                "command line -c max_connections=20",
            ),
            (
                "postgres -cmax_connections=21",
                "21",
                "command line -cmax_connections=21",
            ),
            (
                "postgres --max_connections=30",
                "30",
                "command line --max_connections=30",
            ),
            (
                "postgres --max-connections=40",
                "40",
                "command line --max-connections=40",
            ),
            (
                "postgres -c MAX_CONNECTIONS=41",
                "41",
                "command line -c MAX_CONNECTIONS=41",
            ),
            // The last one given wins, whatever its spelling.
            (
                "postgres -N 5 -c max_connections=6 --max_connections=7",
                "7",
                "command line --max_connections=7",
            ),
            (
                "postgres --max_connections=7 -N 8",
                "8",
                "command line -N 8",
            ),
            // Flags without an argument, clustered, and options whose
            // argument is not a setting.
            (
                "postgres -i -p 5433 -ei -B 128 -D data -N 9",
                "9",
                "command line -N 9",
            ),
        ] {
            let args = parse_command_line(&argv(line));
            assert_eq!(
                value(&args, "max_connections"),
                Some((want.to_owned(), flag.to_owned())),
                "{line}"
            );
        }
        // `-p 5433` takes its argument: a `-N` in it is not read.
        assert_eq!(
            value(
                &parse_command_line(&argv("postgres -p -N")),
                "max_connections"
            ),
            None
        );
        // `--` ends the options.
        assert_eq!(
            value(
                &parse_command_line(&argv("postgres -- -N 5")),
                "max_connections"
            ),
            None
        );
        assert_eq!(
            parse_command_line(&argv(
                "postgres -D/srv/pg -c superuser_reserved_connections=1"
            ))
            .data_dir
            .as_deref(),
            Some("/srv/pg")
        );
        // A rewritten title (a backend) has nothing.
        assert_eq!(
            parse_command_line(&argv("postgres: checkpointer ")),
            CommandLine::default()
        );
    }

    #[test]
    fn conf_lines_as_postgres_lexes_them() {
        let text = "\
# -----------------------------
# PostgreSQL configuration file
# -----------------------------
data_directory = '/var/lib/postgresql/15/main'\t\t# use data in another directory
listen_addresses = 'localhost'\t\t# what IP address(es) to listen on;
port = 5432\t\t\t\t# (change requires restart)
max_connections = 100\t\t\t# (change requires restart)
#superuser_reserved_connections = 3\t# (change requires restart)
shared_buffers = 128MB\t\t\t# min 128kB
  \t
Work_Mem 4MB
log_line_prefix = '%m [%p] %q%u@%d '
search_path = '\"$user\", public'
application_name='it''s \\'quoted\\''
datestyle=iso
pg_stat_statements.max = 10000
include_dir = 'conf.d'\t\t\t# include files ending in '.conf' from
include_if_exists = '/etc/postgresql/extra.conf'
INCLUDE 'local.conf'
empty = ''
";
        let parsed = parse_conf(text).unwrap();
        let set = |name: &str, value: &str| Directive::Set {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        assert_eq!(
            parsed,
            vec![
                (4, set("data_directory", "/var/lib/postgresql/15/main")),
                (5, set("listen_addresses", "localhost")),
                (6, set("port", "5432")),
                (7, set("max_connections", "100")),
                (9, set("shared_buffers", "128MB")),
                (11, set("work_mem", "4MB")),
                (12, set("log_line_prefix", "%m [%p] %q%u@%d ")),
                (13, set("search_path", "\"$user\", public")),
                (14, set("application_name", "it's 'quoted'")),
                (15, set("datestyle", "iso")),
                (16, set("pg_stat_statements.max", "10000")),
                (17, Directive::IncludeDir("conf.d".into())),
                (
                    18,
                    Directive::IncludeIfExists("/etc/postgresql/extra.conf".into())
                ),
                (19, Directive::Include("local.conf".into())),
                (20, set("empty", "")),
            ]
        );
        assert_eq!(
            parse_conf("a = '\\101\\tb'").unwrap(),
            vec![(1, set("a", "A\tb"))]
        );
        assert_eq!(
            parse_conf("max_connections=20\r\n").unwrap(),
            vec![(1, set("max_connections", "20"))]
        );
        for bad in [
            "max_connections = 100 200",
            "max_connections =",
            "= 100",
            "9lives = 1",
            "max_connections = 'unterminated",
            "listen_addresses = 'a' 'b'",
        ] {
            let err = parse_conf(&format!("port = 1\n{bad}\n")).unwrap_err();
            assert!(err.starts_with("line 2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn integers_as_parse_int_reads_them() {
        for (text, want) in [
            ("100", Some(100)),
            (" 100 ", Some(100)),
            ("+100", Some(100)),
            ("-1", Some(-1)),
            ("0x64", Some(100)),
            ("0X64", Some(100)),
            ("0144", Some(100)),
            ("0", Some(0)),
            ("1e2", Some(100)),
            ("100.4", Some(100)),
            ("100.5", Some(100)),
            ("101.5", Some(102)),
            (".5e3", Some(500)),
            ("08", None),
            ("0x", None),
            ("0x+5", None),
            ("++5", None),
            ("100kB", None),
            ("abc", None),
            ("", None),
            ("1e20", None),
        ] {
            assert_eq!(parse_int(text), want, "{text:?}");
        }
    }

    #[test]
    fn versions_from_pg_version_and_debian_paths() {
        assert_eq!(parse_major_version("15\n"), Some(15));
        assert_eq!(parse_major_version("9.6\n"), Some(9));
        assert_eq!(parse_major_version("x"), None);
        assert_eq!(
            version_from_exe(Path::new("/usr/lib/postgresql/16/bin/postgres")),
            Some(16)
        );
        assert_eq!(
            version_from_exe(Path::new("/usr/local/pgsql/bin/postgres")),
            None
        );
        assert_eq!(version_from_exe(Path::new("/usr/bin/postgres")), None);
    }

    #[test]
    fn includes_are_followed_in_postgres_order_and_the_last_setting_wins() {
        let dir = TempDir::new("pg-includes");
        let main = dir.write(
            "etc/postgresql.conf",
            "max_connections = 100\n\
             include_dir 'conf.d'\n\
             include_if_exists = 'missing.conf'\n\
             include = 'sub/local.conf'\n\
             superuser_reserved_connections = 2\n",
        );
        dir.write("etc/conf.d/20-late.conf", "max_connections = 300\n");
        dir.write(
            "etc/conf.d/10-early.conf",
            "# early\nmax_connections = 200\nport = 5433\n",
        );
        dir.write("etc/conf.d/.hidden.conf", "max_connections = 1\n");
        dir.write("etc/conf.d/notes.txt", "max_connections = 2\n");
        dir.write("etc/conf.d/dir.conf/x.conf", "max_connections = 3\n");
        let local = dir.write("etc/sub/local.conf", "include 'deeper.conf'\n");
        let deeper = dir.write("etc/sub/deeper.conf", "\n\nmax_connections = 400\n");
        let auto = dir.write(
            "data/postgresql.auto.conf",
            "# Do not edit this file manually!\nmax_connections = '500'\n",
        );

        let mut conf = ConfFiles::default();
        conf.read_file(&main, true, 0).unwrap();
        let got = conf.get("max_connections").unwrap();
        assert_eq!(got.value, "400");
        assert_eq!(
            got.origin,
            Origin::File {
                path: deeper.clone(),
                line: 3
            }
        );
        assert_eq!(got.origin.to_string(), format!("{}:3", deeper.display()));
        assert_eq!(conf.get("port").unwrap().value, "5433");
        assert_eq!(
            conf.get("superuser_reserved_connections").unwrap().origin,
            Origin::File {
                path: main.clone(),
                line: 5
            }
        );
        let read: Vec<&PathBuf> = conf.files.iter().map(|(p, _)| p).collect();
        assert_eq!(
            read,
            [
                &main,
                &dir.0.join("etc/conf.d/10-early.conf"),
                &dir.0.join("etc/conf.d/20-late.conf"),
                &local,
                &deeper
            ]
        );
        // postgresql.auto.conf (ALTER SYSTEM) is read after them.
        conf.read_file(&auto, false, 0).unwrap();
        assert_eq!(conf.get("max_connections").unwrap().value, "500");
        // ... and is optional.
        conf.read_file(&dir.0.join("data/none.conf"), false, 0)
            .unwrap();

        let strict = dir.write("etc/strict.conf", "include 'missing.conf'\n");
        let err = ConfFiles::default()
            .read_file(&strict, true, 0)
            .unwrap_err();
        assert!(err.contains("missing.conf"), "{err}");
        let looped = dir.write("etc/loop.conf", "include 'loop.conf'\n");
        let err = ConfFiles::default()
            .read_file(&looped, true, 0)
            .unwrap_err();
        assert!(err.contains("nested deeper than 10"), "{err}");
        let broken = dir.write("etc/broken.conf", "port = 1\nmax_connections = 100 100\n");
        let err = ConfFiles::default()
            .read_file(&broken, true, 0)
            .unwrap_err();
        assert!(err.contains("broken.conf: line 2"), "{err}");
        let err = ConfFiles::default()
            .read_file(
                &dir.write("etc/nodir.conf", "include_dir 'none'\n"),
                true,
                0,
            )
            .unwrap_err();
        assert!(err.contains("include_dir"), "{err}");
    }

    #[test]
    fn the_config_file_from_flags_environment_or_the_data_directory() {
        let cwd = Path::new("/var/lib/postgresql/15/main");
        let locate_line = |line: &str, pgdata: Option<&str>| {
            locate(&parse_command_line(&argv(line)), pgdata, Some(cwd)).map(|p| p.config_file)
        };
        assert_eq!(
            locate_line(
                "postgres -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf",
                None
            ),
            Ok("/etc/postgresql/15/main/postgresql.conf".into())
        );
        assert_eq!(
            locate_line("postgres --config-file=/etc/pg.conf", None),
            Ok("/etc/pg.conf".into())
        );
        assert_eq!(
            locate_line("postgres -D /srv/pg", Some("/ignored")),
            Ok("/srv/pg/postgresql.conf".into())
        );
        assert_eq!(
            locate_line("postgres", Some("/srv/env")),
            Ok("/srv/env/postgresql.conf".into())
        );
        // Relative: the postmaster works in its data directory.
        assert_eq!(
            locate_line("postgres -D 15/main", None),
            Ok(cwd.join("postgresql.conf"))
        );
        assert_eq!(
            locate_line("postgres", None),
            Ok(cwd.join("postgresql.conf"))
        );
        assert_eq!(
            locate_line("postgres -D 15/main -c config_file=etc/pg.conf", None),
            Ok("/var/lib/postgresql/etc/pg.conf".into())
        );
        let err = locate_line("postgres -D /srv/pg -c config_file=pg.conf", None).unwrap_err();
        assert!(err.contains("absolute path"), "{err}");
        let paths = locate(
            &parse_command_line(&argv("postgres -D /srv/pg")),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            paths,
            Paths {
                config_file: "/srv/pg/postgresql.conf".into(),
                data_dir: None
            }
        );
    }

    fn settings(file: &[(&str, &str, usize)], command_line: &[(&str, &str)]) -> Settings {
        let file = file
            .iter()
            .map(|(name, value, line)| {
                let origin = Origin::File {
                    path: "/etc/postgresql/15/main/postgresql.conf".into(),
                    line: *line,
                };
                (
                    name.to_string(),
                    Setting {
                        value: value.to_string(),
                        origin,
                    },
                )
            })
            .collect();
        let command_line = command_line
            .iter()
            .map(|(name, value)| {
                let origin = Origin::CommandLine(format!("-c {name}={value}"));
                (
                    name.to_string(),
                    Setting {
                        value: value.to_string(),
                        origin,
                    },
                )
            })
            .collect();
        Settings { file, command_line }
    }

    fn debian() -> Place<'static> {
        Place {
            config_file: Path::new("/etc/postgresql/15/main/postgresql.conf"),
            data_dir: Some(Path::new("/var/lib/postgresql/15/main")),
            stale: &[],
        }
    }

    #[test]
    fn an_ordinary_role_gets_max_connections_minus_the_reserved_slots() {
        // initdb's file: max_connections = 100 at line 65, 3 reserved.
        let l = limit(
            &settings(&[("max_connections", "100", 65)], &[]),
            Some(15),
            &debian(),
        )
        .unwrap();
        assert_eq!((l.name, l.setting, l.max_connections), (NAME, 100, 97));
        assert_eq!(l.source, "/etc/postgresql/15/main/postgresql.conf:65");
        assert!(
            l.explanation
                .contains("superusers also the 3 reserved slots"),
            "{}",
            l.explanation
        );
        assert!(l.explanation.contains("RLIMIT_NPROC"), "{}", l.explanation);
        assert!(l.explanation.contains("pids.max"), "{}", l.explanation);
        // 2 x (100 + 3 + 1 + 10 + 8)
        assert!(
            l.explanation.contains("a cap of 244 postmaster children"),
            "{}",
            l.explanation
        );
        assert!(
            l.remedy
                .contains("`max_connections = 200` at /etc/postgresql/15/main/postgresql.conf:65"),
            "{}",
            l.remedy
        );
        assert!(
            l.remedy.contains("ALTER SYSTEM SET max_connections = 200"),
            "{}",
            l.remedy
        );
        assert!(
            l.remedy.contains("`pg_ctlcluster 15 main restart`"),
            "{}",
            l.remedy
        );

        // Nothing set: compiled-in defaults.
        let place = Place {
            config_file: Path::new("/srv/pg/postgresql.conf"),
            data_dir: Some(Path::new("/srv/pg")),
            stale: &[],
        };
        let l = limit(&settings(&[], &[]), None, &place).unwrap();
        assert_eq!((l.setting, l.max_connections), (100, 97));
        assert_eq!(l.source, "compiled-in default");
        assert!(
            l.remedy
                .starts_with("add `max_connections = 200` to /srv/pg/postgresql.conf"),
            "{}",
            l.remedy
        );
        assert!(
            l.remedy.contains("`pg_ctl restart -D /srv/pg`"),
            "{}",
            l.remedy
        );

        // The command line wins over the file.
        let s = settings(
            &[
                ("max_connections", "100", 65),
                ("superuser_reserved_connections", "5", 66),
            ],
            &[("max_connections", "20")],
        );
        let l = limit(&s, Some(15), &debian()).unwrap();
        assert_eq!((l.setting, l.max_connections), (20, 15));
        assert_eq!(l.source, "command line -c max_connections=20");
        assert!(
            l.explanation.contains(
                "superuser_reserved_connections 5 (/etc/postgresql/15/main/postgresql.conf:66)"
            ),
            "{}",
            l.explanation
        );
        assert!(l.remedy.starts_with("change `-c max_connections=20` on the postmaster's command line to `-c max_connections=40`"), "{}", l.remedy);
    }

    #[test]
    fn reserved_connections_count_from_postgresql_16() {
        let s = settings(
            &[
                ("max_connections", "50", 1),
                ("reserved_connections", "4", 2),
            ],
            &[],
        );
        let l = limit(&s, Some(16), &debian()).unwrap();
        assert_eq!(l.max_connections, 50 - 3 - 4);
        assert!(
            l.explanation
                .contains("superusers also the 7 reserved slots"),
            "{}",
            l.explanation
        );
        assert!(
            l.explanation.contains("reserved_connections 4"),
            "{}",
            l.explanation
        );
        // PostgreSQL 15 has no such setting.
        assert_eq!(limit(&s, Some(15), &debian()).unwrap().max_connections, 47);
        // postgres refuses to start when the reserved slots take them all.
        let s = settings(
            &[
                ("max_connections", "5", 1),
                ("superuser_reserved_connections", "5", 2),
            ],
            &[],
        );
        assert!(
            limit(&s, Some(15), &debian())
                .unwrap_err()
                .contains("must be less than")
        );
        let s = settings(&[("max_connections", "many", 7)], &[]);
        let err = limit(&s, Some(15), &debian()).unwrap_err();
        assert!(err.contains("postgresql.conf:7"), "{err}");
    }

    #[test]
    fn alter_system_and_stale_files_are_named() {
        let auto = "/var/lib/postgresql/15/main/postgresql.auto.conf";
        let s = Settings {
            file: HashMap::from([(
                "max_connections".to_owned(),
                Setting {
                    value: "300".into(),
                    origin: Origin::File {
                        path: auto.into(),
                        line: 3,
                    },
                },
            )]),
            command_line: HashMap::new(),
        };
        let stale = [Path::new(auto)];
        let place = Place {
            stale: &stale,
            ..debian()
        };
        let l = limit(&s, Some(15), &place).unwrap();
        assert_eq!((l.setting, l.max_connections), (300, 297));
        assert!(
            l.remedy
                .starts_with("run `ALTER SYSTEM SET max_connections = 600;` (it rewrites"),
            "{}",
            l.remedy
        );
        assert!(
            l.explanation.contains("changed after the server started"),
            "{}",
            l.explanation
        );
        // A command-line value cannot have changed since.
        let s = settings(&[], &[("max_connections", "20")]);
        assert!(
            !limit(&s, Some(15), &place)
                .unwrap()
                .explanation
                .contains("changed after")
        );
    }

    #[test]
    fn the_postmaster_is_the_process_without_a_postgres_parent() {
        let process = |pid, ppid, cmdline: &str| ServerProcess {
            pid,
            ppid,
            exe: "/usr/lib/postgresql/15/bin/postgres".into(),
            cmdline: argv(cmdline),
            cwd: None,
            listening: vec![],
        };
        let pm = process(100, 1, "/usr/lib/postgresql/15/bin/postgres -D /srv/pg");
        let checkpointer = process(101, 100, "postgres: checkpointer ");
        let backend = process(102, 100, "postgres: app postgres 127.0.0.1(5000) idle");
        let found = postmasters(&[&checkpointer, &pm, &backend]);
        assert_eq!(found.iter().map(|p| p.pid).collect::<Vec<_>>(), [100]);
    }

    /// Against a real PostgreSQL: start one from a temporary cluster with
    /// `-c max_connections=20` on its command line (over `max_connections
    /// = 30` in postgresql.auto.conf) and 5 slots reserved in an
    /// `include_dir` file, read it, then open sessions until it refuses.
    #[test]
    fn the_reader_matches_what_a_real_postgres_lets_in() {
        let Some(pg) = real::Postgres::start(
            "reader",
            &["-c", "max_connections=20"],
            &[
                ("postgresql.auto.conf", "max_connections = 30\n"),
                ("conf.d/10-c1m.conf", "superuser_reserved_connections = 5\n"),
            ],
            "include_dir = 'conf.d'\n",
        ) else {
            return;
        };
        let pids: Vec<u32> = std::iter::once(pg.pid)
            .chain(
                crate::system::process::descendants(pg.pid)
                    .into_iter()
                    .map(|(pid, _)| pid),
            )
            .collect();
        let processes = super::super::server_processes(&pids, &[pg.addr]);
        assert!(processes.len() > 3, "{processes:?}");
        let postmaster = processes.iter().find(|p| p.pid == pg.pid).unwrap();
        assert_eq!(
            postmaster.cwd.as_deref(),
            Some(pg.data_dir().as_path()),
            "the postmaster works in its data directory"
        );
        let refs: Vec<&ServerProcess> = processes.iter().collect();
        let limits = read(&refs).unwrap();
        assert_eq!(limits.len(), 1, "{limits:?}");
        let l = &limits[0];
        eprintln!("{l:#?}");
        assert_eq!(
            (l.name, l.setting, l.source.as_str()),
            (NAME, 20, "command line -c max_connections=20")
        );
        assert!(
            l.explanation.contains("conf.d/10-c1m.conf:1"),
            "{}",
            l.explanation
        );

        real::query(pg.addr, "postgres", "CREATE ROLE app LOGIN").unwrap();
        let (ordinary, refusal) = real::open_sessions(pg.addr, "app", 40);
        eprintln!(
            "postgres max_connections 20, 5 reserved: an ordinary role opened {} sessions ({refusal}), the reader says {}",
            ordinary.len(),
            l.max_connections
        );
        assert!(
            refusal.contains("reserved for non-replication superuser"),
            "{refusal}"
        );
        assert_eq!(ordinary.len() as u64, l.max_connections);
        let (superuser, refusal) = real::open_sessions(pg.addr, "postgres", 40);
        assert!(refusal.contains("too many clients"), "{refusal}");
        assert_eq!(
            (ordinary.len() + superuser.len()) as u64,
            l.setting,
            "superusers get the reserved slots"
        );
    }

    /// The real postgres for the test above (shared with the end-to-end
    /// tests), and sessions opened until it refuses one.
    mod real {
        use std::net::{SocketAddr, TcpStream};

        pub use super::super::super::testing::postgres::{Postgres, query, session};

        /// Open sessions one by one until the server refuses one (or
        /// `most` are open): the open ones, and the refusal.
        pub fn open_sessions(
            addr: SocketAddr,
            user: &str,
            most: usize,
        ) -> (Vec<TcpStream>, String) {
            let mut open = Vec::new();
            while open.len() < most {
                match session(addr, user) {
                    Ok(stream) => open.push(stream),
                    Err(why) => return (open, why),
                }
            }
            (open, format!("none refused of {most}"))
        }
    }
}
