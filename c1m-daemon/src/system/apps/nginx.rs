//! nginx's own connection limit, `worker_connections`, read where the
//! running nginx got it: the master's command line (`-c`, `-p`, `-g`, from
//! its rewritten title `nginx: master process /usr/sbin/nginx -c FILE`), else
//! the paths compiled into the binary (`--prefix`, `--conf-path`, the text
//! `nginx -V` prints), then the config file with its `include`s expanded the
//! way nginx does (relative to the main file's directory, globs sorted).
//!
//! What nginx counts (measured in the tests below against the real server):
//! every worker has `worker_connections` slots, and its listening sockets
//! take one each, as does its channel to the master. Client connections
//! waiting for a request or idle between keep-alive requests are
//! "reusable": once no more than 1/16 of a worker's slots are free, every
//! new connection makes it close the oldest of them (up to 32 at a time),
//! also clients that connected a moment ago and whose request it has not
//! read yet. A connection in the middle of a request is not reusable: when
//! every slot holds one, nginx accepts the next connection and closes it at
//! once. With several workers sharing a listener (EPOLLEXCLUSIVE,
//! accept_mutex off), a full worker first in the kernel's wake-up queue
//! keeps taking (and dropping) new connections while another still has
//! room; clients that retry, or arrive while it is busy, reach the others,
//! so the cap the server holds is workers x free slots. Upstream (proxied)
//! connections take slots too.

use std::{
    collections::BTreeSet,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use super::{AppLimit, AppLimitError, ServerProcess};

const NAME: &str = "nginx.worker_connections";
const SERVER: &str = "nginx";
/// nginx's value when `events {}` sets no `worker_connections`.
const DEFAULT_WORKER_CONNECTIONS: u64 = 512;
/// `./configure`'s defaults when it was given no `--prefix`/`--conf-path`.
const DEFAULT_PREFIX: &str = "/usr/local/nginx";
const DEFAULT_CONF_PATH: &str = "conf/nginx.conf";
/// nginx does not bound include nesting; a loop would hang this reader.
const MAX_INCLUDE_DEPTH: usize = 32;
const MASTER_TITLE: &str = "nginx: master process ";
const WORKER_TITLE: &str = "nginx: worker process";

/// The limit of every nginx instance among `processes` (one per master).
pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    find_instances(processes)?
        .iter()
        .map(|instance| read_instance(instance, processes))
        .collect()
}

/// One running nginx: the process that read the config, and how it runs.
#[derive(Debug)]
struct Instance {
    /// The master, or the only process when `master_process off`.
    pid: u32,
    /// Its command line as separate arguments.
    argv: Vec<String>,
    /// `master_process off`: one process serves, with no channel.
    single_process: bool,
}

/// The masters behind `processes`: named by their title, or found as the
/// parent of a worker when only workers are in the target.
fn find_instances(processes: &[&ServerProcess]) -> Result<Vec<Instance>, AppLimitError> {
    let mut instances = Vec::new();
    let mut seen = BTreeSet::new();
    for p in processes {
        let title = p.cmdline.first().map_or("", String::as_str);
        let found = if let Some(args) = title.strip_prefix(MASTER_TITLE) {
            Some((p.pid, master_argv(args, &p.cmdline[1..]), false))
        } else if title.starts_with(WORKER_TITLE) {
            master_of_worker(p).map(|(pid, argv)| (pid, argv, false))
        } else if !title.starts_with("nginx: ") {
            // Not a title: an nginx that never forked (master_process off).
            Some((p.pid, p.cmdline.clone(), true))
        } else {
            // Cache manager or loader: its master is found another way.
            None
        };
        if let Some((pid, argv, single_process)) = found
            && seen.insert(pid)
        {
            instances.push(Instance {
                pid,
                argv,
                single_process,
            });
        }
    }
    if instances.is_empty() {
        let pid = processes.first().map_or(0, |p| p.pid);
        return Err(AppLimitError {
            server: SERVER,
            pid,
            why: "no nginx master among the target's processes, nor the parent of a worker; \
                  give c1m the pid of the `nginx: master process`"
                .to_owned(),
        });
    }
    Ok(instances)
}

/// The master's arguments from its title (`/usr/sbin/nginx -c FILE -g
/// daemon off;`, one string: nginx joins its argv with spaces).
fn master_argv(title_rest: &str, more: &[String]) -> Vec<String> {
    title_rest
        .split_whitespace()
        .map(str::to_owned)
        .chain(more.iter().cloned())
        .collect()
}

/// A worker's master, read from /proc when the master is not in the target.
fn master_of_worker(worker: &ServerProcess) -> Option<(u32, Vec<String>)> {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.ppid)).ok()?;
    let title = String::from_utf8_lossy(&cmdline);
    let rest = title.trim_end_matches('\0').strip_prefix(MASTER_TITLE)?;
    Some((worker.ppid, master_argv(&rest.replace('\0', " "), &[])))
}

fn read_instance(
    instance: &Instance,
    processes: &[&ServerProcess],
) -> Result<AppLimit, AppLimitError> {
    let fail = |why: String| AppLimitError {
        server: SERVER,
        pid: instance.pid,
        why,
    };
    let invocation = Invocation::parse(&instance.argv);
    let compiled = || {
        let exe = format!("/proc/{}/exe", instance.pid);
        std::fs::read(&exe)
            .map(|binary| CompiledPaths::find(&binary))
            .map_err(|err| {
                fail(format!(
                    "no -c on its command line and cannot read {exe} for the compiled-in \
                     config path: {err}; run c1m-daemon as root"
                ))
            })
    };
    let conf_path = config_path(&invocation, compiled)?;
    let conf_prefix = conf_path.parent().unwrap_or(Path::new("/")).to_owned();
    let config = load_config(&conf_path, invocation.globals.as_deref(), &conf_prefix)
        .map_err(|err| fail(format!("{err}")))?;
    let settings = Settings::find(&config).map_err(|err| fail(format!("{err}")))?;
    let workers = if instance.single_process {
        Workers::Processes(1)
    } else {
        let visible = processes
            .iter()
            .filter(|p| {
                p.ppid == instance.pid && p.cmdline.first().is_some_and(|t| t == WORKER_TITLE)
            })
            .count() as u64;
        if visible > 0 {
            Workers::Processes(visible)
        } else {
            match &settings.worker_processes {
                Some((WorkerProcesses::Count(n), _)) => Workers::Configured(*n),
                Some((WorkerProcesses::Auto, _)) => Workers::Auto(online_cpus()),
                None => Workers::Configured(1),
            }
        }
    };
    let listeners = match listening_sockets(instance.pid) {
        Some(n) => Listeners::Sockets(n),
        None => {
            let listening: BTreeSet<SocketAddr> = processes
                .iter()
                .flat_map(|p| p.listening.iter().copied())
                .collect();
            if listening.is_empty() {
                Listeners::FromConfig(settings.tcp_listens.len() + settings.other_listeners.len())
            } else {
                Listeners::Sockets(listening.len() + settings.other_listeners.len())
            }
        }
    };
    Ok(app_limit(
        &settings,
        &Deployment {
            master_pid: instance.pid,
            single_process: instance.single_process,
            workers,
            listeners,
            conf_path,
        },
    ))
}

/// How many listening sockets nginx's workers each give a slot: the
/// distinct addresses of the listening sockets (TCP, UDP, unix) the master
/// holds, reuseport copies counted once. `None` when its fds cannot be read.
fn listening_sockets(pid: u32) -> Option<usize> {
    use procfs::net::{TcpState, UnixState};
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let inodes: BTreeSet<u64> = process
        .fd()
        .ok()?
        .flatten()
        .filter_map(|fd| match fd.target {
            procfs::process::FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    let mine = |inode: u64| inodes.contains(&inode);
    let mut addresses = BTreeSet::new();
    let tcp = process.tcp().ok()?.into_iter().chain(process.tcp6().ok()?);
    for e in tcp.filter(|e| e.state == TcpState::Listen && mine(e.inode)) {
        addresses.insert(format!("tcp {}", e.local_address));
    }
    let udp = process.udp().ok()?.into_iter().chain(process.udp6().ok()?);
    for e in udp.filter(|e| mine(e.inode)) {
        addresses.insert(format!("udp {}", e.local_address));
    }
    // A bound unix socket not connected: a listener (the channels to the
    // workers are connected pairs).
    for e in process.unix().ok()?.into_iter().filter(|e| mine(e.inode)) {
        if let (Some(path), UnixState::UNCONNECTED) = (&e.path, &e.state) {
            addresses.insert(format!("unix {}", path.display()));
        }
    }
    Some(addresses.len())
}

/// `sysconf(_SC_NPROCESSORS_ONLN)`, what nginx takes for `worker_processes auto`.
fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u64
}

/// The options of nginx's command line that decide its configuration.
#[derive(Debug, Default, PartialEq)]
struct Invocation {
    /// `-c FILE`.
    conf: Option<String>,
    /// `-p PREFIX`.
    prefix: Option<String>,
    /// `-g DIRECTIVES`.
    globals: Option<String>,
}

impl Invocation {
    /// `argv` as nginx got it, or as its title shows it: there a `-g` value
    /// is split on its spaces, so it runs up to the next option.
    fn parse(argv: &[String]) -> Invocation {
        let is_option = |arg: &str| {
            let mut chars = arg.chars();
            chars.next() == Some('-') && chars.next().is_some_and(|c| "?hvVtTqsepcg".contains(c))
        };
        let mut found = Invocation::default();
        let mut i = 1;
        while i < argv.len() {
            let arg = &argv[i];
            i += 1;
            let Some(flag @ ('c' | 'p' | 'g' | 'e' | 's')) =
                arg.strip_prefix('-').and_then(|rest| rest.chars().next())
            else {
                continue;
            };
            // The value follows the letter (`-c/etc/x.conf`) or is the next
            // argument(s).
            let attached = &arg[2..];
            let value = if !attached.is_empty() {
                attached.to_owned()
            } else if flag == 'g' {
                let start = i;
                while i < argv.len() && !is_option(&argv[i]) {
                    i += 1;
                }
                argv[start..i].join(" ")
            } else {
                i += 1;
                argv.get(i - 1).cloned().unwrap_or_default()
            };
            match flag {
                'c' => found.conf = Some(value),
                'p' => found.prefix = Some(value),
                'g' => found.globals = Some(value),
                _ => {}
            }
        }
        found
    }
}

/// The paths `./configure` compiled in, as `nginx -V` prints them.
#[derive(Debug, PartialEq)]
struct CompiledPaths {
    prefix: String,
    conf_path: String,
}

impl CompiledPaths {
    /// Found in the binary's configure-arguments string; `./configure`'s
    /// defaults where an option is absent.
    fn find(binary: &[u8]) -> CompiledPaths {
        let option = |name: &str| -> Option<String> {
            let needle = format!(" --{name}=");
            let at = binary
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())?;
            let value = &binary[at + needle.len()..];
            let end = value
                .iter()
                .position(|&b| b == b' ' || b == 0 || b == b'\'' || b == b'"')
                .unwrap_or(value.len());
            Some(String::from_utf8_lossy(&value[..end]).into_owned())
        };
        CompiledPaths {
            prefix: option("prefix").unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            conf_path: option("conf-path").unwrap_or_else(|| DEFAULT_CONF_PATH.to_owned()),
        }
    }
}

/// The main config file nginx read: `-c` or the compiled-in path, a
/// relative one taken from the prefix (`-p` or compiled-in), not from the
/// working directory.
fn config_path<E>(
    invocation: &Invocation,
    compiled: impl FnOnce() -> Result<CompiledPaths, E>,
) -> Result<PathBuf, E> {
    let conf = invocation.conf.clone();
    if let Some(conf) = &conf
        && conf.starts_with('/')
    {
        return Ok(PathBuf::from(conf));
    }
    if let (Some(conf), Some(prefix)) = (&conf, &invocation.prefix) {
        return Ok(Path::new(prefix).join(conf));
    }
    let compiled = compiled()?;
    let conf = conf.unwrap_or(compiled.conf_path);
    let prefix = invocation.prefix.clone().unwrap_or(compiled.prefix);
    Ok(Path::new(&prefix).join(conf))
}

/// Where a directive was written.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    File {
        path: PathBuf,
        line: usize,
    },
    /// nginx's `-g` option.
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::CommandLine => write!(f, "command line -g"),
        }
    }
}

/// One directive of an nginx config, with its block if it has one.
#[derive(Debug, Clone, PartialEq)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Option<Vec<Directive>>,
    origin: Origin,
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("cannot read {}: {source}; check the path and run c1m-daemon as root", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {at}: {message}")]
    Syntax { at: String, message: String },
    #[error("{at}: includes nest deeper than {MAX_INCLUDE_DEPTH} (a loop?)")]
    TooDeep { at: String },
    #[error("{at}: `{directive} {value}` is not a number nginx accepts")]
    BadValue {
        at: String,
        directive: String,
        value: String,
    },
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// nginx's tokenizer: words split on whitespace, `;`, `{`; quotes group;
/// `#` at the start of a word comments to the end of the line; a `{` right
/// after `$` belongs to a variable (`${name}`). Each token has its line.
fn tokenize(text: &str, at: &dyn Fn(usize) -> String) -> Result<Vec<(Token, usize)>, ConfigError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            ';' => tokens.push((Token::Semicolon, line)),
            '{' => tokens.push((Token::Open, line)),
            '}' => tokens.push((Token::Close, line)),
            '"' | '\'' => {
                let start = line;
                let mut raw = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(ConfigError::Syntax {
                                at: at(start),
                                message: format!("unterminated {c}quoted{c} string"),
                            });
                        }
                        Some('\\') => {
                            raw.push('\\');
                            if let Some(next) = chars.next() {
                                line += usize::from(next == '\n');
                                raw.push(next);
                            }
                        }
                        Some(q) if q == c => break,
                        Some(other) => {
                            line += usize::from(other == '\n');
                            raw.push(other);
                        }
                    }
                }
                tokens.push((Token::Word(unescape(&raw)), start));
            }
            first => {
                let mut raw = String::from(first);
                let mut escaped = first == '\\';
                let mut variable = first == '$';
                while let Some(&c) = chars.peek() {
                    let ends = c.is_whitespace() || c == ';' || (c == '{' && !variable);
                    if ends && !escaped {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                    variable = !escaped && c == '$';
                    raw.push(c);
                    chars.next();
                }
                tokens.push((Token::Word(unescape(&raw)), line));
            }
        }
    }
    Ok(tokens)
}

/// nginx's unescaping of a word: `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any
/// other backslash stays.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some(&q @ ('"' | '\'' | '\\')) => {
                    out.push(q);
                    chars.next();
                    continue;
                }
                Some(&e @ ('t' | 'r' | 'n')) => {
                    out.push(match e {
                        't' => '\t',
                        'r' => '\r',
                        _ => '\n',
                    });
                    chars.next();
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Config text to directives (includes not yet expanded). `file` is `None`
/// for the `-g` text.
fn parse_config(text: &str, file: Option<&Path>) -> Result<Vec<Directive>, ConfigError> {
    let origin = |line: usize| match file {
        Some(path) => Origin::File {
            path: path.to_owned(),
            line,
        },
        None => Origin::CommandLine,
    };
    let at = |line: usize| origin(line).to_string();
    let tokens = tokenize(text, &at)?;
    let mut pos = 0;
    let directives = parse_block(&tokens, &mut pos, None, &origin, &at)?;
    Ok(directives)
}

/// Directives up to the `}` closing a block opened at `open_line`, or to
/// the end of the text at the top level.
fn parse_block(
    tokens: &[(Token, usize)],
    pos: &mut usize,
    open_line: Option<usize>,
    origin: &dyn Fn(usize) -> Origin,
    at: &dyn Fn(usize) -> String,
) -> Result<Vec<Directive>, ConfigError> {
    let syntax = |line: usize, message: &str| ConfigError::Syntax {
        at: at(line),
        message: message.to_owned(),
    };
    let mut directives = Vec::new();
    loop {
        let Some((token, line)) = tokens.get(*pos) else {
            return match open_line {
                None => Ok(directives),
                Some(open) => Err(syntax(open, "this block has no closing '}'")),
            };
        };
        *pos += 1;
        let name = match token {
            Token::Word(name) => name.clone(),
            Token::Close if open_line.is_some() => return Ok(directives),
            Token::Close => return Err(syntax(*line, "unexpected '}'")),
            Token::Semicolon => return Err(syntax(*line, "unexpected ';'")),
            Token::Open => return Err(syntax(*line, "unexpected '{'")),
        };
        let mut args = Vec::new();
        let block = loop {
            match tokens.get(*pos) {
                Some((Token::Word(arg), _)) => args.push(arg.clone()),
                Some((Token::Semicolon, _)) => break None,
                Some((Token::Open, _)) => {
                    *pos += 1;
                    break Some(parse_block(tokens, pos, Some(*line), origin, at)?);
                }
                Some((Token::Close, close)) => {
                    return Err(syntax(*close, &format!("`{name}` is missing its ';'")));
                }
                None => return Err(syntax(*line, &format!("`{name}` is missing its ';'"))),
            }
            *pos += 1;
        };
        if block.is_none() {
            *pos += 1;
        }
        directives.push(Directive {
            name,
            args,
            block,
            origin: origin(*line),
        });
    }
}

/// The directives nginx runs with: its `-g` ones, then its main file's,
/// includes expanded.
fn load_config(
    path: &Path,
    globals: Option<&str>,
    conf_prefix: &Path,
) -> Result<Vec<Directive>, ConfigError> {
    let mut directives = match globals {
        Some(text) => expand_includes(parse_config(text, None)?, conf_prefix, 0)?,
        None => Vec::new(),
    };
    directives.extend(load_file(path, conf_prefix, 0)?);
    Ok(directives)
}

fn load_file(path: &Path, conf_prefix: &Path, depth: usize) -> Result<Vec<Directive>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    expand_includes(parse_config(&text, Some(path))?, conf_prefix, depth)
}

/// Replace every `include` by the directives of the files it names; paths
/// are relative to the main file's directory (nginx's conf prefix), wherever
/// the include is written; a glob matches in sorted order and may match
/// nothing, a plain path must exist.
fn expand_includes(
    directives: Vec<Directive>,
    conf_prefix: &Path,
    depth: usize,
) -> Result<Vec<Directive>, ConfigError> {
    let mut out = Vec::with_capacity(directives.len());
    for mut directive in directives {
        if directive.name == "include" && directive.block.is_none() {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(ConfigError::TooDeep {
                    at: directive.origin.to_string(),
                });
            }
            let [pattern] = directive.args.as_slice() else {
                return Err(ConfigError::Syntax {
                    at: directive.origin.to_string(),
                    message: "`include` takes one path".to_owned(),
                });
            };
            let path = conf_prefix.join(pattern);
            let files = if pattern.contains(['*', '?', '[']) {
                glob(&path)
            } else {
                vec![path]
            };
            for file in files {
                out.extend(load_file(&file, conf_prefix, depth + 1)?);
            }
            continue;
        }
        if let Some(block) = directive.block.take() {
            directive.block = Some(expand_includes(block, conf_prefix, depth)?);
        }
        out.push(directive);
    }
    Ok(out)
}

/// The files `pattern` matches, sorted, as glob(3) does for nginx (a
/// wildcard does not match a leading dot).
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    for part in pattern.components().skip(1) {
        let part = part.as_os_str().to_string_lossy();
        if !part.contains(['*', '?', '[']) {
            found = found.into_iter().map(|dir| dir.join(&*part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let hidden_ok = !name.starts_with('.') || part.starts_with('.');
                if hidden_ok && wildcard_match(part.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(name));
                }
            }
        }
        next.sort();
        found = next;
    }
    found.retain(|path| path.is_file());
    found
}

/// Shell wildcards: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| wildcard_match(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return name.first() == Some(&b'[') && wildcard_match(rest, &name[1..]);
            };
            let Some(&c) = name.first() else {
                return false;
            };
            let (negate, set) = match rest[..close].split_first() {
                Some((b'!' | b'^', set)) => (true, set),
                _ => (false, &rest[..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= (set[i]..=set[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && wildcard_match(&rest[close + 1..], &name[1..])
        }
        Some((&b, rest)) => name.first() == Some(&b) && wildcard_match(rest, &name[1..]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WorkerProcesses {
    Count(u64),
    Auto,
}

/// What the config sets that decides how many connections nginx holds.
#[derive(Debug, Default)]
struct Settings {
    worker_connections: Option<(u64, Origin)>,
    worker_processes: Option<(WorkerProcesses, Origin)>,
    worker_rlimit_nofile: Option<(u64, Origin)>,
    /// Listening sockets that are not TCP (`unix:` paths, `udp`/`quic`
    /// addresses): each takes a slot in every worker too.
    other_listeners: BTreeSet<String>,
    /// TCP `listen` addresses as written, normalized: the count used when
    /// the target's listening sockets are unknown.
    tcp_listens: BTreeSet<String>,
}

impl Settings {
    fn find(config: &[Directive]) -> Result<Settings, ConfigError> {
        let number = |d: &Directive| -> Result<u64, ConfigError> {
            let value = d.args.first().map_or("", String::as_str);
            value.parse().map_err(|_| ConfigError::BadValue {
                at: d.origin.to_string(),
                directive: d.name.clone(),
                value: value.to_owned(),
            })
        };
        let mut found = Settings::default();
        for d in config {
            match (d.name.as_str(), &d.block) {
                ("worker_processes", None) => {
                    let value = if d.args.first().is_some_and(|a| a == "auto") {
                        WorkerProcesses::Auto
                    } else {
                        WorkerProcesses::Count(number(d)?)
                    };
                    found
                        .worker_processes
                        .get_or_insert((value, d.origin.clone()));
                }
                ("worker_rlimit_nofile", None) => {
                    let value = number(d)?;
                    found
                        .worker_rlimit_nofile
                        .get_or_insert((value, d.origin.clone()));
                }
                ("events", Some(events)) => {
                    for e in events.iter().filter(|e| e.name == "worker_connections") {
                        let value = number(e)?;
                        found
                            .worker_connections
                            .get_or_insert((value, e.origin.clone()));
                    }
                }
                ("http" | "stream" | "mail", Some(block)) => {
                    found.collect_listens(&d.name, block);
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// The `listen`s of the `server {}` blocks of `http`, `stream`, `mail`;
    /// an http server without one listens on *:80.
    fn collect_listens(&mut self, context: &str, block: &[Directive]) {
        for server in block.iter().filter(|d| d.name == "server") {
            let Some(server_block) = &server.block else {
                continue;
            };
            let listens: Vec<&Directive> =
                server_block.iter().filter(|d| d.name == "listen").collect();
            if listens.is_empty() && context == "http" {
                self.tcp_listens.insert("*:80".to_owned());
            }
            for listen in listens {
                let Some(address) = listen.args.first() else {
                    continue;
                };
                let datagram = listen.args[1..].iter().any(|a| a == "udp" || a == "quic");
                if address.starts_with("unix:") {
                    self.other_listeners.insert(address.clone());
                } else if datagram {
                    self.other_listeners.insert(format!("udp {address}"));
                } else {
                    self.tcp_listens.insert(normalize_listen(address));
                }
            }
        }
    }
}

/// `80`, `*:80`, `0.0.0.0:80` are one socket; an address alone listens on 80.
fn normalize_listen(address: &str) -> String {
    if address.bytes().all(|b| b.is_ascii_digit()) {
        return format!("*:{address}");
    }
    let has_port = match address.rsplit_once(':') {
        Some((host, port)) => {
            port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']'))
        }
        None => false,
    };
    let address = if has_port {
        address.to_owned()
    } else {
        format!("{address}:80")
    };
    match address.strip_prefix("0.0.0.0:") {
        Some(port) => format!("*:{port}"),
        None => address,
    }
}

/// How many workers share the limit, and how we know.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Workers {
    /// `nginx: worker process` children of the master in the target.
    Processes(u64),
    /// `worker_processes N` (the workers were not in the target).
    Configured(u64),
    /// `worker_processes auto`: one per online CPU.
    Auto(u64),
}

impl Workers {
    fn count(self) -> u64 {
        match self {
            Workers::Processes(n) | Workers::Configured(n) | Workers::Auto(n) => n,
        }
    }
}

/// Listening sockets, each taking a slot in every worker.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Listeners {
    /// Distinct addresses the target listens on (plus unix/udp ones).
    Sockets(usize),
    /// Counted from the `listen` directives: the sockets were not known.
    FromConfig(usize),
}

/// The running nginx around its config.
#[derive(Debug)]
struct Deployment {
    master_pid: u32,
    single_process: bool,
    workers: Workers,
    listeners: Listeners,
    conf_path: PathBuf,
}

/// The limit: `worker_connections` per worker, less the slots each worker
/// gives its listening sockets and (with a master) its channel.
///
/// Example: `worker_connections 200;`, 2 workers, one listener: each
/// worker holds 200 - 1 - 1 = 198 clients, nginx 396.
fn app_limit(settings: &Settings, deployment: &Deployment) -> AppLimit {
    let (per_worker, origin) = match &settings.worker_connections {
        Some((value, origin)) => (*value, Some(origin)),
        None => (DEFAULT_WORKER_CONNECTIONS, None),
    };
    let workers = deployment.workers.count();
    let (listeners, listeners_note) = match deployment.listeners {
        Listeners::Sockets(n) => (n as u64, ""),
        Listeners::FromConfig(n) => (n as u64, " (counted from the listen directives)"),
    };
    let channel = u64::from(!deployment.single_process);
    let clients_per_worker = per_worker.saturating_sub(listeners + channel);
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let workers_text = match deployment.workers {
        Workers::Processes(n) => plural(n, "worker"),
        Workers::Configured(n) => format!("{} (worker_processes)", plural(n, "worker")),
        Workers::Auto(n) => format!(
            "{} (worker_processes auto: one per CPU)",
            plural(n, "worker")
        ),
    };
    let reserved = if channel == 1 {
        format!(
            "{}{listeners_note} and its channel to the master",
            plural(listeners, "listening socket")
        )
    } else {
        format!("{}{listeners_note}", plural(listeners, "listening socket"))
    };
    let rlimit = match &settings.worker_rlimit_nofile {
        Some((n, at)) => format!("; worker_rlimit_nofile {n} ({at}) sets each worker's fd limit"),
        None => String::new(),
    };
    let sharing = if workers > 1 {
        "; a full worker also drops some new connections while another still has room"
    } else {
        ""
    };
    let explanation = format!(
        "worker_connections {per_worker} x {workers_text}, each giving a slot to its {reserved} \
         ({clients_per_worker} clients per worker); upstream (proxied) connections take slots \
         too; near the cap nginx closes its oldest idle connections (keep-alive, or no request \
         yet) to make room, and at it drops new ones when none is idle{sharing}{rlimit}"
    );
    let raised = per_worker.saturating_mul(2).max(1024);
    let reload = format!("reload nginx: `kill -HUP {}`", deployment.master_pid);
    let fds = format!(
        "; each worker needs as many file descriptors (worker_rlimit_nofile {raised} or more)"
    );
    let (source, remedy) = match origin {
        Some(Origin::File { path, line }) => (
            format!("{}:{line}", path.display()),
            format!(
                "set `worker_connections {raised};` at {}:{line}, then {reload}{fds}",
                path.display()
            ),
        ),
        Some(Origin::CommandLine) => (
            "command line -g".to_owned(),
            format!(
                "change `worker_connections {per_worker};` in nginx's -g option to \
                 `worker_connections {raised};` and restart nginx (a reload keeps the old -g){fds}"
            ),
        ),
        None => (
            format!(
                "compiled-in default (no worker_connections in the events block of {})",
                deployment.conf_path.display()
            ),
            format!(
                "add `worker_connections {raised};` inside `events {{ }}` in {}, then {reload}{fds}",
                deployment.conf_path.display()
            ),
        ),
    };
    AppLimit {
        name: NAME,
        setting: per_worker,
        max_connections: workers * clients_per_worker,
        source,
        explanation,
        remedy,
    }
}

/// For the fuzz targets (`parsers.rs`): the parsers of text the server's
/// admin wrote (the config file, `-g` directives); how many accepted it.
pub fn parse_untrusted_text(text: &str) -> usize {
    usize::from(parse_config(text, None).is_ok())
        + usize::from(parse_config(text, Some(Path::new("/fuzz/nginx.conf"))).is_ok())
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpStream,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use super::*;

    fn words(text: &str) -> Vec<String> {
        let at = |line: usize| format!("line {line}");
        tokenize(text, &at)
            .unwrap()
            .into_iter()
            .map(|(token, _)| match token {
                Token::Word(w) => w,
                Token::Semicolon => ";".into(),
                Token::Open => "{".into(),
                Token::Close => "}".into(),
            })
            .collect()
    }

    #[test]
    fn tokenizes_like_nginx() {
        assert_eq!(
            words("worker_connections  1024; # the default is 512\n"),
            ["worker_connections", "1024", ";"]
        );
        assert_eq!(
            words(r#"log_format main '$remote_addr "$request"' "a\"b\\c";"#),
            [
                "log_format",
                "main",
                r#"$remote_addr "$request""#,
                r#"a"b\c"#,
                ";"
            ]
        );
        // `${var}` braces belong to the word; `#` inside a word is no comment.
        assert_eq!(
            words("set $x ${host}a#b;location /{}"),
            ["set", "$x", "${host}a#b", ";", "location", "/", "{", "}"]
        );
        // Escapes outside quotes; a `\.` stays as written (a regex).
        assert_eq!(
            words(r"location ~ \.php$ { return 200 a\ b; }"),
            [
                "location", "~", r"\.php$", "{", "return", "200", "a\\ b", ";", "}"
            ]
        );
    }

    #[test]
    fn parses_blocks_with_the_line_of_each_directive() {
        let text = "\
user www-data;
worker_processes auto;

events {
\t# worker_connections 10;
\tworker_connections 768;
\tmulti_accept on;
}
";
        let file = Path::new("/etc/nginx/nginx.conf");
        let parsed = parse_config(text, Some(file)).unwrap();
        assert_eq!(
            parsed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["user", "worker_processes", "events"]
        );
        let events = parsed[2].block.as_ref().unwrap();
        assert_eq!(events[0].name, "worker_connections");
        assert_eq!(events[0].args, ["768"]);
        assert_eq!(events[0].origin.to_string(), "/etc/nginx/nginx.conf:6");
        assert_eq!(
            parse_config("daemon off;", None).unwrap()[0].origin,
            Origin::CommandLine
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let file = Some(Path::new("/x.conf"));
        let err = |text: &str| parse_config(text, file).unwrap_err().to_string();
        assert_eq!(
            err("events {\n"),
            "cannot parse /x.conf:1: this block has no closing '}'"
        );
        assert_eq!(err("a;\n}"), "cannot parse /x.conf:2: unexpected '}'");
        assert_eq!(
            err("events { worker_connections 5 }"),
            "cannot parse /x.conf:1: `worker_connections` is missing its ';'"
        );
        assert!(err("a 'b;").contains("unterminated"));
    }

    fn argv(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn reads_the_command_line_from_the_master_title() {
        // What /proc/PID/cmdline holds for a master: one string.
        let title = "nginx: master process /usr/sbin/nginx -c /tmp/x/nginx.conf -g daemon off; worker_processes 2;";
        let args = master_argv(title.strip_prefix(MASTER_TITLE).unwrap(), &[]);
        assert_eq!(
            Invocation::parse(&args),
            Invocation {
                conf: Some("/tmp/x/nginx.conf".into()),
                prefix: None,
                globals: Some("daemon off; worker_processes 2;".into()),
            }
        );
        // A real argv (master_process off keeps it), values attached.
        let args = vec![
            "nginx".into(),
            "-g".into(),
            "master_process off;".into(),
            "-p/srv/".into(),
            "-cconf/a.conf".into(),
        ];
        assert_eq!(
            Invocation::parse(&args),
            Invocation {
                conf: Some("conf/a.conf".into()),
                prefix: Some("/srv/".into()),
                globals: Some("master_process off;".into()),
            }
        );
        assert_eq!(
            Invocation::parse(&argv("/usr/sbin/nginx")),
            Invocation::default()
        );
        assert_eq!(
            Invocation::parse(&argv("nginx -e stderr -g pid /run/n.pid; -c n.conf"))
                .globals
                .as_deref(),
            Some("pid /run/n.pid;")
        );
    }

    #[test]
    fn finds_the_config_file_like_nginx() {
        let debian = || -> Result<CompiledPaths, ()> {
            Ok(CompiledPaths {
                prefix: "/usr/share/nginx".into(),
                conf_path: "/etc/nginx/nginx.conf".into(),
            })
        };
        let path = |args: &str| config_path(&Invocation::parse(&argv(args)), debian).unwrap();
        assert_eq!(path("nginx"), Path::new("/etc/nginx/nginx.conf"));
        assert_eq!(path("nginx -c /tmp/a.conf"), Path::new("/tmp/a.conf"));
        // A relative -c is taken from the prefix, not the working directory.
        assert_eq!(
            path("nginx -c a.conf"),
            Path::new("/usr/share/nginx/a.conf")
        );
        assert_eq!(
            path("nginx -p /srv/ng -c a.conf"),
            Path::new("/srv/ng/a.conf")
        );
        // No -c: the binary is read only then.
        let unread = || -> Result<CompiledPaths, &str> { Err("not read") };
        let with_c = Invocation::parse(&argv("nginx -c /a.conf"));
        assert_eq!(config_path(&with_c, unread), Ok(PathBuf::from("/a.conf")));
        let source_build =
            || -> Result<CompiledPaths, ()> { Ok(CompiledPaths::find(b"\0 --with-debug\0")) };
        let none = Invocation::parse(&argv("nginx -p /opt/ng/"));
        assert_eq!(
            config_path(&none, source_build),
            Ok(PathBuf::from("/opt/ng/conf/nginx.conf"))
        );
    }

    #[test]
    fn finds_the_compiled_in_paths_in_the_binary() {
        let binary = b"\x7fELF...\0nginx version: \0 --with-cc-opt='-g -O2 -fPIC' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --http-log-path=/var/log/nginx/access.log\0more";
        assert_eq!(
            CompiledPaths::find(binary),
            CompiledPaths {
                prefix: "/usr/share/nginx".into(),
                conf_path: "/etc/nginx/nginx.conf".into(),
            }
        );
        assert_eq!(
            CompiledPaths::find(b"\0 --with-http_ssl_module\0"),
            CompiledPaths {
                prefix: "/usr/local/nginx".into(),
                conf_path: "conf/nginx.conf".into(),
            }
        );
        // The nginx installed here, when there is one.
        if let Ok(binary) = std::fs::read("/usr/sbin/nginx") {
            let found = CompiledPaths::find(&binary);
            assert!(found.conf_path.ends_with("nginx.conf"), "{found:?}");
        }
    }

    #[test]
    fn wildcards_match_like_glob() {
        let m = |p: &str, n: &str| wildcard_match(p.as_bytes(), n.as_bytes());
        assert!(m("*.conf", "default.conf"));
        assert!(!m("*.conf", "default.conf.bak"));
        assert!(m("site-?", "site-a"));
        assert!(m("[0-9]*", "10-events.conf"));
        assert!(!m("[!0-9]*", "10-events.conf"));
        assert!(m("*", ""));
        assert!(!m("a[", "ab"));
    }

    #[test]
    fn listen_addresses_normalize() {
        assert_eq!(normalize_listen("80"), "*:80");
        assert_eq!(normalize_listen("0.0.0.0:8080"), "*:8080");
        assert_eq!(normalize_listen("127.0.0.1"), "127.0.0.1:80");
        assert_eq!(normalize_listen("[::]:443"), "[::]:443");
        assert_eq!(normalize_listen("[::1]"), "[::1]:80");
        assert_eq!(normalize_listen("localhost:81"), "localhost:81");
    }

    use super::super::testing::{self, TempDir};

    #[test]
    fn reads_a_debian_layout_with_includes() {
        let dir = TempDir::new("nginx-layout");
        let main = dir.write(
            "nginx.conf",
            "user www-data;\nworker_processes auto;\npid /run/nginx.pid;\ninclude modules-enabled/*.conf;\n\n\
             events {\n\tinclude events.d/*.conf;\n}\n\nhttp {\n\tsendfile on;\n\tinclude conf.d/*.conf;\n\
             \tinclude sites-enabled/*;\n}\n",
        );
        dir.write(
            "modules-enabled/50-mod-stream.conf",
            "worker_rlimit_nofile 4096;\n",
        );
        // Relative to the main file's directory, even from a file in a subdirectory.
        dir.write(
            "events.d/10-conns.conf",
            "# tuned\nworker_connections 2048;\n",
        );
        dir.write("events.d/.hidden.conf", "worker_connections 1;\n");
        dir.write(
            "conf.d/upstream.conf",
            "upstream app { server 127.0.0.1:9000; }\n",
        );
        dir.write(
            "sites-enabled/default",
            "server {\n\tlisten 80 default_server;\n\tlisten [::]:80 default_server;\n\tlisten unix:/run/n.sock;\n}\n\
             server {\n\tserver_name other;\n}\nserver { listen 0.0.0.0:80; listen 443 quic; }\n",
        );
        let config = load_config(&main, Some("daemon off;"), &dir.0).unwrap();
        let settings = Settings::find(&config).unwrap();
        let (value, origin) = settings.worker_connections.clone().unwrap();
        assert_eq!(value, 2048);
        assert_eq!(
            origin.to_string(),
            format!("{}:2", dir.0.join("events.d/10-conns.conf").display())
        );
        assert_eq!(
            settings.worker_processes.as_ref().unwrap().0,
            WorkerProcesses::Auto
        );
        assert_eq!(settings.worker_rlimit_nofile.as_ref().unwrap().0, 4096);
        assert_eq!(
            settings
                .tcp_listens
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["*:80", "[::]:80"]
        );
        assert_eq!(
            settings
                .other_listeners
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["udp 443", "unix:/run/n.sock"]
        );
        // A plain include that is missing is an error that names it.
        dir.write("nginx.conf", "include missing.conf;\n");
        let err = load_config(&main, None, &dir.0).unwrap_err().to_string();
        assert!(
            err.contains("missing.conf") && err.contains("No such file"),
            "{err}"
        );
        dir.write("nginx.conf", "events { worker_connections many; }\n");
        let err = Settings::find(&load_config(&main, None, &dir.0).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("nginx.conf:1: `worker_connections many` is not a number nginx accepts"),
            "{err}"
        );
        dir.write("nginx.conf", "include nginx.conf;\n");
        assert!(matches!(
            load_config(&main, None, &dir.0),
            Err(ConfigError::TooDeep { .. })
        ));
    }

    fn deployment(workers: Workers, listeners: Listeners) -> Deployment {
        Deployment {
            master_pid: 42,
            single_process: false,
            workers,
            listeners,
            conf_path: "/etc/nginx/nginx.conf".into(),
        }
    }

    fn settings_with(worker_connections: Option<(u64, Origin)>) -> Settings {
        Settings {
            worker_connections,
            ..Settings::default()
        }
    }

    #[test]
    fn each_worker_loses_a_slot_per_listener_and_one_for_its_channel() {
        let at = Origin::File {
            path: "/etc/nginx/nginx.conf".into(),
            line: 12,
        };
        let settings = settings_with(Some((3000, at)));
        let limit = app_limit(
            &settings,
            &deployment(Workers::Processes(2), Listeners::Sockets(2)),
        );
        assert_eq!((limit.setting, limit.max_connections), (3000, 2 * 2997));
        assert_eq!(limit.source, "/etc/nginx/nginx.conf:12");
        assert_eq!(
            limit.explanation,
            "worker_connections 3000 x 2 workers, each giving a slot to its 2 listening sockets \
             and its channel to the master (2997 clients per worker); upstream (proxied) \
             connections take slots too; near the cap nginx closes its oldest idle connections \
             (keep-alive, or no request yet) to make room, and at it drops new ones when none \
             is idle; a full worker also drops some new connections while another still has room"
        );
        assert_eq!(
            limit.remedy,
            "set `worker_connections 6000;` at /etc/nginx/nginx.conf:12, then reload nginx: \
             `kill -HUP 42`; each worker needs as many file descriptors (worker_rlimit_nofile \
             6000 or more)"
        );

        // master_process off: one process, no channel.
        let single = Deployment {
            single_process: true,
            ..deployment(Workers::Processes(1), Listeners::Sockets(1))
        };
        assert_eq!(app_limit(&settings, &single).max_connections, 2999);

        // Unset: the default 512, and where to add it.
        let mut settings = settings_with(None);
        settings.worker_rlimit_nofile = Some((
            1024,
            Origin::File {
                path: "/etc/nginx/nginx.conf".into(),
                line: 3,
            },
        ));
        let limit = app_limit(
            &settings,
            &deployment(Workers::Auto(4), Listeners::FromConfig(1)),
        );
        assert_eq!((limit.setting, limit.max_connections), (512, 4 * 510));
        assert!(
            limit.source.starts_with("compiled-in default"),
            "{}",
            limit.source
        );
        assert!(
            limit.remedy.starts_with(
                "add `worker_connections 1024;` inside `events { }` in /etc/nginx/nginx.conf"
            ),
            "{}",
            limit.remedy
        );
        assert!(
            limit
                .explanation
                .contains("4 workers (worker_processes auto: one per CPU)"),
            "{}",
            limit.explanation
        );
        assert!(
            limit
                .explanation
                .contains("1 listening socket (counted from the listen directives)"),
            "{}",
            limit.explanation
        );
        assert!(
            limit.explanation.ends_with(
                "worker_rlimit_nofile 1024 (/etc/nginx/nginx.conf:3) sets each worker's fd limit"
            ),
            "{}",
            limit.explanation
        );

        // From -g: a restart, not a reload.
        let settings = settings_with(Some((100, Origin::CommandLine)));
        let limit = app_limit(
            &settings,
            &deployment(Workers::Configured(1), Listeners::Sockets(1)),
        );
        assert_eq!(
            (limit.max_connections, limit.source.as_str()),
            (98, "command line -g")
        );
        assert!(limit.remedy.contains("restart nginx"), "{}", limit.remedy);
    }

    // --- Against the real server ---

    fn nginx_binary(test: &str) -> Option<PathBuf> {
        let path = PathBuf::from("/usr/sbin/nginx");
        if path.exists() {
            return Some(path);
        }
        testing::skip(&format!(
            "{test}: no nginx at /usr/sbin/nginx (apt-get install nginx-light)"
        ));
        None
    }

    fn free_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], testing::free_port()))
    }

    /// nginx started from a temporary config, killed (by pid) with its
    /// workers and its directory removed on drop.
    struct Nginx {
        child: Child,
        dir: TempDir,
    }

    impl Nginx {
        /// `main` is the config's main-context and `events` text; the
        /// paths a packaged nginx would write to go to the temp dir.
        fn start(
            binary: &Path,
            dir: TempDir,
            main: &str,
            http: &str,
            globals: &str,
            workers: usize,
        ) -> Nginx {
            let d = dir.0.display();
            let conf = dir.write(
                "nginx.conf",
                &format!(
                    "pid {d}/nginx.pid;\nerror_log {d}/error.log notice;\n{main}\n\
                     http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                     \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{http}\n}}\n"
                ),
            );
            let child = Command::new(binary)
                .arg("-c")
                .arg(&conf)
                .args(["-g", &format!("daemon off; {globals}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting nginx");
            let nginx = Nginx { child, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while nginx.workers().len() < workers {
                let log =
                    std::fs::read_to_string(nginx.dir.0.join("error.log")).unwrap_or_default();
                assert!(
                    Instant::now() < deadline,
                    "nginx did not start {workers} workers:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            nginx
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        fn workers(&self) -> Vec<u32> {
            crate::system::process::descendants(self.pid())
                .into_iter()
                .filter(|&(pid, _)| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.starts_with(WORKER_TITLE.as_bytes()))
                })
                .map(|(pid, _)| pid)
                .collect()
        }

        fn read_limit(&self, listening: &[SocketAddr]) -> AppLimit {
            let mut pids = vec![self.pid()];
            pids.extend(
                crate::system::process::descendants(self.pid())
                    .into_iter()
                    .map(|(pid, _)| pid),
            );
            let processes = super::super::server_processes(&pids, listening);
            let refs: Vec<&ServerProcess> = processes.iter().collect();
            let mut limits = read(&refs).unwrap();
            assert_eq!(limits.len(), 1, "{limits:?}");
            limits.remove(0)
        }
    }

    impl Drop for Nginx {
        fn drop(&mut self) {
            // SIGKILL does not reach the workers; SIGTERM makes the master
            // end them. Then make sure, by pid.
            let workers = self.workers();
            testing::stop(&mut self.child, Some(libc::SIGTERM), &workers);
        }
    }

    /// Whether nginx still holds `stream` (no EOF, no reset, no answer).
    fn held(stream: &mut TcpStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        matches!(stream.read(&mut [0u8; 256]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// How many client connections nginx holds at most: connect in bursts
    /// (so a full worker first in the wake-up queue is sometimes busy and
    /// the others get theirs, as under real load), each connection sending
    /// the start of a request so nginx counts it as busy, not as idle and
    /// reusable; keep those nginx holds, until five bursts gain nothing.
    fn measure_held(addr: SocketAddr) -> usize {
        let mut held_streams: Vec<TcpStream> = Vec::new();
        let mut fruitless = 0;
        while fruitless < 5 {
            let mut burst: Vec<TcpStream> = (0..10)
                .map(|_| {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(b"GET / HTTP/1.1\r\n");
                    s
                })
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            burst.retain_mut(held);
            fruitless = if burst.is_empty() { fruitless + 1 } else { 0 };
            held_streams.retain_mut(held);
            held_streams.extend(burst);
        }
        held_streams.len()
    }

    #[test]
    fn one_worker_holds_worker_connections_less_its_listener_and_channel() {
        let Some(binary) = nginx_binary("nginx one worker") else {
            return;
        };
        let addr = free_port();
        let nginx = Nginx::start(
            &binary,
            TempDir::new("nginx-one"),
            "worker_processes 1;\nevents {\n    worker_connections 40; # small for the test\n}",
            &format!("    server {{ listen {addr}; return 200 ok; }}"),
            "",
            1,
        );
        let limit = nginx.read_limit(&[addr]);
        assert_eq!(limit.setting, 40);
        assert_eq!(
            limit.source,
            format!("{}:5", nginx.dir.0.join("nginx.conf").display())
        );
        let measured = measure_held(addr);
        eprintln!(
            "nginx 1 worker, worker_connections 40: holds {measured}, reader says {}",
            limit.max_connections
        );
        assert_eq!(limit.max_connections, measured as u64, "{limit:?}");
        assert_eq!(measured, 38);
    }

    #[test]
    fn two_workers_each_lose_a_slot_per_listener_tcp_or_unix() {
        let Some(binary) = nginx_binary("nginx two workers") else {
            return;
        };
        let (a, b) = (free_port(), free_port());
        let dir = TempDir::new("nginx-two");
        // worker_connections from an include, worker_processes from -g.
        dir.write("events.d/conns.conf", "worker_connections 30;\n");
        let dir_path = dir.0.clone();
        let nginx = Nginx::start(
            &binary,
            dir,
            "events { include events.d/*.conf; }",
            &format!(
                "    server {{ listen {a}; listen {b}; listen unix:{}/n.sock; return 200 ok; }}",
                dir_path.display()
            ),
            "worker_processes 2;",
            2,
        );
        // Listeners counted from the sockets the master holds.
        assert_eq!(listening_sockets(nginx.pid()), Some(3));
        let limit = nginx.read_limit(&[a, b]);
        let include = nginx.dir.0.join("events.d/conns.conf");
        assert_eq!(
            (limit.setting, limit.source.clone()),
            (30, format!("{}:1", include.display()))
        );
        let measured = measure_held(a);
        eprintln!(
            "nginx 2 workers, 3 listeners, worker_connections 30: holds {measured}, reader says {}",
            limit.max_connections
        );
        assert_eq!(limit.max_connections, measured as u64, "{limit:?}");
        assert_eq!(measured, 2 * (30 - 3 - 1));
    }

    /// Connections that sent nothing yet are reusable: past the cap nginx
    /// takes the new one and closes the oldest idle ones instead.
    #[test]
    fn idle_connections_past_the_cap_are_closed_oldest_first() {
        let Some(binary) = nginx_binary("nginx idle reuse") else {
            return;
        };
        let addr = free_port();
        let nginx = Nginx::start(
            &binary,
            TempDir::new("nginx-idle"),
            "worker_processes 1;\nevents { worker_connections 20; }",
            &format!("    server {{ listen {addr}; return 200 ok; }}"),
            "",
            1,
        );
        let cap = nginx.read_limit(&[addr]).max_connections as usize;
        let mut streams: Vec<TcpStream> = (0..cap + 12)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let alive: Vec<bool> = streams.iter_mut().map(held).collect();
        let count = alive.iter().filter(|&&a| a).count();
        assert!(alive.last() == Some(&true) && !alive[0], "{alive:?}");
        assert!(
            count <= cap && count >= cap - cap / 8 - 1,
            "{count} of cap {cap}: {alive:?}"
        );
    }
}
