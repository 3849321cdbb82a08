//! MySQL's and MariaDB's own connection limit, `max_connections`, read
//! where mysqld/mariadbd gets it: the option files in the server's order
//! (`/etc/my.cnf`, `/etc/mysql/my.cnf`, `$MYSQL_HOME/my.cnf`,
//! `--defaults-extra-file`, `~/.my.cnf`; or only `--defaults-file`; none
//! with `--no-defaults`), their `[mysqld]`/`[server]` groups (MariaDB also
//! `[mariadb]`, `[mariadbd]`, `[client-server]`, `[galera]`) and `!include`
//! / `!includedir`; then the command line; then, on MySQL 8,
//! `DATADIR/mysqld-auto.cnf` (SET PERSIST), which wins over both. Default
//! 151.
//!
//! MySQL lets `max_connections` ordinary clients in, plus one for an
//! account with CONNECTION_ADMIN or SUPER; `max_connections` here is the
//! ordinary clients'. MySQL also lowers the setting at start when its
//! RLIMIT_NOFILE is too small (to the fds minus 810, the "Changed limits:
//! max_connections: 214" warning), which is applied here.
//!
//! Not read: version groups (`[mysqld-8.0]`, `[mariadb-10.11]`), the
//! compiled-in SYSCONFDIR file, and a `SET GLOBAL` since the start (the
//! setting is dynamic; only the server can tell its value now).

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use super::{AppLimit, AppLimitError, ServerProcess};

const NAME: &str = "mysql.max_connections";
const DEFAULT_MAX_CONNECTIONS: u64 = 151;
/// The server clamps max_connections into 1..=100000.
const MAX_CONNECTIONS_RANGE: (u64, u64) = (1, 100_000);
/// MySQL's adjust_max_connections: fds - 10 - TABLE_OPEN_CACHE_MIN (400) x 2.
const MYSQL_FDS_NOT_FOR_CONNECTIONS: u64 = 10 + 400 * 2;
/// my_default.cc's limit on nested `!include`s.
const MAX_INCLUDE_DEPTH: usize = 10;

/// Which server: they read different groups, and only MySQL has
/// `mysqld-auto.cnf`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    MySql,
    MariaDb,
}

impl Flavor {
    /// By executable: MariaDB's is `mariadbd` since 10.5 (`mysqld` is a
    /// symlink to it, which /proc/PID/exe resolves).
    fn of(exe: &Path) -> Flavor {
        match exe.file_name().and_then(|n| n.to_str()) {
            Some(name) if name.starts_with("mariadbd") => Flavor::MariaDb,
            _ => Flavor::MySql,
        }
    }

    fn server(self) -> &'static str {
        match self {
            Flavor::MySql => "mysqld",
            Flavor::MariaDb => "mariadbd",
        }
    }
}

pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    processes
        .iter()
        .filter(|p| !processes.iter().any(|q| q.pid == p.ppid))
        .map(|p| read_server(p))
        .collect()
}

fn read_server(server: &ServerProcess) -> Result<AppLimit, AppLimitError> {
    let fail = |why: String| AppLimitError {
        server: "mysql",
        pid: server.pid,
        why,
    };
    let flavor = Flavor::of(&server.exe);
    let args = parse_command_line(&server.cmdline);
    let env = Environment {
        mysql_home: environ_var(server.pid, "MYSQL_HOME"),
        mariadb_home: environ_var(server.pid, "MARIADB_HOME"),
        home: environ_var(server.pid, "HOME"),
        group_suffix: environ_var(server.pid, "MYSQL_GROUP_SUFFIX"),
    };
    let files = option_files(&args.defaults, flavor, &env).map_err(fail)?;
    let groups = groups(
        flavor,
        args.defaults
            .group_suffix
            .as_ref()
            .or(env.group_suffix.as_ref()),
    );
    let mut options = OptionFiles::new(groups);
    for (path, required) in &files {
        options.read_file(path, *required, 0).map_err(fail)?;
    }
    let mut settings = options.settings;
    settings.extend(args.settings);
    // mysqld works in its data directory.
    let data_dir = server.cwd.clone().or_else(|| {
        settings
            .get("datadir")
            .map(|s| PathBuf::from(&s.value))
            .filter(|d| d.is_absolute())
    });
    let persisted_on = settings
        .get("persisted_globals_load")
        .is_none_or(|s| bool_option(&s.value));
    if let (Flavor::MySql, true, Some(dir)) = (flavor, persisted_on, &data_dir) {
        let path = dir.join("mysqld-auto.cnf");
        match std::fs::read_to_string(&path) {
            Ok(json) => {
                let value = parse_persisted(&json, "max_connections")
                    .map_err(|why| fail(format!("{}: {why}", path.display())))?;
                if let Some(value) = value {
                    let origin = Origin::Persisted(path);
                    settings.insert("max_connections".into(), Setting { value, origin });
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(fail(format!("cannot read {}: {err}", path.display()))),
        }
    }
    let nofile = crate::system::process_limits::read_process_limits(server.pid)
        .ok()
        .map(|l| crate::system::process_limits::limit_value(l.max_open_files.soft_limit));
    // Where to add a setting: the first option file the server read.
    let first_file = options.files.first().map(PathBuf::as_path);
    limit(settings.get("max_connections"), flavor, nofile, first_file).map_err(fail)
}

/// A value and where the server got it.
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    value: String,
    origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// The server's command line, as written: `--max-connections=500`.
    CommandLine(String),
    File {
        path: PathBuf,
        line: usize,
    },
    /// `SET PERSIST`, in `DATADIR/mysqld-auto.cnf`.
    Persisted(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine(flag) => write!(f, "command line {flag}"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Persisted(path) => write!(f, "{} (SET PERSIST)", path.display()),
        }
    }
}

/// The options that choose the option files; they count only at the start
/// of the command line, before any other option.
#[derive(Debug, Default, PartialEq)]
struct Defaults {
    no_defaults: bool,
    file: Option<String>,
    extra_file: Option<String>,
    group_suffix: Option<String>,
}

#[derive(Debug, Default, PartialEq)]
struct CommandLine {
    defaults: Defaults,
    /// By normalised name (`max_connections`); the last one given wins.
    settings: HashMap<String, Setting>,
}

/// Option names as my_getopt matches them: `-` and `_` alike, any case,
/// a `loose-` prefix ignored; `skip-`/`disable-`/`enable-` set a boolean.
fn normalise(name: &str) -> (String, Option<&'static str>) {
    let name = name.trim().to_ascii_lowercase().replace('-', "_");
    let name = name.strip_prefix("loose_").unwrap_or(&name).to_owned();
    for (prefix, value) in [("skip_", "OFF"), ("disable_", "OFF"), ("enable_", "ON")] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (rest.to_owned(), Some(value));
        }
    }
    (name, None)
}

/// Options whose value may be the next word (`--max-connections 500`).
const TAKES_VALUE: [&str; 3] = ["max_connections", "datadir", "persisted_globals_load"];

fn parse_command_line(argv: &[String]) -> CommandLine {
    let mut parsed = CommandLine::default();
    let mut args = argv.iter().skip(1).peekable();
    // get_defaults_options: only a leading run of these counts.
    while let Some(arg) = args.peek() {
        let d = &mut parsed.defaults;
        if *arg == "--no-defaults" {
            d.no_defaults = true;
        } else if let Some(file) = arg.strip_prefix("--defaults-file=") {
            d.file = Some(file.to_owned());
        } else if let Some(file) = arg.strip_prefix("--defaults-extra-file=") {
            d.extra_file = Some(file.to_owned());
        } else if let Some(suffix) = arg.strip_prefix("--defaults-group-suffix=") {
            d.group_suffix = Some(suffix.to_owned());
        } else if !(*arg == "--print-defaults"
            || *arg == "--no-login-paths"
            || arg.starts_with("--login-path="))
        {
            break;
        }
        args.next();
    }
    while let Some(arg) = args.next() {
        let (name, value, flag) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned()), arg.clone()),
                None => (long, None, arg.clone()),
            }
        } else if let Some(dir) = arg.strip_prefix("-h") {
            // mysqld's -h is --datadir.
            let dir = if dir.is_empty() {
                args.next().cloned()
            } else {
                Some(dir.to_owned())
            };
            ("datadir", dir, arg.clone())
        } else {
            continue;
        };
        let (name, implied) = normalise(name);
        let (value, flag) = match (value, implied) {
            (Some(value), _) => (value, flag),
            (None, Some(implied)) => (implied.to_owned(), flag),
            (None, None) if TAKES_VALUE.contains(&name.as_str()) => {
                match args.next_if(|next| !next.starts_with('-')) {
                    Some(next) => (next.clone(), format!("{flag} {next}")),
                    None => continue,
                }
            }
            // A boolean given alone is on.
            (None, None) => ("ON".to_owned(), flag),
        };
        let origin = Origin::CommandLine(flag);
        parsed.settings.insert(name, Setting { value, origin });
    }
    parsed
}

/// The parts of the server's environment that choose option files.
#[derive(Debug, Default)]
struct Environment {
    mysql_home: Option<String>,
    mariadb_home: Option<String>,
    home: Option<String>,
    group_suffix: Option<String>,
}

/// The option files in the order the server reads them, each with whether
/// it must exist (`--defaults-file`, `--defaults-extra-file`: the server
/// does not start without them).
fn option_files(
    defaults: &Defaults,
    flavor: Flavor,
    env: &Environment,
) -> Result<Vec<(PathBuf, bool)>, String> {
    let absolute = |file: &str, option: &str| -> Result<PathBuf, String> {
        let path = PathBuf::from(file);
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(format!(
                "{option}={file} is relative to the directory the server was started in, which \
                 c1m cannot tell; start it with an absolute path"
            ))
        }
    };
    if defaults.no_defaults {
        return Ok(Vec::new());
    }
    if let Some(file) = &defaults.file {
        return Ok(vec![(absolute(file, "--defaults-file")?, true)]);
    }
    let mut files = vec![
        (PathBuf::from("/etc/my.cnf"), false),
        (PathBuf::from("/etc/mysql/my.cnf"), false),
    ];
    let home = match flavor {
        Flavor::MariaDb => env.mariadb_home.as_ref().or(env.mysql_home.as_ref()),
        Flavor::MySql => env.mysql_home.as_ref(),
    };
    if let Some(home) = home {
        files.push((Path::new(home).join("my.cnf"), false));
    }
    if let Some(extra) = &defaults.extra_file {
        files.push((absolute(extra, "--defaults-extra-file")?, true));
    }
    if let Some(home) = &env.home {
        files.push((Path::new(home).join(".my.cnf"), false));
    }
    Ok(files)
}

/// The groups the server reads (lower case), each also with the suffix of
/// `--defaults-group-suffix` / `MYSQL_GROUP_SUFFIX`.
fn groups(flavor: Flavor, suffix: Option<&String>) -> Vec<String> {
    let base: &[&str] = match flavor {
        Flavor::MySql => &["mysqld", "server"],
        Flavor::MariaDb => &[
            "mysqld",
            "server",
            "mariadb",
            "mariadbd",
            "client-server",
            "galera",
        ],
    };
    let mut groups: Vec<String> = base.iter().map(|g| g.to_string()).collect();
    if let Some(suffix) = suffix {
        groups.extend(
            base.iter()
                .map(|g| format!("{g}{suffix}").to_ascii_lowercase()),
        );
    }
    groups
}

/// One meaningful line of an option file.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Group(String),
    Option { name: String, value: Option<String> },
    Include(String),
    IncludeDir(String),
}

/// my_default.cc's reading of an option file: `#` and `;` comment lines,
/// `#` comments after a value (outside quotes), `[group]`, `name`,
/// `name = value` (quotes around the value stripped, `\n \t \r \b \s \\
/// \" \'` escapes), `!include FILE`, `!includedir DIR`.
fn parse_option_file(text: &str) -> Result<Vec<(usize, Line)>, String> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(directive) = line.strip_prefix('!') {
            let (word, path) = directive
                .split_once(char::is_whitespace)
                .map(|(w, p)| (w, p.trim()))
                .unwrap_or((directive, ""));
            let item = match word {
                "include" if !path.is_empty() => Line::Include(path.to_owned()),
                "includedir" if !path.is_empty() => Line::IncludeDir(path.to_owned()),
                _ => return Err(format!("line {number}: unknown directive {raw:?}")),
            };
            lines.push((number, item));
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            let Some((name, _)) = group.split_once(']') else {
                return Err(format!("line {number}: wrong group definition {raw:?}"));
            };
            lines.push((number, Line::Group(name.trim().to_ascii_lowercase())));
            continue;
        }
        let line = strip_end_comment(line).trim_end();
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (line, None),
        };
        if name.is_empty() {
            return Err(format!("line {number}: an option without a name {raw:?}"));
        }
        let name = name.to_owned();
        lines.push((number, Line::Option { name, value }));
    }
    Ok(lines)
}

/// The line up to a `#` outside quotes.
fn strip_end_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escape = false;
    for (i, c) in line.char_indices() {
        if (c == '\'' || c == '"') && !escape {
            quote = match quote {
                None => Some(c),
                Some(q) if q == c => None,
                other => other,
            };
        }
        if quote.is_none() && c == '#' {
            return &line[..i];
        }
        escape = quote.is_some() && c == '\\' && !escape;
    }
    line
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    let inner = if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[0] == bytes[bytes.len() - 1]
    {
        &value[1..value.len() - 1]
    } else {
        value
    };
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' || chars.peek().is_none() {
            out.push(c);
            continue;
        }
        let escaped = chars.next().unwrap_or('\\');
        match escaped {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            's' => out.push(' '),
            '"' | '\'' | '\\' => out.push(escaped),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

/// The option files read so far: the last setting of a name wins.
#[derive(Debug)]
struct OptionFiles {
    groups: Vec<String>,
    settings: HashMap<String, Setting>,
    files: Vec<PathBuf>,
}

impl OptionFiles {
    fn new(groups: Vec<String>) -> OptionFiles {
        OptionFiles {
            groups,
            settings: HashMap::new(),
            files: Vec::new(),
        }
    }

    fn read_file(&mut self, path: &Path, required: bool, depth: usize) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{}: !include nested deeper than {MAX_INCLUDE_DEPTH}",
                path.display()
            ));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                let hint = if err.kind() == std::io::ErrorKind::PermissionDenied {
                    "; run c1m-daemon as root"
                } else {
                    ""
                };
                return Err(format!("cannot read {}: {err}{hint}", path.display()));
            }
        };
        self.files.push(path.to_owned());
        let lines = parse_option_file(&text).map_err(|why| {
            format!(
                "{}: {why}; the server would not start with this file, so it changed since: \
                 fix it",
                path.display()
            )
        })?;
        let relative = |p: &str| path.parent().unwrap_or(Path::new("/")).join(p);
        let mut in_group = None;
        for (line, item) in lines {
            match item {
                Line::Group(group) => in_group = Some(self.groups.contains(&group)),
                Line::Option { name, value } => match in_group {
                    None => {
                        return Err(format!(
                            "{}:{line}: option {name} before any [group]; the server would not \
                             start with this file: fix it",
                            path.display()
                        ));
                    }
                    Some(false) => {}
                    Some(true) => {
                        let (name, implied) = normalise(&name);
                        let value = value.or(implied.map(str::to_owned)).unwrap_or("ON".into());
                        let origin = Origin::File {
                            path: path.to_owned(),
                            line,
                        };
                        self.settings.insert(name, Setting { value, origin });
                    }
                },
                // Includes apply whatever group they are in.
                Line::Include(p) => self.read_file(&relative(&p), true, depth + 1)?,
                Line::IncludeDir(p) => self.read_dir(&relative(&p), depth + 1)?,
            }
        }
        Ok(())
    }

    /// `!includedir`: its `*.cnf` files, by name.
    fn read_dir(&mut self, dir: &Path, depth: usize) -> Result<(), String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            // The server skips a directory it cannot open.
            return Ok(());
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "cnf") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            self.read_file(&file, false, depth)?;
        }
        Ok(())
    }
}

/// A boolean option's value as my_getopt reads it.
fn bool_option(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "off" | "false" | "no"
    )
}

/// `name`'s value in a `mysqld-auto.cnf` (JSON; version 1 keeps settings
/// under `mysql_server`, version 2 under `mysql_dynamic_variables` and
/// friends): `{"max_connections": {"Value": "500", "Metadata": ...}}`.
fn parse_persisted(json: &str, name: &str) -> Result<Option<String>, String> {
    fn find(value: &serde_json::Value, name: &str) -> Option<String> {
        let object = value.as_object()?;
        if let Some(v) = object
            .get(name)
            .and_then(|setting| setting.get("Value")?.as_str())
        {
            return Some(v.to_owned());
        }
        object.values().find_map(|v| find(v, name))
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|err| format!("not the JSON SET PERSIST writes: {err}"))?;
    Ok(find(&value, name))
}

/// my_getopt's unsigned number: decimal with an optional K, M, G, T, P or
/// E suffix (powers of 1024), clamped into the option's range.
fn parse_number(text: &str, (min, max): (u64, u64)) -> Option<u64> {
    let text = text.trim();
    if text.starts_with('-') && text[1..].bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return Some(min);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let number: u64 = digits.parse().ok()?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return None,
    };
    let number = number.saturating_mul(1u64 << shift);
    Some(number.clamp(min, max))
}

/// The limit: e.g. max_connections 1000 in a file, but 1024 fds: MySQL
/// lowers it to 1024 - 810 = 214 ordinary clients.
fn limit(
    setting: Option<&Setting>,
    flavor: Flavor,
    nofile: Option<u64>,
    first_file: Option<&Path>,
) -> Result<AppLimit, String> {
    let (max, origin) = match setting {
        None => (DEFAULT_MAX_CONNECTIONS, None),
        Some(s) => {
            let max = parse_number(&s.value, MAX_CONNECTIONS_RANGE).ok_or_else(|| {
                format!(
                    "max_connections = {:?} at {} is not a number the server accepts; it would \
                     not start with it, so it changed since: fix it",
                    s.value, s.origin
                )
            })?;
            (max, Some(&s.origin))
        }
    };
    let source = origin.map_or_else(|| "compiled-in default".to_owned(), ToString::to_string);
    let server = flavor.server();
    let lowered = match (flavor, nofile) {
        (Flavor::MySql, Some(fds)) if fds.saturating_sub(MYSQL_FDS_NOT_FOR_CONNECTIONS) < max => {
            Some((fds, fds.saturating_sub(MYSQL_FDS_NOT_FOR_CONNECTIONS)))
        }
        _ => None,
    };
    let allowed = lowered.map_or(max, |(_, lowered)| lowered);
    let mut explanation = format!(
        "{server} max_connections {max} ({source}) counts every client session, one thread \
         each (so RLIMIT_NPROC and kernel.threads-max bound it too); it lets one more in for an \
         account with CONNECTION_ADMIN or SUPER, so ordinary clients get {allowed}"
    );
    if let Some((fds, lowered)) = lowered {
        explanation += &format!(
            "; with RLIMIT_NOFILE {fds} mysqld lowered it at start to {fds} - 810 = {lowered} \
             (\"Changed limits: max_connections\" in its error log)"
        );
    } else if flavor == Flavor::MariaDb {
        explanation += "; mariadbd lowers it at start when RLIMIT_NOFILE is too small \
                        (\"Changed limits\" in its error log)";
    }
    explanation += "; a SET GLOBAL since the start would not show here";
    Ok(AppLimit {
        name: NAME,
        setting: max,
        max_connections: allowed,
        source,
        explanation,
        remedy: remedy(max, lowered.map(|(fds, _)| fds), flavor, origin, first_file),
    })
}

fn remedy(
    max: u64,
    lowered_by_fds: Option<u64>,
    flavor: Flavor,
    origin: Option<&Origin>,
    first_file: Option<&Path>,
) -> String {
    let want = (max * 2).min(MAX_CONNECTIONS_RANGE.1);
    if let Some(fds) = lowered_by_fds {
        let need = max + MYSQL_FDS_NOT_FOR_CONNECTIONS;
        return format!(
            "raise mysqld's open files limit (now {fds}) to at least {need}: `LimitNOFILE={need}` \
             in its systemd unit (`systemctl edit mysql`), or `ulimit -n {need}` where it is \
             started, then restart it"
        );
    }
    let now = format!("`SET GLOBAL max_connections = {want};` applies it at once");
    let persist = match flavor {
        Flavor::MySql => {
            format!("`SET PERSIST max_connections = {want};` (MySQL 8) applies and keeps it")
        }
        Flavor::MariaDb => now.clone(),
    };
    match origin {
        Some(Origin::Persisted(_)) => persist,
        Some(Origin::CommandLine(flag)) => format!(
            "change `{flag}` on the server's command line to `--max-connections={want}` (it \
             overrides the option files) for the next start; {now}"
        ),
        Some(Origin::File { path, line }) => format!(
            "set `max_connections = {want}` at {}:{line} for the next start; {persist}",
            path.display()
        ),
        None => format!(
            "add `max_connections = {want}` under [mysqld] in {} for the next start; {persist}",
            first_file.map_or("/etc/mysql/my.cnf".into(), |f| f.display().to_string())
        ),
    }
}

/// A variable of a process's environment (`/proc/PID/environ`).
fn environ_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// For the fuzz targets (`parsers.rs`): the parsers of text the server's
/// admin or the server wrote (`my.cnf`, `mysqld-auto.cnf`, the command
/// line); how many accepted it.
pub fn parse_untrusted_text(text: &str) -> usize {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    parse_command_line(&words);
    usize::from(parse_option_file(text).is_ok())
        + usize::from(parse_persisted(text, "max_connections").is_ok_and(|v| v.is_some()))
        + usize::from(parse_number(text, (1, 100_000)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn setting(args: &CommandLine, name: &str) -> Option<(String, String)> {
        args.settings
            .get(name)
            .map(|s| (s.value.clone(), s.origin.to_string()))
    }

    use super::super::testing::TempDir;

    #[test]
    fn command_line_options_in_every_spelling_and_the_last_wins() {
        for (line, want, flag) in [
            (
                "mysqld --max-connections=500",
                "500",
                "--max-connections=500",
            ),
            (
                "mysqld --max_connections=501",
                "501",
                "--max_connections=501",
            ),
            (
                "mysqld --MAX-CONNECTIONS=502",
                "502",
                "--MAX-CONNECTIONS=502",
            ),
            (
                "mysqld --loose-max-connections=503",
                "503",
                "--loose-max-connections=503",
            ),
            (
                "mysqld --max-connections 504",
                "504",
                "--max-connections 504",
            ),
            (
                "mysqld --max-connections=1 --user=mysql --max_connections=2",
                "2",
                "--max_connections=2",
            ),
        ] {
            let args = parse_command_line(&argv(line));
            assert_eq!(
                setting(&args, "max_connections"),
                Some((want.to_owned(), format!("command line {flag}"))),
                "{line}"
            );
        }
        // A value-less option does not swallow the next option.
        let args = parse_command_line(&argv("mysqld --max-connections --user=mysql"));
        assert_eq!(setting(&args, "max_connections"), None);
        assert_eq!(setting(&args, "user").unwrap().0, "mysql");
        let args = parse_command_line(&argv("mysqld --skip-persisted-globals-load -h /srv/mysql"));
        assert_eq!(setting(&args, "persisted_globals_load").unwrap().0, "OFF");
        assert_eq!(setting(&args, "datadir").unwrap().0, "/srv/mysql");
        assert_eq!(
            setting(&parse_command_line(&argv("mysqld --datadir=/d")), "datadir")
                .unwrap()
                .0,
            "/d"
        );
    }

    #[test]
    fn defaults_options_count_only_at_the_start() {
        let args = parse_command_line(&argv(
            "/usr/sbin/mysqld --defaults-file=/etc/mysql/my1.cnf --defaults-group-suffix=.one \
             --max-connections=10",
        ));
        assert_eq!(
            args.defaults,
            Defaults {
                file: Some("/etc/mysql/my1.cnf".into()),
                group_suffix: Some(".one".into()),
                ..Defaults::default()
            }
        );
        assert_eq!(setting(&args, "max_connections").unwrap().0, "10");
        let args = parse_command_line(&argv(
            "mysqld --no-defaults --defaults-extra-file=/etc/extra.cnf",
        ));
        assert!(args.defaults.no_defaults);
        assert_eq!(args.defaults.extra_file.as_deref(), Some("/etc/extra.cnf"));
        // After another option it is not a defaults option any more.
        let args = parse_command_line(&argv("mysqld --user=mysql --defaults-file=/etc/late.cnf"));
        assert_eq!(args.defaults, Defaults::default());
    }

    #[test]
    fn option_files_in_the_servers_order() {
        let env = Environment {
            mysql_home: Some("/opt/mysql".into()),
            mariadb_home: Some("/opt/mariadb".into()),
            home: Some("/var/lib/mysql".into()),
            group_suffix: None,
        };
        let paths = |d: &Defaults, flavor| -> Vec<(String, bool)> {
            option_files(d, flavor, &env)
                .unwrap()
                .into_iter()
                .map(|(p, required)| (p.display().to_string(), required))
                .collect()
        };
        let own = |p: &str, required| (p.to_owned(), required);
        assert_eq!(
            paths(&Defaults::default(), Flavor::MySql),
            [
                own("/etc/my.cnf", false),
                own("/etc/mysql/my.cnf", false),
                own("/opt/mysql/my.cnf", false),
                own("/var/lib/mysql/.my.cnf", false)
            ]
        );
        let extra = Defaults {
            extra_file: Some("/etc/extra.cnf".into()),
            ..Defaults::default()
        };
        assert_eq!(
            paths(&extra, Flavor::MariaDb),
            [
                own("/etc/my.cnf", false),
                own("/etc/mysql/my.cnf", false),
                own("/opt/mariadb/my.cnf", false),
                own("/etc/extra.cnf", true),
                own("/var/lib/mysql/.my.cnf", false)
            ]
        );
        let only = Defaults {
            file: Some("/etc/mysql/my1.cnf".into()),
            extra_file: Some("/etc/extra.cnf".into()),
            ..Defaults::default()
        };
        assert_eq!(
            paths(&only, Flavor::MySql),
            [own("/etc/mysql/my1.cnf", true)]
        );
        let none = Defaults {
            no_defaults: true,
            ..Defaults::default()
        };
        assert!(paths(&none, Flavor::MySql).is_empty());
        let relative = Defaults {
            file: Some("my.cnf".into()),
            ..Defaults::default()
        };
        assert!(
            option_files(&relative, Flavor::MySql, &env)
                .unwrap_err()
                .contains("absolute")
        );
    }

    #[test]
    fn groups_each_server_reads() {
        assert_eq!(groups(Flavor::MySql, None), ["mysqld", "server"]);
        assert_eq!(
            groups(Flavor::MySql, Some(&".One".to_owned())),
            ["mysqld", "server", "mysqld.one", "server.one"]
        );
        assert!(groups(Flavor::MariaDb, None).contains(&"mariadb".to_owned()));
        assert!(groups(Flavor::MariaDb, None).contains(&"client-server".to_owned()));
        assert_eq!(Flavor::of(Path::new("/usr/sbin/mariadbd")), Flavor::MariaDb);
        assert_eq!(Flavor::of(Path::new("/usr/sbin/mysqld")), Flavor::MySql);
    }

    #[test]
    fn option_file_lines_as_my_default_reads_them() {
        let text = "\
#
# The MySQL database server configuration file.
;  a comment too
[client]
port\t\t= 3306

[mysqld]
user\t\t= mysql
max_connections        = 500   # more clients
  Max-Connections = \"600\"
datadir = '/var/lib/my sql'
init_connect = 'SET NAMES utf8mb4 # not a comment'
plugin-load-add = \"a\\\\b\\s\\x\"
skip-name-resolve
[ mysqld.one ]
!include /etc/mysql/extra.cnf
!includedir /etc/mysql/conf.d/
";
        let option = |name: &str, value: Option<&str>| Line::Option {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        };
        assert_eq!(
            parse_option_file(text).unwrap(),
            vec![
                (4, Line::Group("client".into())),
                (5, option("port", Some("3306"))),
                (7, Line::Group("mysqld".into())),
                (8, option("user", Some("mysql"))),
                (9, option("max_connections", Some("500"))),
                (10, option("Max-Connections", Some("600"))),
                (11, option("datadir", Some("/var/lib/my sql"))),
                (
                    12,
                    option("init_connect", Some("SET NAMES utf8mb4 # not a comment"))
                ),
                (13, option("plugin-load-add", Some("a\\b \\x"))),
                (14, option("skip-name-resolve", None)),
                (15, Line::Group("mysqld.one".into())),
                (16, Line::Include("/etc/mysql/extra.cnf".into())),
                (17, Line::IncludeDir("/etc/mysql/conf.d/".into())),
            ]
        );
        for bad in ["[mysqld", "!includes /x", "!include", "= 5"] {
            let err = parse_option_file(&format!("[mysqld]\n{bad}\n")).unwrap_err();
            assert!(err.starts_with("line 2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn groups_includes_and_the_last_setting_win() {
        let dir = TempDir::new("mysql-files");
        let main = dir.write(
            "etc/my.cnf",
            "[client]\nmax_connections = 1\n\
             [mysqld]\nmax_connections = 100\n\
             [mysqldump]\n!includedir conf.d\n\
             [mysqld-8.0]\nmax_connections = 2\n",
        );
        dir.write(
            "etc/conf.d/50-server.cnf",
            "[server]\nmax-connections = 200\n",
        );
        let late = dir.write(
            "etc/conf.d/60-tuning.cnf",
            "[mysqld]\n\n# tuned\nloose-max_connections = 1K\n",
        );
        dir.write("etc/conf.d/README", "[mysqld]\nmax_connections = 3\n");
        dir.write("etc/conf.d/10-early.cnf", "[mysqld]\nmax_connections = 4\n");
        let mut files = OptionFiles::new(groups(Flavor::MySql, None));
        files.read_file(&main, false, 0).unwrap();
        let got = &files.settings["max_connections"];
        assert_eq!(got.value, "1K");
        assert_eq!(
            got.origin,
            Origin::File {
                path: late.clone(),
                line: 4
            }
        );
        assert_eq!(got.origin.to_string(), format!("{}:4", late.display()));
        assert_eq!(
            files.files,
            [
                main.clone(),
                dir.0.join("etc/conf.d/10-early.cnf"),
                dir.0.join("etc/conf.d/50-server.cnf"),
                late
            ]
        );
        // A missing default file is fine, a missing !include is not.
        files
            .read_file(&dir.0.join("etc/none.cnf"), false, 0)
            .unwrap();
        let broken = dir.write("etc/broken.cnf", "[mysqld]\n!include missing.cnf\n");
        assert!(
            OptionFiles::new(vec![])
                .read_file(&broken, false, 0)
                .is_err()
        );
        let looped = dir.write("etc/loop.cnf", "!include loop.cnf\n");
        let err = OptionFiles::new(vec![])
            .read_file(&looped, false, 0)
            .unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
        let groupless = dir.write("etc/groupless.cnf", "max_connections = 5\n");
        let err = OptionFiles::new(vec![])
            .read_file(&groupless, false, 0)
            .unwrap_err();
        assert!(err.contains("groupless.cnf:1"), "{err}");
        // MariaDB reads its own groups too.
        let maria = dir.write(
            "etc/maria.cnf",
            "[mysqld]\nmax_connections=10\n[mariadb]\nmax_connections=20\n",
        );
        let mut files = OptionFiles::new(groups(Flavor::MariaDb, None));
        files.read_file(&maria, true, 0).unwrap();
        assert_eq!(files.settings["max_connections"].value, "20");
        let mut files = OptionFiles::new(groups(Flavor::MySql, None));
        files.read_file(&maria, true, 0).unwrap();
        assert_eq!(files.settings["max_connections"].value, "10");
    }

    #[test]
    fn persisted_settings_in_both_versions_of_mysqld_auto_cnf() {
        let v1 = r#"{ "Version" : 1 , "mysql_server" : { "max_connections" : { "Value" : "500" , "Metadata" : { "Timestamp" : 1524060431853446 , "User" : "root" , "Host" : "localhost" } } , "mysql_server_static_options" : { "innodb_log_file_size" : { "Value" : "50331648" , "Metadata" : { "Timestamp" : 1, "User" : "root" , "Host" : "localhost" } } } } }"#;
        assert_eq!(
            parse_persisted(v1, "max_connections"),
            Ok(Some("500".into()))
        );
        let v2 = r#"{"Version": 2, "mysql_static_parse_early_variables": {}, "mysql_dynamic_variables": {"max_connections": {"Value": "800", "Metadata": {"Host": "localhost", "User": "root", "Timestamp": 1700000000000000}}}}"#;
        assert_eq!(
            parse_persisted(v2, "max_connections"),
            Ok(Some("800".into()))
        );
        let other = r#"{"Version": 2, "mysql_dynamic_variables": {"sort_buffer_size": {"Value": "1", "Metadata": {}}}}"#;
        assert_eq!(parse_persisted(other, "max_connections"), Ok(None));
        assert!(parse_persisted("{", "max_connections").is_err());
    }

    #[test]
    fn numbers_with_suffixes_are_clamped_into_range() {
        for (text, want) in [
            ("151", Some(151)),
            (" 500 ", Some(500)),
            ("1K", Some(1024)),
            ("1k", Some(1024)),
            ("2M", Some(100_000)),
            ("0", Some(1)),
            ("-5", Some(1)),
            ("200000", Some(100_000)),
            ("99999999999999999999", None),
            ("10x", None),
            ("0x10", None),
            ("", None),
        ] {
            assert_eq!(parse_number(text, MAX_CONNECTIONS_RANGE), want, "{text:?}");
        }
    }

    fn file_setting(value: &str) -> Setting {
        Setting {
            value: value.into(),
            origin: Origin::File {
                path: "/etc/mysql/mysql.conf.d/mysqld.cnf".into(),
                line: 32,
            },
        }
    }

    #[test]
    fn ordinary_clients_get_max_connections_and_one_more_is_kept() {
        let first = Some(Path::new("/etc/my.cnf"));
        let l = limit(None, Flavor::MySql, Some(1_048_576), first).unwrap();
        assert_eq!((l.name, l.setting, l.max_connections), (NAME, 151, 151));
        assert_eq!(l.source, "compiled-in default");
        assert!(
            l.explanation
                .contains("one more in for an account with CONNECTION_ADMIN or SUPER"),
            "{}",
            l.explanation
        );
        assert!(
            l.remedy
                .starts_with("add `max_connections = 302` under [mysqld] in /etc/my.cnf"),
            "{}",
            l.remedy
        );
        assert!(
            l.remedy.contains("SET PERSIST max_connections = 302"),
            "{}",
            l.remedy
        );

        let s = file_setting("500");
        let l = limit(Some(&s), Flavor::MySql, Some(10_000), first).unwrap();
        assert_eq!((l.setting, l.max_connections), (500, 500));
        assert_eq!(l.source, "/etc/mysql/mysql.conf.d/mysqld.cnf:32");
        assert!(
            l.remedy.starts_with(
                "set `max_connections = 1000` at /etc/mysql/mysql.conf.d/mysqld.cnf:32"
            ),
            "{}",
            l.remedy
        );

        let s = Setting {
            value: "800".into(),
            origin: Origin::CommandLine("--max-connections=800".into()),
        };
        let l = limit(Some(&s), Flavor::MariaDb, Some(1024), first).unwrap();
        assert_eq!((l.setting, l.max_connections), (800, 800));
        assert!(
            l.explanation
                .starts_with("mariadbd max_connections 800 (command line --max-connections=800)"),
            "{}",
            l.explanation
        );
        assert!(
            l.remedy.contains("`SET GLOBAL max_connections = 1600;`"),
            "{}",
            l.remedy
        );

        let s = Setting {
            value: "700".into(),
            origin: Origin::Persisted("/var/lib/mysql/mysqld-auto.cnf".into()),
        };
        let l = limit(Some(&s), Flavor::MySql, None, first).unwrap();
        assert_eq!(l.source, "/var/lib/mysql/mysqld-auto.cnf (SET PERSIST)");
        assert!(
            l.remedy
                .starts_with("`SET PERSIST max_connections = 1400;`"),
            "{}",
            l.remedy
        );

        assert!(
            limit(Some(&file_setting("lots")), Flavor::MySql, None, first)
                .unwrap_err()
                .contains("mysqld.cnf:32")
        );
    }

    #[test]
    fn mysql_lowers_max_connections_to_what_its_fds_allow() {
        // The classic: max_connections 1000 under a 1024-fd limit.
        let l = limit(Some(&file_setting("1000")), Flavor::MySql, Some(1024), None).unwrap();
        assert_eq!((l.setting, l.max_connections), (1000, 214));
        assert!(
            l.explanation.contains("1024 - 810 = 214"),
            "{}",
            l.explanation
        );
        assert!(l.remedy.contains("LimitNOFILE=1810"), "{}", l.remedy);
        // Enough fds: untouched.
        let l = limit(Some(&file_setting("1000")), Flavor::MySql, Some(5000), None).unwrap();
        assert_eq!(l.max_connections, 1000);
    }

    #[test]
    fn the_server_is_the_process_without_a_server_parent() {
        let process = |pid, ppid| ServerProcess {
            pid,
            ppid,
            exe: "/usr/sbin/mysqld".into(),
            cmdline: argv("/usr/sbin/mysqld --no-defaults --max-connections=42"),
            cwd: None,
            listening: vec![],
        };
        // mysqld_safe's mysqld (its parent a shell), and a made-up child;
        // pids no process has, so nothing of this machine is read.
        let (server, child) = (
            process(4_000_000_000, 3_999_999_999),
            process(4_000_000_001, 4_000_000_000),
        );
        let limits = read(&[&child, &server]).unwrap();
        assert_eq!(limits.len(), 1, "{limits:?}");
        assert_eq!(
            (limits[0].setting, limits[0].source.as_str()),
            (42, "command line --max-connections=42")
        );
    }
}
