//! redis's `maxclients`, read from the running server: `CONFIG GET
//! maxclients` over RESP on one of its own ports is the value it applies,
//! after the config file, its includes, the `--maxclients` flag (which wins
//! over the file), `CONFIG SET` since start, and the cut redis makes at
//! start-up when it cannot raise its fd limit to maxclients + 32. The config
//! file is read only to say where the value comes from, and as a fallback
//! when the server will not answer (`NOAUTH`) and its command line is
//! visible (redis rewrites it to `redis-server 127.0.0.1:6379` unless
//! `set-proc-title no`).
//!
//! redis counts every connection it holds as a client (replicas, its master
//! link, Pub/Sub, MONITOR, unix-socket clients, and c1m's own question while
//! it lasts) and refuses the next with `-ERR max number of clients reached`,
//! so at its cap it refuses c1m too: that error says so in its `why`, and
//! the caller keeps the value it read before.

use std::{
    collections::HashMap,
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{AppLimit, AppLimitError, ServerProcess};

const NAME: &str = "redis.maxclients";
/// What redis applies when nothing sets maxclients.
const DEFAULT_MAXCLIENTS: u64 = 10_000;
/// File descriptors redis keeps for itself beyond maxclients
/// (`CONFIG_MIN_RESERVED_FDS`).
const RESERVED_FDS: u64 = 32;
/// For connecting to redis and for all its replies: it answers in
/// microseconds on loopback, and c1m samples every few hundred ms.
const TIMEOUT: Duration = Duration::from_millis(300);
/// In the `why` of the error when redis refused c1m's own connection
/// because it is full; the caller tells it apart by this phrase.
pub const AT_CAP: &str = "max number of clients reached";

/// The limit of each redis server among `processes` (its fork children,
/// saving the RDB or rewriting the AOF, are left out).
pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    let pids: Vec<u32> = processes.iter().map(|p| p.pid).collect();
    processes
        .iter()
        .filter(|p| !pids.contains(&p.ppid))
        .map(|p| read_one(p))
        .collect()
}

fn read_one(p: &ServerProcess) -> Result<AppLimit, AppLimitError> {
    let fail = |why: String| AppLimitError {
        server: "redis",
        pid: p.pid,
        why,
    };
    let nofile = crate::system::process_limits::read_process_limits(p.pid)
        .ok()
        .map(|l| crate::system::process_limits::limit_value(l.max_open_files.soft_limit));
    let command_line = parse_command_line(&p.cmdline);
    let mut failures = Vec::new();
    for addr in addresses_to_ask(p) {
        let answer = match ask(addr) {
            Ok(replies) => interpret(&replies),
            Err(err) => {
                failures.push(format!("{addr}: {err}"));
                continue;
            }
        };
        match answer {
            Answer::Maxclients {
                process_id: Some(other),
                ..
            } if other != p.pid => {
                failures.push(format!("{addr}: answered by another redis (pid {other})"));
            }
            Answer::Maxclients {
                value,
                via,
                config_file,
                ..
            } => {
                let file = config_file
                    .map(PathBuf::from)
                    .or_else(|| command_line.as_ref().and_then(|c| config_path(p, c)));
                let configured = configured(file.as_deref(), command_line.as_ref(), p);
                return Ok(limit_asked(addr, via, value, &configured, nofile));
            }
            Answer::AtCap(text) => {
                return Err(fail(format!(
                    "{AT_CAP}: redis refused c1m's own connection to {addr} with `{text}` \
                     (it is at its maxclients now); keep the value read before"
                )));
            }
            Answer::Refused(text) => failures.push(format!("{addr}: {text}")),
        }
    }
    if failures.is_empty() {
        failures.push("it listens on no TCP address c1m can ask".to_owned());
    }
    let failed = failures.join("; ");
    let Some(command_line) = command_line else {
        return Err(fail(format!(
            "CONFIG GET maxclients failed ({failed}), and its process title ({:?}) hides the \
             command line, so its config file is unknown; run `redis-cli CONFIG GET maxclients` \
             (with -a PASSWORD) to see it, or set `set-proc-title no` so c1m reads the config",
            p.cmdline.join(" ")
        )));
    };
    if command_line.from_stdin {
        return Err(fail(format!(
            "CONFIG GET maxclients failed ({failed}), and redis read its config from stdin"
        )));
    }
    let file = config_path(p, &command_line);
    let configured = configured(file.as_deref(), Some(&command_line), p);
    match configured {
        Ok(configured) => Ok(limit_from_config(&failed, &configured, nofile)),
        Err(err) => Err(fail(format!(
            "CONFIG GET maxclients failed ({failed}), and {err}"
        ))),
    }
}

/// The target's addresses as redis can be reached on them (a wildcard
/// listener through loopback), the ones in the process title first.
fn addresses_to_ask(p: &ServerProcess) -> Vec<SocketAddr> {
    let title = p.cmdline.join(" ");
    let in_title = |addr: &SocketAddr| {
        let port = format!(":{}", addr.port());
        title.split_whitespace().any(|word| word.ends_with(&port))
    };
    let mut addrs: Vec<SocketAddr> = p
        .listening
        .iter()
        .map(|addr| match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
            IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
            _ => *addr,
        })
        .collect();
    addrs.sort_by_key(|addr| !in_title(addr));
    let mut seen = Vec::new();
    addrs.retain(|addr| {
        let new = !seen.contains(addr);
        seen.push(*addr);
        new
    });
    addrs
}

#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("connection failed before redis answered: {0}")]
    Io(io::Error),
    /// redis closes a connection it refuses at its cap without reading it,
    /// which resets it if c1m's request had arrived.
    #[error("reset before redis answered (as when it refuses a client at its maxclients)")]
    Reset,
    #[error("no reply within {TIMEOUT:?}")]
    Timeout,
    #[error("closed before redis answered")]
    Closed,
    #[error("the reply is not RESP (byte {0:#04x}; a TLS port?)")]
    NotResp(u8),
}

/// `CONFIG GET maxclients`, `INFO server` (its pid and config file) and
/// `INFO clients` (maxclients too, when CONFIG is renamed away), in one
/// write; the replies that came before the server closed or the deadline.
fn ask(addr: SocketAddr) -> Result<Vec<Reply>, AskError> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(AskError::Connect)?;
    let _ = stream.set_nodelay(true);
    let mut request = command(&["CONFIG", "GET", "maxclients"]);
    request.extend(command(&["INFO", "server"]));
    request.extend(command(&["INFO", "clients"]));
    // At its cap redis writes its refusal and closes without reading: a
    // failed write still leaves that line to read.
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let wrote = stream.write_all(&request);
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while replies.len() < 3 {
        match parse_reply(&buf[..]) {
            Ok(Some((reply, used))) => {
                replies.push(reply);
                buf.drain(..used);
                continue;
            }
            Ok(None) => {}
            Err(NotResp(byte)) => return Err(AskError::NotResp(byte)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return partial(replies, AskError::Timeout);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => return partial(replies, wrote.err().map_or(AskError::Closed, AskError::Io)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return partial(replies, AskError::Timeout);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return partial(replies, AskError::Reset);
            }
            Err(err) => return partial(replies, AskError::Io(err)),
        }
    }
    Ok(replies)
}

fn partial(replies: Vec<Reply>, err: AskError) -> Result<Vec<Reply>, AskError> {
    if replies.is_empty() {
        Err(err)
    } else {
        Ok(replies)
    }
}

/// What a redis answered to [`ask`].
#[derive(Debug, PartialEq)]
enum Answer {
    Maxclients {
        value: u64,
        via: &'static str,
        process_id: Option<u32>,
        config_file: Option<String>,
    },
    /// It is full and refused c1m's connection.
    AtCap(String),
    /// It answered without the value (`NOAUTH`, `NOPERM`, CONFIG and INFO
    /// renamed away).
    Refused(String),
}

fn interpret(replies: &[Reply]) -> Answer {
    let errors: Vec<&str> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Error(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    if let Some(full) = errors.iter().find(|e| e.contains("max number of clients")) {
        return Answer::AtCap((*full).to_owned());
    }
    let info = |i: usize| match replies.get(i) {
        Some(Reply::Bulk(Some(text))) => info_fields(&String::from_utf8_lossy(text)),
        _ => HashMap::new(),
    };
    let (server, clients) = (info(1), info(2));
    let from_config = match replies.first() {
        Some(Reply::Array(Some(pair))) => match &pair[..] {
            [Reply::Bulk(Some(name)), Reply::Bulk(Some(value))]
                if name.eq_ignore_ascii_case(b"maxclients") =>
            {
                std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            _ => None,
        },
        _ => None,
    };
    let from_info = clients.get("maxclients").and_then(|v| v.parse().ok());
    let (value, via) = match (from_config, from_info) {
        (Some(value), _) => (value, "CONFIG GET maxclients"),
        (None, Some(value)) => (value, "INFO clients"),
        (None, None) if errors.is_empty() => {
            return Answer::Refused("no maxclients in its replies".to_owned());
        }
        (None, None) => {
            let mut errors = errors;
            errors.dedup();
            return Answer::Refused(format!("`{}`", errors.join("`, `")));
        }
    };
    Answer::Maxclients {
        value,
        via,
        process_id: server.get("process_id").and_then(|v| v.parse().ok()),
        config_file: server.get("config_file").filter(|f| !f.is_empty()).cloned(),
    }
}

/// `key:value` lines of an INFO reply.
fn info_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.trim_end().split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A reply that is not RESP: its first byte.
#[derive(Debug, PartialEq)]
struct NotResp(u8);

/// Bulk strings and lines longer than this are not what c1m asked for.
const MAX_REPLY_BYTES: usize = 1 << 20;

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// The first complete reply in `buf` and how many bytes it took; `None`
/// while more bytes are needed.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, NotResp> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], start: usize, depth: u8) -> Result<Option<(Reply, usize)>, NotResp> {
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    let not_resp = NotResp(kind);
    if !b"+-:$*".contains(&kind) {
        return Err(not_resp);
    }
    let Some(eol) = buf[start..].windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() - start > MAX_REPLY_BYTES {
            Err(not_resp)
        } else {
            Ok(None)
        };
    };
    let line = &buf[start + 1..start + eol];
    let next = start + eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || {
        std::str::from_utf8(line)
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or(NotResp(kind))
    };
    let reply = match kind {
        b'+' => (Reply::Status(text()), next),
        b'-' => (Reply::Error(text()), next),
        b':' => (Reply::Integer(number()?), next),
        b'$' => match usize::try_from(number()?) {
            Err(_) => (Reply::Bulk(None), next),
            Ok(len) if len > MAX_REPLY_BYTES => return Err(not_resp),
            Ok(len) if buf.len() < next + len + 2 => return Ok(None),
            Ok(len) if &buf[next + len..next + len + 2] != b"\r\n" => return Err(not_resp),
            Ok(len) => (
                Reply::Bulk(Some(buf[next..next + len].to_vec())),
                next + len + 2,
            ),
        },
        b'*' if depth < 4 => match usize::try_from(number()?) {
            Err(_) => (Reply::Array(None), next),
            Ok(count) => {
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..count {
                    let Some((item, end)) = parse_at(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = end;
                }
                (Reply::Array(Some(items)), at)
            }
        },
        _ => return Err(not_resp),
    };
    Ok(Some(reply))
}

/// What an unrewritten command line says (`redis-server [FILE] [--name
/// value ...]`); options are appended to the file's text, so they win.
#[derive(Debug, Default, PartialEq)]
struct CommandLine {
    config_file: Option<String>,
    from_stdin: bool,
    /// Each `--name value...` as the config line it becomes.
    options: Vec<Vec<String>>,
}

/// `None` when redis replaced its command line with its process title
/// (`redis-server 127.0.0.1:6379`: one string with spaces).
fn parse_command_line(args: &[String]) -> Option<CommandLine> {
    if let [title] = args
        && title.contains(' ')
    {
        return None;
    }
    let mut parsed = CommandLine::default();
    let mut rest = args.get(1..).unwrap_or_default();
    if let [first, tail @ ..] = rest
        && !first.starts_with('-')
    {
        parsed.config_file = Some(first.clone());
        rest = tail;
    }
    let mut named = true;
    for (i, arg) in rest.iter().enumerate() {
        let next_is_name = rest.get(i + 1).is_some_and(|n| n.starts_with("--"));
        if arg == "-" && (i == rest.len() - 1 || parsed.config_file.is_none() && i == 0) {
            parsed.from_stdin = true;
        } else if named && arg.starts_with("--") {
            let words = split_args(&arg[2..]).unwrap_or_default();
            // `--save` with no value before another option means `save ""`.
            named = words.len() > 1 || (words.len() == 1 && words[0] == "save" && next_is_name);
            parsed.options.push(words);
        } else if let Some(line) = parsed.options.last_mut() {
            line.push(arg.clone());
            named = true;
        }
    }
    Some(parsed)
}

/// The config file named on the command line, as an absolute path (relative
/// to the process's directory, which is its `dir` once started).
fn config_path(p: &ServerProcess, command_line: &CommandLine) -> Option<PathBuf> {
    let file = Path::new(command_line.config_file.as_deref()?);
    match &p.cwd {
        Some(cwd) if file.is_relative() => Some(cwd.join(file)),
        _ => Some(file.to_owned()),
    }
}

/// Where a configured maxclients comes from.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    File { path: PathBuf, line: usize },
    Flag,
}

#[derive(Debug, Clone, PartialEq)]
struct Setting {
    value: u64,
    origin: Origin,
}

/// What the config file and the command line set, as far as c1m can see.
#[derive(Debug, Default, PartialEq)]
struct Configured {
    /// The last maxclients in the file (includes followed) or the flags.
    setting: Option<Setting>,
    file: Option<PathBuf>,
    /// Whether the command line was visible (else a flag may hide there).
    flags_known: bool,
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("cannot read {path}: {source}; run c1m-daemon as root")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: `maxclients {value}` is not a count from 1 to 4294967295")]
    BadValue {
        path: PathBuf,
        line: usize,
        value: String,
    },
    #[error("includes nest deeper than 8 files at {0}")]
    TooDeep(PathBuf),
}

fn configured(
    file: Option<&Path>,
    command_line: Option<&CommandLine>,
    p: &ServerProcess,
) -> Result<Configured, ConfigError> {
    let mut found = Configured {
        file: file.map(Path::to_owned),
        flags_known: command_line.is_some(),
        ..Configured::default()
    };
    if let Some(file) = file {
        let mut read = |pattern: &Path| read_files(pattern, p.cwd.as_deref());
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Unreadable {
            path: file.to_owned(),
            source,
        })?;
        found.setting = maxclients_in_config(file, &text, &mut read, 0)?;
    }
    let flag = command_line.and_then(|c| {
        c.options
            .iter()
            .rfind(|line| line.len() == 2 && line[0].eq_ignore_ascii_case("maxclients"))
    });
    if let Some(line) = flag {
        let value = parse_maxclients(&line[1]).ok_or_else(|| ConfigError::BadValue {
            path: "the command line".into(),
            line: 0,
            value: line[1].clone(),
        })?;
        found.setting = Some(Setting {
            value,
            origin: Origin::Flag,
        });
    }
    Ok(found)
}

/// The files an `include` names (redis expands `*`, `?` and `[` in the
/// file name), sorted like glob(3); relative to the process's directory.
fn read_files(pattern: &Path, cwd: Option<&Path>) -> Result<Vec<(PathBuf, String)>, ConfigError> {
    let pattern = match cwd {
        Some(cwd) if pattern.is_relative() => cwd.join(pattern),
        _ => pattern.to_owned(),
    };
    let unreadable = |path: &Path, source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let paths = if name.contains(['*', '?', '[']) {
        let dir = pattern.parent().unwrap_or(Path::new("/"));
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| unreadable(dir, e))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|file| !file.starts_with('.') && glob_match(name, file))
            .map(|file| dir.join(file))
            .collect();
        paths.sort();
        paths
    } else {
        vec![pattern.clone()]
    };
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            Ok((path, text))
        })
        .collect()
}

/// A file name against a glob of `*`, `?` and `[...]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn at(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|skip| at(&p[1..], &n[skip..])),
            Some('?') => !n.is_empty() && at(&p[1..], &n[1..]),
            Some('[') => match (p.iter().position(|&c| c == ']'), n.first()) {
                (Some(end), Some(c)) if end > 1 => {
                    let set = &p[1..end];
                    let (negate, set) = match set.first() {
                        Some('!' | '^') => (true, &set[1..]),
                        _ => (false, set),
                    };
                    let mut hit = false;
                    let mut i = 0;
                    while i < set.len() {
                        if i + 2 < set.len() && set[i + 1] == '-' {
                            hit |= (set[i]..=set[i + 2]).contains(c);
                            i += 3;
                        } else {
                            hit |= set[i] == *c;
                            i += 1;
                        }
                    }
                    hit != negate && at(&p[end + 1..], &n[1..])
                }
                _ => n.first() == Some(&'[') && at(&p[1..], &n[1..]),
            },
            Some(c) => n.first() == Some(c) && at(&p[1..], &n[1..]),
        }
    }
    at(&p, &n)
}

type ReadFiles<'a> = dyn FnMut(&Path) -> Result<Vec<(PathBuf, String)>, ConfigError> + 'a;

/// The last `maxclients` in a redis config text, following `include`s in
/// place (later lines win, as redis applies them in order).
fn maxclients_in_config(
    path: &Path,
    text: &str,
    read: &mut ReadFiles<'_>,
    depth: u8,
) -> Result<Option<Setting>, ConfigError> {
    if depth > 8 {
        return Err(ConfigError::TooDeep(path.to_owned()));
    }
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_matches([' ', '\t', '\r', '\n']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // redis would not have started on an unbalanced quote.
        let Some(words) = split_args(line) else {
            continue;
        };
        match &words[..] {
            [name, value] if name.eq_ignore_ascii_case("maxclients") => {
                let value = parse_maxclients(value).ok_or_else(|| ConfigError::BadValue {
                    path: path.to_owned(),
                    line: i + 1,
                    value: value.clone(),
                })?;
                let origin = Origin::File {
                    path: path.to_owned(),
                    line: i + 1,
                };
                found = Some(Setting { value, origin });
            }
            [name, pattern] if name.eq_ignore_ascii_case("include") => {
                for (included, text) in read(Path::new(pattern))? {
                    if let Some(setting) = maxclients_in_config(&included, &text, read, depth + 1)?
                    {
                        found = Some(setting);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// maxclients takes a plain integer from 1 to UINT_MAX (no units).
fn parse_maxclients(value: &str) -> Option<u64> {
    let n: i64 = value.parse().ok()?;
    (1..=i64::from(u32::MAX)).contains(&n).then_some(n as u64)
}

/// A config line's words as redis splits them (`sdssplitargs`): blanks
/// separate, "double quotes" take `\n \r \t \b \a \\ \" \xHH` escapes,
/// 'single quotes' take `\'`; `None` on an unbalanced quote.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match (chars.next()?, first) {
                    ('\\', '"') => match chars.next()? {
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        'b' => word.push('\u{8}'),
                        'a' => word.push('\u{7}'),
                        'x' => {
                            let hex: String = chars.by_ref().take(2).collect();
                            word.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                        }
                        other => word.push(other),
                    },
                    ('\\', '\'') if chars.peek() == Some(&'\'') => word.push(chars.next()?),
                    (c, quote) if c == quote => break,
                    (c, _) => word.push(c),
                }
            }
            // A closing quote must end the word.
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return None;
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word);
    }
}

/// Where the value redis applies comes from, in words, and whether redis
/// lowered it at start-up to fit its fd limit.
fn origin_words(effective: u64, c: &Configured, nofile: Option<u64>) -> (String, Option<String>) {
    let fits_fds = nofile == Some(effective + RESERVED_FDS);
    let lowered = |from: u64| {
        format!(
            "; redis lowered it from {from} at start-up because it could not raise its fd \
             limit to {} (maxclients + 32), so nofile is {}",
            from + RESERVED_FDS,
            effective + RESERVED_FDS
        )
    };
    let file = c.file.as_ref().map_or("no config file".to_owned(), |f| {
        format!("none in {}", f.display())
    });
    match &c.setting {
        Some(Setting { value, origin }) => {
            let said = match origin {
                Origin::File { path, line } => {
                    format!("`maxclients {value}` at {}:{line}", path.display())
                }
                Origin::Flag => format!("`--maxclients {value}` on the command line"),
            };
            if *value == effective {
                (format!("set by {said}"), None)
            } else if *value > effective && fits_fds {
                (format!("set by {said}"), Some(lowered(*value)))
            } else if c.flags_known {
                (format!("{said}, changed since start by CONFIG SET"), None)
            } else {
                let by = "by --maxclients on its command line (hidden by its process title) or CONFIG SET";
                (format!("{said}, overridden {by}"), None)
            }
        }
        None if effective == DEFAULT_MAXCLIENTS => {
            let hidden = if c.flags_known {
                ""
            } else {
                " or --maxclients"
            };
            (format!("the default 10000{hidden} ({file})"), None)
        }
        None if c.flags_known && effective < DEFAULT_MAXCLIENTS && fits_fds => (
            format!("the default 10000 ({file}, no flag)"),
            Some(lowered(DEFAULT_MAXCLIENTS)),
        ),
        None if c.flags_known => (format!("set by CONFIG SET since start ({file})"), None),
        None => {
            let or_lowered = if effective < DEFAULT_MAXCLIENTS && fits_fds {
                ", or the default 10000 lowered to fit its fd limit"
            } else {
                ""
            };
            let by = "--maxclients (its process title hides its command line) or CONFIG SET";
            (format!("set by {by}{or_lowered} ({file})"), None)
        }
    }
}

/// What redis counts against maxclients, for `explanation`.
fn counts(effective: u64) -> String {
    format!(
        "redis refuses the next connection with `-ERR max number of clients reached` once \
         maxclients {effective} are open, counting every one: clients, replicas, its own link to \
         a master, Pub/Sub and MONITOR clients, unix-socket clients, c1m's own CONFIG GET while \
         it lasts, and in cluster mode 2 per other node"
    )
}

fn remedy(effective: u64, addr: Option<SocketAddr>, c: &Configured) -> String {
    let n = effective.saturating_mul(2).max(effective + 1);
    let on = addr.map_or(String::new(), |a| format!(" on {a}"));
    let live = format!(
        "`CONFIG SET maxclients {n}`{on} applies it live (redis raises its own fd limit to {}, \
         or refuses if it may not: raise `ulimit -n` / systemd `LimitNOFILE=` first)",
        n + RESERVED_FDS
    );
    let keep = match (&c.setting, &c.file) {
        (
            Some(Setting {
                origin: Origin::Flag,
                ..
            }),
            _,
        ) => {
            format!("change `--maxclients {n}` on its command line (it wins over the config file)")
        }
        (
            Some(Setting {
                origin: Origin::File { path, line },
                ..
            }),
            _,
        ) => {
            format!("set `maxclients {n}` at {}:{line}", path.display())
        }
        (None, Some(file)) => format!("add `maxclients {n}` to {}", file.display()),
        (None, None) => format!("set `maxclients {n}` in redis.conf or `--maxclients {n}`"),
    };
    format!("{live}; {keep} so a restart keeps it")
}

fn limit_asked(
    addr: SocketAddr,
    via: &str,
    effective: u64,
    configured: &Result<Configured, ConfigError>,
    nofile: Option<u64>,
) -> AppLimit {
    let unknown = Configured::default();
    let (c, unread) = match configured {
        Ok(c) => (c, String::new()),
        Err(err) => (&unknown, format!("; {err}")),
    };
    let (origin, lowered) = if unread.is_empty() {
        origin_words(effective, c, nofile)
    } else {
        ("where it is set is unknown".to_owned(), None)
    };
    AppLimit {
        name: NAME,
        setting: effective,
        max_connections: effective,
        source: format!("{via} on {addr} ({origin}{unread})"),
        explanation: format!("{}{}", counts(effective), lowered.unwrap_or_default()),
        remedy: remedy(effective, Some(addr), c),
    }
}

/// From the config file and flags, when the server would not tell: what
/// they set, cut to fit the fd limit as redis does at start-up.
fn limit_from_config(failed: &str, c: &Configured, nofile: Option<u64>) -> AppLimit {
    let configured = c.setting.as_ref().map_or(DEFAULT_MAXCLIENTS, |s| s.value);
    let effective = match nofile {
        Some(nofile) if nofile < configured + RESERVED_FDS => nofile.saturating_sub(RESERVED_FDS),
        _ => configured,
    };
    let (origin, lowered) = match &c.setting {
        None => (
            "compiled-in default 10000, nothing sets it".to_owned(),
            (effective < configured).then(|| {
                format!(
                    "; redis lowers it to nofile {} - 32 at start-up",
                    effective + 32
                )
            }),
        ),
        Some(_) => origin_words(effective, c, nofile),
    };
    AppLimit {
        name: NAME,
        setting: effective,
        max_connections: effective,
        source: format!("{origin}, read from its config because CONFIG GET failed: {failed}"),
        explanation: format!("{}{}", counts(effective), lowered.unwrap_or_default()),
        remedy: remedy(effective, None, c),
    }
}

/// For the fuzz targets (`parsers.rs`): the parsers of bytes the server
/// or its admin wrote (RESP replies, config lines and files, the command
/// line); how many accepted them.
pub fn parse_untrusted_text(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let mut no_includes = |_: &Path| Ok(Vec::new());
    let mut accepted = usize::from(parse_reply(bytes).is_ok_and(|r| r.is_some()));
    accepted += text
        .lines()
        .filter(|l| split_args(l).is_some())
        .count()
        .min(1);
    accepted += usize::from(
        maxclients_in_config(Path::new("/fuzz/redis.conf"), &text, &mut no_includes, 0)
            .is_ok_and(|s| s.is_some()),
    );
    accepted += usize::from(parse_command_line(&words).is_some());
    accepted += usize::from(parse_maxclients(&text).is_some());
    accepted
}

#[cfg(test)]
mod tests {
    use super::{
        super::testing::{self, TempDir},
        *,
    };

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    const INFO_SERVER: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\
        process_id:4242\r\ntcp_port:6379\r\nexecutable:/usr/bin/redis-server\r\n\
        config_file:/etc/redis/redis.conf\r\nio_threads_active:0\r\n";
    const INFO_CLIENTS: &str = "# Clients\r\nconnected_clients:1\r\ncluster_connections:0\r\n\
        maxclients:4064\r\nblocked_clients:0\r\n";

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(
            command(&["CONFIG", "GET", "maxclients"]),
            b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nmaxclients\r\n"
        );
    }

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        let wire = b"*2\r\n$10\r\nmaxclients\r\n$4\r\n4064\r\n-NOAUTH Authentication required.\r\n";
        let (first, used) = parse_reply(wire).unwrap().unwrap();
        assert_eq!(
            first,
            Reply::Array(Some(vec![bulk("maxclients"), bulk("4064")]))
        );
        assert_eq!(
            parse_reply(&wire[used..]).unwrap().unwrap().0,
            Reply::Error("NOAUTH Authentication required.".into())
        );
        for cut in 0..used {
            assert_eq!(parse_reply(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_reply(b"$-1\r\n:12\r\n").unwrap().unwrap(),
            (Reply::Bulk(None), 5)
        );
        assert_eq!(
            parse_reply(b"+OK\r\n").unwrap().unwrap().0,
            Reply::Status("OK".into())
        );
        assert_eq!(
            parse_reply(b":-3\r\n").unwrap().unwrap().0,
            Reply::Integer(-3)
        );
        // An HTTP server or a TLS alert is not redis.
        assert_eq!(
            parse_reply(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(NotResp(b'H'))
        );
        assert_eq!(
            parse_reply(b"\x15\x03\x03\x00\x02\x02\x32"),
            Err(NotResp(0x15))
        );
        assert_eq!(parse_reply(b"$4\r\nabcdXY"), Err(NotResp(b'$')));
        assert_eq!(parse_reply(b"*x\r\n"), Err(NotResp(b'*')));
    }

    #[test]
    fn answers_say_the_value_the_cap_or_why_not() {
        let config = Reply::Array(Some(vec![bulk("maxclients"), bulk("4064")]));
        assert_eq!(
            interpret(&[config, bulk(INFO_SERVER), bulk(INFO_CLIENTS)]),
            Answer::Maxclients {
                value: 4064,
                via: "CONFIG GET maxclients",
                process_id: Some(4242),
                config_file: Some("/etc/redis/redis.conf".into()),
            }
        );
        // CONFIG renamed away (`rename-command CONFIG ""`): INFO still says.
        let renamed = Reply::Error(
            "ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxclients' ".into(),
        );
        assert_eq!(
            interpret(&[renamed, bulk(INFO_SERVER), bulk(INFO_CLIENTS)]),
            Answer::Maxclients {
                value: 4064,
                via: "INFO clients",
                process_id: Some(4242),
                config_file: Some("/etc/redis/redis.conf".into()),
            }
        );
        let noauth = Reply::Error("NOAUTH Authentication required.".into());
        assert_eq!(
            interpret(&[noauth.clone(), noauth.clone(), noauth]),
            Answer::Refused("`NOAUTH Authentication required.`".into())
        );
        // At its cap redis writes one line and closes; in cluster mode it
        // words it differently.
        for full in [
            "ERR max number of clients reached",
            "ERR max number of clients + cluster connections reached",
        ] {
            assert_eq!(
                interpret(&[Reply::Error(full.into())]),
                Answer::AtCap(full.into())
            );
        }
        assert_eq!(
            interpret(&[Reply::Array(Some(vec![]))]),
            Answer::Refused("no maxclients in its replies".into())
        );
    }

    #[test]
    fn config_lines_split_like_redis() {
        let words = |line: &str| split_args(line).unwrap();
        assert_eq!(words("  maxclients   500 "), ["maxclients", "500"]);
        assert_eq!(
            words(r#"include "/etc/redis/my conf.d/*.conf""#),
            ["include", "/etc/redis/my conf.d/*.conf"]
        );
        assert_eq!(words(r#"x "a\tb\x41\"" 'it\'s'"#), ["x", "a\tbA\"", "it's"]);
        assert_eq!(words(r#"save """#), ["save", ""]);
        assert_eq!(split_args(r#"maxclients "500"#), None);
        assert_eq!(split_args(r#"maxclients "500"x"#), None);
    }

    fn no_includes(path: &Path) -> Result<Vec<(PathBuf, String)>, ConfigError> {
        panic!("unexpected include of {}", path.display())
    }

    #[test]
    fn the_last_maxclients_wins_across_includes() {
        let main = "# Redis configuration file example.\n\
            #\n\
            # maxclients 10000\n\
            bind 127.0.0.1 -::1\n\
            port 6379\n\
            MaxClients 3000\n\
            include /etc/redis/conf.d/*.conf\n\
            \t  # tuned below\n\
            requirepass \"p w\"\n";
        let mut read = |pattern: &Path| {
            assert_eq!(pattern, Path::new("/etc/redis/conf.d/*.conf"));
            Ok(vec![
                (
                    "/etc/redis/conf.d/10-a.conf".into(),
                    "maxclients 4000\r\n".to_owned(),
                ),
                (
                    "/etc/redis/conf.d/20-b.conf".into(),
                    "timeout 0\n".to_owned(),
                ),
            ])
        };
        let setting = maxclients_in_config(Path::new("/etc/redis/redis.conf"), main, &mut read, 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            setting,
            Setting {
                value: 4000,
                origin: Origin::File {
                    path: "/etc/redis/conf.d/10-a.conf".into(),
                    line: 1
                }
            }
        );
        let after = format!("{main}maxclients \"128\"\n");
        let setting = maxclients_in_config(Path::new("/r.conf"), &after, &mut read, 0)
            .unwrap()
            .unwrap();
        assert_eq!(setting.value, 128);
        assert_eq!(
            setting.origin,
            Origin::File {
                path: "/r.conf".into(),
                line: 10
            }
        );
        let none = maxclients_in_config(
            Path::new("/r.conf"),
            "# maxclients 5\n",
            &mut no_includes,
            0,
        );
        assert_eq!(none.unwrap(), None);
        for bad in ["maxclients 0", "maxclients 10k", "maxclients 4294967296"] {
            assert!(matches!(
                maxclients_in_config(Path::new("/r.conf"), bad, &mut no_includes, 0),
                Err(ConfigError::BadValue { line: 1, .. })
            ));
        }
    }

    #[test]
    fn command_lines_give_the_file_and_the_flags_unless_retitled() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_command_line(&args(&["/usr/bin/redis-server 127.0.0.1:6379"])),
            None
        );
        let parsed = parse_command_line(&args(&[
            "redis-server",
            "/etc/redis/redis.conf",
            "--save",
            "--maxclients",
            "50",
            "--bind",
            "127.0.0.1",
            "::1",
            "--maxclients 60",
        ]))
        .unwrap();
        assert_eq!(parsed.config_file.as_deref(), Some("/etc/redis/redis.conf"));
        assert_eq!(
            parsed.options,
            [
                vec!["save"],
                vec!["maxclients", "50"],
                vec!["bind", "127.0.0.1", "::1"],
                vec!["maxclients", "60"]
            ]
        );
        let stdin = parse_command_line(&args(&["redis-server", "-", "--port", "1"])).unwrap();
        assert!(stdin.from_stdin && stdin.config_file.is_none());
        assert_eq!(
            parse_command_line(&args(&["redis-server"])).unwrap(),
            CommandLine::default()
        );
    }

    #[test]
    fn include_globs_match_like_glob3() {
        assert!(glob_match("*.conf", "10-a.conf"));
        assert!(!glob_match("*.conf", "10-a.conf.bak"));
        assert!(glob_match("[0-9]?-*.conf", "10-a.conf"));
        assert!(!glob_match("[!0-9]*", "10-a.conf"));
        assert!(glob_match("redis.conf", "redis.conf"));
    }

    #[test]
    fn wildcard_listeners_are_asked_on_loopback_the_titled_port_first() {
        let p = ServerProcess {
            pid: 1,
            ppid: 0,
            exe: "/usr/bin/redis-server".into(),
            cmdline: vec!["/usr/bin/redis-server *:6380".into()],
            cwd: None,
            listening: vec![
                "0.0.0.0:26379".parse().unwrap(),
                "0.0.0.0:6380".parse().unwrap(),
                "[::]:6380".parse().unwrap(),
                "127.0.0.1:6380".parse().unwrap(),
            ],
        };
        let addrs: Vec<String> = addresses_to_ask(&p)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, ["127.0.0.1:6380", "[::1]:6380", "127.0.0.1:26379"]);
    }

    fn in_file(value: u64, flags_known: bool) -> Configured {
        Configured {
            setting: Some(Setting {
                value,
                origin: Origin::File {
                    path: "/etc/redis/redis.conf".into(),
                    line: 12,
                },
            }),
            file: Some("/etc/redis/redis.conf".into()),
            flags_known,
        }
    }

    #[test]
    fn the_origin_says_where_and_whether_the_fd_limit_cut_it() {
        let (origin, cut) = origin_words(3000, &in_file(3000, false), Some(20000));
        assert_eq!(
            origin,
            "set by `maxclients 3000` at /etc/redis/redis.conf:12"
        );
        assert_eq!(cut, None);
        let (_, cut) = origin_words(992, &in_file(3000, false), Some(1024));
        assert!(cut.unwrap().contains(
            "lowered it from 3000 at start-up because it could not raise its fd limit to 3032"
        ),);
        let (origin, _) = origin_words(500, &in_file(3000, true), Some(20000));
        assert!(
            origin.contains("changed since start by CONFIG SET"),
            "{origin}"
        );
        let (origin, _) = origin_words(50, &Configured::default(), Some(20000));
        assert!(
            origin.starts_with("set by --maxclients (its process title hides"),
            "{origin}"
        );
        let defaults = Configured {
            flags_known: true,
            ..Configured::default()
        };
        let (origin, cut) = origin_words(10_000, &defaults, Some(10_032));
        assert_eq!(
            (origin.as_str(), cut),
            ("the default 10000 (no config file)", None)
        );
        let (_, cut) = origin_words(4064, &defaults, Some(4096));
        assert!(cut.unwrap().contains("lowered it from 10000"));
    }

    #[test]
    fn the_config_fallback_cuts_to_the_fd_limit_as_redis_does() {
        let limit = limit_from_config("127.0.0.1:6379: `NOAUTH`", &in_file(3000, true), Some(1024));
        assert_eq!((limit.setting, limit.max_connections), (992, 992));
        assert!(
            limit.source.contains("/etc/redis/redis.conf:12"),
            "{}",
            limit.source
        );
        assert!(limit.source.contains("NOAUTH"), "{}", limit.source);
        assert!(
            limit
                .remedy
                .contains("set `maxclients 1984` at /etc/redis/redis.conf:12")
        );
        let none = Configured {
            flags_known: true,
            ..Configured::default()
        };
        let limit = limit_from_config("x", &none, Some(1 << 20));
        assert_eq!(limit.max_connections, 10_000);
        assert!(limit.source.starts_with("compiled-in default 10000"));
    }

    // The real server.

    const REDIS: &str = "/usr/bin/redis-server";

    /// A redis started for one test, killed by pid and its directory
    /// removed when dropped.
    struct TestRedis {
        child: std::process::Child,
        dir: TempDir,
        addr: SocketAddr,
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            testing::stop(&mut self.child, None, &[]);
        }
    }

    impl TestRedis {
        fn processes(&self) -> Vec<ServerProcess> {
            super::super::server_processes(&[self.child.id()], &[self.addr])
        }

        fn read(&self) -> Result<Vec<AppLimit>, AppLimitError> {
            let processes = self.processes();
            assert_eq!(processes.len(), 1, "redis is gone");
            read(&processes.iter().collect::<Vec<_>>())
        }
    }

    fn redis_present(test: &str) -> bool {
        if Path::new(REDIS).exists() {
            return true;
        }
        testing::skip(&format!("{test}: no {REDIS} (apt install redis-server)"));
        false
    }

    /// redis on a free loopback port: `config` (written to redis.conf in
    /// its directory, `@DIR` replaced) first when given, then `flags`.
    /// With `nofile`, under that fd limit, soft and hard, without
    /// CAP_SYS_RESOURCE (which would let root raise it).
    fn start(
        config: Option<&str>,
        files: &[(&str, &str)],
        flags: &[&str],
        nofile: Option<u64>,
    ) -> TestRedis {
        let port = testing::free_port();
        let temp = TempDir::new("redis");
        let dir = temp.0.clone();
        let dir_text = dir.to_str().unwrap();
        for (name, text) in files {
            temp.write(name, &text.replace("@DIR", dir_text));
        }
        let mut command = std::process::Command::new(REDIS);
        if let Some(config) = config {
            command.arg(temp.write("redis.conf", &config.replace("@DIR", dir_text)));
        }
        if let Some(nofile) = nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: only prctl and setrlimit, async-signal-safe, between
            // fork and exec.
            unsafe {
                command.pre_exec(move || {
                    // CAP_SYS_RESOURCE is capability 24 (linux/capability.h).
                    libc::prctl(libc::PR_CAPBSET_DROP, 24, 0, 0, 0);
                    let limit = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", dir_text, "--logfile"])
            .arg(dir.join("redis.log"))
            .args(flags)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let redis = TestRedis {
            child,
            dir: temp,
            addr: ([127, 0, 0, 1], port).into(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(redis.addr).is_none() {
            assert!(
                Instant::now() < deadline,
                "redis did not start: see its log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Connect and PING: the first reply line (`+PONG`, `-NOAUTH ...`, or
    /// the refusal at the cap), with the connection.
    fn ping(addr: SocketAddr) -> Option<(String, TcpStream)> {
        let mut stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let _ = stream.write_all(b"PING\r\n");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
        Some((String::from_utf8_lossy(&line).trim_end().to_owned(), stream))
    }

    /// Clients held open until redis refuses one: how many it accepts.
    fn measure(addr: SocketAddr) -> Vec<TcpStream> {
        let mut held = Vec::new();
        loop {
            let (line, stream) = ping(addr).expect("connecting to redis");
            match line.as_str() {
                "+PONG" => held.push(stream),
                _ if line.contains(AT_CAP) => return held,
                _ => panic!("redis answered {line:?} after {} clients", held.len()),
            }
            assert!(held.len() < 5000, "redis never refused");
        }
    }

    #[test]
    fn a_real_redis_allows_exactly_maxclients_and_refuses_c1m_at_its_cap() {
        if !redis_present("redis maxclients") {
            return;
        }
        let redis = start(None, &[], &["--maxclients", "50"], None);
        let processes = redis.processes();
        // Its title hides the flags.
        assert_eq!(processes[0].cmdline, [format!("{REDIS} {}", redis.addr)]);
        let limits = redis.read().unwrap();
        let limit = &limits[0];
        assert_eq!(
            (limit.name, limit.setting, limit.max_connections),
            (NAME, 50, 50)
        );
        assert!(
            limit
                .source
                .starts_with(&format!("CONFIG GET maxclients on {}", redis.addr)),
            "{}",
            limit.source
        );
        let mut held = measure(redis.addr);
        eprintln!(
            "maxclients 50 -> redis accepted {} -> read {}",
            held.len(),
            limit.max_connections
        );
        assert_eq!(held.len() as u64, limit.max_connections);
        // At the cap c1m's own connection is refused too, distinguishably
        // (redis writes its refusal and closes without reading c1m's
        // request, every time).
        for _ in 0..20 {
            let err = redis.read().unwrap_err();
            assert!(err.why.starts_with(AT_CAP), "{err}");
        }
        // A connection counts from its accept, before it sends anything:
        // c1m's question takes a slot while it lasts.
        held.pop();
        std::thread::sleep(Duration::from_millis(100));
        let silent = TcpStream::connect(redis.addr).unwrap();
        let (refused, _) = ping(redis.addr).unwrap();
        assert!(refused.contains(AT_CAP), "{refused}");
        drop(silent);
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        assert_eq!(redis.read().unwrap()[0].max_connections, 50);
        eprintln!("read in {:?}", started.elapsed());
    }

    #[test]
    fn a_config_file_over_the_fd_limit_is_cut_and_said_so() {
        if !redis_present("redis maxclients from a config file") {
            return;
        }
        // nofile 128 that it may not raise: redis takes 128 - 32.
        let config = "# test\nmaxclients 100\ninclude @DIR/conf.d/*.conf\n";
        let files = [("conf.d/50-clients.conf", "\n# more\nmaxclients 3000\n")];
        let redis = start(Some(config), &files, &[], Some(128));
        let limit = redis.read().unwrap().remove(0);
        let held = measure(redis.addr);
        eprintln!(
            "maxclients 3000, nofile 128 -> redis accepted {} -> read {}",
            held.len(),
            limit.max_connections
        );
        assert_eq!((limit.max_connections, held.len()), (96, 96), "{limit:#?}");
        let file = redis.dir.0.join("conf.d/50-clients.conf");
        let said = format!("`maxclients 3000` at {}:3", file.display());
        assert!(limit.source.contains(&said), "{}", limit.source);
        let cut =
            "lowered it from 3000 at start-up because it could not raise its fd limit to 3032";
        assert!(limit.explanation.contains(cut), "{}", limit.explanation);
    }

    #[test]
    fn behind_a_password_the_config_file_is_read_if_the_title_shows_it() {
        if !redis_present("redis maxclients behind a password") {
            return;
        }
        let config = "requirepass c1m-test\nset-proc-title no\nmaxclients 40\n";
        let redis = start(Some(config), &[], &[], None);
        let limit = redis.read().unwrap().remove(0);
        assert_eq!(limit.max_connections, 40);
        assert!(limit.source.contains("NOAUTH"), "{}", limit.source);
        assert!(limit.source.contains("redis.conf:3"), "{}", limit.source);
        let titled = start(
            Some("requirepass c1m-test\nmaxclients 40\n"),
            &[],
            &[],
            None,
        );
        let err = titled.read().unwrap_err();
        assert!(
            err.why.contains("NOAUTH") && err.why.contains("process title"),
            "{err}"
        );
    }
}
