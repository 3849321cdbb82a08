//! haproxy's own connection limits, read the way haproxy 2.x reads them
//! from the files the running process was started with (`-f FILE|DIR`,
//! `-n`, `-N` on its command line, which haproxy leaves untouched in both
//! its master and its workers): the global `maxconn` (every client
//! connection of the process, across its frontends) and a frontend's own
//! `maxconn` (set in it, or in the `defaults` section it inherits from).
//!
//! What haproxy counts (2.6 `listener_accept`): each connection accepted on
//! a frontend or `listen` section, the HTTP stats page's included, takes
//! one of the global `maxconn` and one of its frontend's; connections to
//! backend servers, health checks, peers and the `stats socket` CLI take
//! none. At the cap haproxy stops accepting: new clients complete the
//! handshake into the listen backlog and wait there, unanswered.
//!
//! With no global `maxconn` and no `-n`, haproxy derives it at start from
//! the fd limit it started with, minus what its listeners, checks and
//! threads take (`compute_ideal_maxconn`); that cannot be recomputed from
//! outside, so it is read from haproxy's `stats socket` (`show info`) when
//! one is configured, and reported as unreadable otherwise.

use std::{
    collections::HashMap,
    fmt,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use super::{AppLimit, AppLimitError, ServerProcess};

const SERVER: &str = "haproxy";
const GLOBAL: &str = "haproxy.maxconn";
const FRONTEND: &str = "haproxy.frontend_maxconn";

/// Every keyword that opens a section (haproxy 2.6's
/// `REGISTER_CONFIG_SECTION`, and the later `crt-store`, `traces`, `acme`):
/// a line starting with one ends the section before it.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "mailers",
    "namespace_list",
    "resolvers",
    "program",
    "http-errors",
    "ring",
    "log-forward",
    "cache",
    "fcgi-app",
    "crt-store",
    "traces",
    "acme",
];

pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    let Some(root) = root_process(processes) else {
        return Ok(Vec::new());
    };
    let fail = |why: String| AppLimitError {
        server: SERVER,
        pid: root.pid,
        why,
    };
    let cmdline = parse_cmdline(root.cmdline.get(1..).unwrap_or_default()).map_err(fail)?;
    // Given only a worker, read its master: the cwd and environment the
    // files were read with (a worker may have chrooted), the pid to signal.
    let (pid, cwd) = match master_of(root) {
        Some(master) => (
            master,
            std::fs::read_link(format!("/proc/{master}/cwd")).ok(),
        ),
        None => (root.pid, root.cwd.clone()),
    };
    let base = config_base(&cmdline, cwd.as_deref());
    let mut files = Vec::new();
    for path in &cmdline.config_paths {
        files.extend(expand_config_path(&resolve(path, base.as_deref())).map_err(fail)?);
    }
    let mut texts = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|err| {
            fail(format!(
                "cannot read {}: {err}; run c1m-daemon as root",
                file.display()
            ))
        })?;
        texts.push((file.display().to_string(), text));
    }
    let env = haproxy_env(pid, &cmdline);
    let config = parse_config(&texts, &env, &cmdline).map_err(fail)?;
    let reload = reload_hint(&cmdline, &config, pid);
    let global = global_limit(&config, &cmdline, &reload, |socket| {
        show_info_maxconn(socket, base.as_deref())
    })
    .map_err(fail)?;
    let mut limits = vec![global];
    limits.extend(frontend_limits(&config, &root.listening, &reload));
    Ok(limits)
}

/// The process haproxy was started as: the master in master-worker mode
/// (whose parent is not haproxy), the newest one if a reload left several.
fn root_process<'a>(processes: &[&'a ServerProcess]) -> Option<&'a ServerProcess> {
    let roots = processes
        .iter()
        .filter(|p| !processes.iter().any(|q| q.pid == p.ppid));
    roots
        .max_by_key(|p| crate::system::process::read_stat(p.pid).map_or(0, |stat| stat.starttime))
        .copied()
}

/// The master of a worker whose master is not among the target's
/// processes: its parent, when that is haproxy too.
fn master_of(process: &ServerProcess) -> Option<u32> {
    let exe = std::fs::read_link(format!("/proc/{}/exe", process.ppid)).ok()?;
    (super::server_of(&exe) == Some(SERVER)).then_some(process.ppid)
}

/// What haproxy's command line sets, parsed as haproxy 2.6's `init_args`
/// does (a flag's first letter decides; `-sf`/`-st` take the pids after
/// them; `--` ends the flags, the rest being configuration files).
#[derive(Debug, Default, PartialEq)]
struct Cmdline {
    /// `-f` files or directories, and those after `--`, in order.
    config_paths: Vec<String>,
    /// `-n`: overrides the global `maxconn` when positive.
    maxconn: Option<i64>,
    /// `-N`: the `maxconn` of proxies that set none (a `defaults` preset).
    maxpconn: Option<i64>,
    /// `-C`: the directory haproxy changes to before reading its files.
    change_dir: Option<String>,
    /// `-W` or `-Ws`.
    master_worker: bool,
    /// `-L`: the local peer name (`HAPROXY_LOCALPEER`).
    local_peer: Option<String>,
}

fn parse_cmdline(args: &[String]) -> Result<Cmdline, String> {
    let mut cmd = Cmdline::default();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix('-') else {
            return Err(format!(
                "unexpected `{arg}` in haproxy's command line (haproxy takes its files with -f)"
            ));
        };
        let mut value = |what: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("`-{what}` without its value in haproxy's command line"))
        };
        match flag.as_bytes() {
            [b'v', ..] | [b'V', ..] | [b'D', ..] | [b'q', ..] => {}
            [b'd', ..] => {}
            [b'c', b'c', ..] | [b'x', ..] | [b'S', ..] => {
                value(flag)?;
            }
            [b'c', ..] => {}
            [b'W', ..] => cmd.master_worker = true,
            [b's', b'f' | b't', ..] => while args.next_if(|pid| !pid.starts_with('-')).is_some() {},
            [b'-'] => {
                cmd.config_paths.extend(args.by_ref().cloned());
            }
            [b'C', ..] => cmd.change_dir = Some(value(flag)?),
            [b'n', ..] => cmd.maxconn = Some(atol(&value(flag)?)),
            [b'N', ..] => cmd.maxpconn = Some(atol(&value(flag)?)),
            [b'm', ..] | [b'p', ..] => {
                value(flag)?;
            }
            [b'L', ..] => cmd.local_peer = Some(value(flag)?),
            [b'f', ..] => cmd.config_paths.push(value(flag)?),
            _ => return Err(format!("unknown flag `{arg}` in haproxy's command line")),
        }
    }
    if cmd.config_paths.is_empty() {
        return Err(
            "no configuration file (-f) in haproxy's command line; haproxy has no default file, \
             so its command line must have been rewritten"
                .to_owned(),
        );
    }
    Ok(cmd)
}

/// C's `atol`, as haproxy reads every count: leading blanks, a sign, then
/// digits up to the first non-digit (`"1k"` is 1, `"x"` is 0).
fn atol(text: &str) -> i64 {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |acc, d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative { -value } else { value }
}

/// The directory relative configuration paths are read from: `-C`, else
/// the cwd (of the master, which never chroots).
fn config_base(cmd: &Cmdline, cwd: Option<&Path>) -> Option<PathBuf> {
    match (&cmd.change_dir, cwd) {
        (Some(dir), cwd) => Some(resolve(dir, cwd)),
        (None, cwd) => cwd.map(Path::to_path_buf),
    }
}

fn resolve(path: &str, base: Option<&Path>) -> PathBuf {
    match base {
        Some(base) if !path.starts_with('/') => base.join(path),
        _ => PathBuf::from(path),
    }
}

/// A file, or a directory's files as haproxy loads them: names ending in
/// `.cfg` (the first `.cfg` in the name must be its end), not starting
/// with a dot, regular files, in byte order.
fn expand_config_path(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|err| {
        format!(
            "cannot open {} (from haproxy's -f): {err}; run c1m-daemon as root, in the \
             server's mount namespace",
            path.display()
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|err| format!("cannot list {}: {err}", path.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| config_file_name(name))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| path.join(name))
        .filter(|file| std::fs::metadata(file).is_ok_and(|meta| meta.is_file()))
        .collect())
}

fn config_file_name(name: &str) -> bool {
    !name.starts_with('.') && name.find(".cfg").is_some_and(|at| at + 4 == name.len())
}

/// The environment haproxy expands `"$VAR"` from: the one it started with,
/// plus what it sets itself before reading its files.
fn haproxy_env(pid: u32, cmd: &Cmdline) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    if cmd.master_worker {
        env.insert("HAPROXY_MWORKER".to_owned(), "1".to_owned());
    }
    let peer = cmd.local_peer.clone().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
    });
    if let Some(peer) = peer {
        env.insert("HAPROXY_LOCALPEER".to_owned(), peer);
    }
    env
}

/// A configuration line.
#[derive(Debug, Clone, PartialEq)]
struct Location {
    file: String,
    line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Where a proxy's `maxconn` comes from.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// A `maxconn` line in the proxy itself.
    Own(Location),
    /// A `maxconn` line in a `defaults` section it inherits.
    Defaults { section: String, at: Location },
    /// `-N` on the command line.
    CommandLine,
}

#[derive(Debug, Clone, PartialEq)]
struct ProxyMaxconn {
    value: i64,
    origin: Origin,
}

/// A frontend or `listen` section: what may accept client connections.
#[derive(Debug, Clone, PartialEq)]
struct Frontend {
    /// `frontend web`, `listen stats`.
    label: String,
    at: Location,
    /// Its own, or inherited; `None` or 0 means the global maxconn.
    maxconn: Option<ProxyMaxconn>,
    /// The address words of its `bind` lines.
    binds: Vec<String>,
}

#[derive(Debug, Default, PartialEq)]
struct Config {
    /// The first `global` section header.
    global_at: Option<Location>,
    /// The first non-zero `maxconn` of the global sections (haproxy ignores
    /// later ones: "'maxconn' already specified").
    global_maxconn: Option<(i64, Location)>,
    /// `stats socket` addresses.
    stats_sockets: Vec<String>,
    /// The `master-worker` keyword.
    master_worker: bool,
    frontends: Vec<Frontend>,
}

#[derive(Debug, Clone, PartialEq)]
enum Section {
    None,
    Global,
    /// A `defaults` section, by name ("" when unnamed).
    Defaults(String),
    /// `frontends[i]`.
    Frontend(usize),
    Other,
}

/// The configuration as haproxy parses it from `files` (path, text), in
/// order: sections end at the next section keyword or the end of their
/// file; `defaults` state carries over between files.
fn parse_config(
    files: &[(String, String)],
    env: &HashMap<String, String>,
    cmd: &Cmdline,
) -> Result<Config, String> {
    let mut config = Config::default();
    // haproxy's preset for a proxy with no `defaults`, or a fresh one.
    let preset = cmd.maxpconn.filter(|&n| n != 0).map(|value| ProxyMaxconn {
        value,
        origin: Origin::CommandLine,
    });
    let mut named_defaults: HashMap<String, Option<ProxyMaxconn>> = HashMap::new();
    let mut last_defaults = preset.clone();
    for (file, text) in files {
        let mut section = Section::None;
        let mut conds = Conditions::default();
        for (index, line) in text.lines().enumerate() {
            let at = Location {
                file: file.clone(),
                line: index + 1,
            };
            let vars = Vars {
                env,
                file,
                line: index + 1,
                section: section_name(&section, &config),
            };
            let words = split_words(line, &vars).map_err(|why| format!("{at}: {why}"))?;
            let Some(first) = words.first() else {
                continue;
            };
            if first.starts_with('.') {
                conds
                    .directive(&words, env)
                    .map_err(|why| format!("{at}: {why}"))?;
                continue;
            }
            let args: Vec<&str> = words.iter().map(String::as_str).collect();
            match conds.active() {
                Tri::True => {}
                Tri::False => continue,
                // A block c1m cannot evaluate: what it would change must
                // not be guessed; a `bind` in it may be counted (it only
                // picks which frontends to show), anything else skipped.
                Tri::Unknown => {
                    let counts = matches!(
                        section,
                        Section::Global | Section::Defaults(_) | Section::Frontend(_)
                    );
                    if SECTIONS.contains(&args[0]) || (counts && args[0] == "maxconn") {
                        return Err(format!(
                            "{at}: `{}` is inside `{}`, which c1m cannot evaluate (it needs \
                             haproxy's version or build features)",
                            words.join(" "),
                            conds.unknown_condition()
                        ));
                    }
                    if !matches!(args[..], ["bind", ..]) {
                        continue;
                    }
                }
            }
            if SECTIONS.contains(&args[0]) {
                section = match args[..] {
                    ["global", ..] => {
                        config.global_at.get_or_insert(at.clone());
                        Section::Global
                    }
                    ["defaults", ..] => {
                        let (name, from) = match args[1..] {
                            ["from", parent] => ("", Some(parent)),
                            [name, "from", parent] => (name, Some(parent)),
                            [name, ..] => (name, None),
                            [] => ("", None),
                        };
                        last_defaults = match from {
                            Some(parent) => inherited(&named_defaults, parent, &at)?,
                            None => preset.clone(),
                        };
                        named_defaults.insert(name.to_owned(), last_defaults.clone());
                        Section::Defaults(name.to_owned())
                    }
                    [kind @ ("frontend" | "listen"), name, ..] => {
                        let maxconn = match args[2..] {
                            ["from", parent] => inherited(&named_defaults, parent, &at)?,
                            _ => last_defaults.clone(),
                        };
                        config.frontends.push(Frontend {
                            label: format!("{kind} {name}"),
                            at: at.clone(),
                            maxconn,
                            binds: Vec::new(),
                        });
                        Section::Frontend(config.frontends.len() - 1)
                    }
                    _ => Section::Other,
                };
                continue;
            }
            match (&section, &args[..]) {
                (Section::Global, ["maxconn", value, ..]) => {
                    let value = atol(value);
                    if config.global_maxconn.is_none() && value != 0 {
                        config.global_maxconn = Some((value, at));
                    }
                }
                (Section::Global, ["stats", "socket", address, ..]) => {
                    config.stats_sockets.push((*address).to_owned());
                }
                (Section::Global, ["master-worker", ..]) => config.master_worker = true,
                (Section::Defaults(name), ["maxconn", value, ..]) => {
                    last_defaults = Some(ProxyMaxconn {
                        value: atol(value),
                        origin: Origin::Defaults {
                            section: section_label("defaults", name),
                            at,
                        },
                    });
                    named_defaults.insert(name.clone(), last_defaults.clone());
                }
                (Section::Frontend(index), ["maxconn", value, ..]) => {
                    config.frontends[*index].maxconn = Some(ProxyMaxconn {
                        value: atol(value),
                        origin: Origin::Own(at),
                    });
                }
                (Section::Frontend(index), ["bind", addresses, ..]) => {
                    config.frontends[*index]
                        .binds
                        .extend(addresses.split(',').map(str::to_owned));
                }
                _ => {}
            }
        }
        if conds.depth() > 0 {
            return Err(format!("{file}: an `.if` block is not closed by `.endif`"));
        }
    }
    Ok(config)
}

fn inherited(
    named: &HashMap<String, Option<ProxyMaxconn>>,
    parent: &str,
    at: &Location,
) -> Result<Option<ProxyMaxconn>, String> {
    named
        .get(parent)
        .cloned()
        .ok_or_else(|| format!("{at}: no defaults section named `{parent}` before it"))
}

fn section_label(kind: &str, name: &str) -> String {
    if name.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} {name}")
    }
}

/// `.SECTION` as haproxy resolves it: the section's name, or its type.
fn section_name(section: &Section, config: &Config) -> String {
    match section {
        Section::None | Section::Other => String::new(),
        Section::Global => "global".to_owned(),
        Section::Defaults(name) if name.is_empty() => "defaults".to_owned(),
        Section::Defaults(name) => name.clone(),
        Section::Frontend(index) => config.frontends[*index]
            .label
            .split_once(' ')
            .map_or(String::new(), |(_, name)| name.to_owned()),
    }
}

/// Variables a line may expand: the environment and `.FILE`, `.LINE`,
/// `.SECTION`.
struct Vars<'a> {
    env: &'a HashMap<String, String>,
    file: &'a str,
    line: usize,
    section: String,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        Ok(match name {
            ".LINE" => Some(self.line.to_string()),
            ".FILE" => Some(self.file.to_owned()),
            ".SECTION" => Some(self.section.clone()),
            _ if name.starts_with('.') => {
                return Err(format!("unknown pseudo-variable `{name}`"));
            }
            _ => self.env.get(name).cloned(),
        })
    }
}

/// One configuration line cut into words as haproxy 2.6's `parse_line`
/// does: `#` starts a comment outside quotes, `\` escapes outside single
/// quotes, `"..."` keeps blanks and expands `$VAR`, `${VAR}`,
/// `${VAR-default}` and `${VAR[*]}` (one word per blank-separated part),
/// `'...'` keeps everything.
fn split_words(line: &str, vars: &Vars) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let (mut squote, mut dquote) = (false, false);
    let mut chars = line.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if !squote && !dquote => break,
            '"' if !squote => {
                dquote = !dquote;
                started = true;
            }
            '\'' if !dquote => {
                squote = !squote;
                started = true;
            }
            '\\' if !squote => {
                started = true;
                match chars.peek().copied() {
                    Some(next @ (' ' | '\\' | '#' | '\'' | '"')) => {
                        chars.next();
                        word.push(next);
                    }
                    Some('$') if dquote => {
                        chars.next();
                        word.push('$');
                    }
                    Some(next @ ('t' | 'n' | 'r')) => {
                        chars.next();
                        word.push(match next {
                            't' => '\t',
                            'n' => '\n',
                            _ => '\r',
                        });
                    }
                    Some('x') => {
                        chars.next();
                        let hex: String = chars.by_ref().take(2).collect();
                        let byte = u8::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 2)
                            .ok_or_else(|| format!("invalid escape `\\x{hex}`"))?;
                        word.push(char::from(byte));
                    }
                    _ => word.push('\\'),
                }
            }
            c if c.is_ascii_whitespace() && !squote && !dquote => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '$' if dquote => {
                let (value, expand) = expand_variable(&mut chars, vars)?;
                started = true;
                if !expand {
                    word.push_str(&value);
                    continue;
                }
                let mut blanks = false;
                for c in value.chars() {
                    if c.is_ascii_whitespace() {
                        blanks = true;
                    } else {
                        if blanks {
                            words.push(std::mem::take(&mut word));
                            blanks = false;
                        }
                        word.push(c);
                    }
                }
                if blanks {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if squote || dquote {
        return Err("unterminated quote".to_owned());
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

/// After a `$` in double quotes: the variable's value, and whether it was
/// `${VAR[*]}` (expanded into one word per blank-separated part).
fn expand_variable(
    chars: &mut std::iter::Peekable<std::str::Chars>,
    vars: &Vars,
) -> Result<(String, bool), String> {
    let braced = chars.next_if_eq(&'{').is_some();
    let mut name = String::new();
    if let Some(dot) = chars.next_if_eq(&'.') {
        name.push(dot);
    }
    while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
        name.push(c);
    }
    if !name
        .trim_start_matches('.')
        .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    {
        return Err(format!("invalid variable name after `$` (`{name}`)"));
    }
    let mut value = vars.get(&name)?;
    if !braced {
        return Ok((value.unwrap_or_default(), false));
    }
    let expand = chars.next_if_eq(&'[').is_some();
    if expand && (chars.next() != Some('*') || chars.next() != Some(']')) {
        return Err(format!("`${{{name}[` must be `${{{name}[*]}}`"));
    }
    if chars.next_if_eq(&'-').is_some() {
        let default: String = chars.by_ref().take_while(|c| *c != '}').collect();
        value = value.or(Some(default));
    } else if chars.next() != Some('}') {
        return Err(format!("unmatched brace in `${{{name}`"));
    }
    Ok((value.unwrap_or_default(), expand))
}

/// Kleene's three-valued logic: a condition c1m cannot evaluate (the
/// haproxy version, its build features) is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn of(value: bool) -> Tri {
        if value { Tri::True } else { Tri::False }
    }

    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, Tri::True) => Tri::True,
            _ => Tri::Unknown,
        }
    }

    fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (Tri::False, Tri::False) => Tri::False,
            _ => Tri::Unknown,
        }
    }

    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// The `.if`/`.elif`/`.else`/`.endif` blocks open at a line.
#[derive(Debug, Default)]
struct Conditions {
    frames: Vec<Frame>,
}

#[derive(Debug)]
struct Frame {
    /// Whether the enclosing block is taken.
    parent: Tri,
    /// Whether a branch of this block was taken already.
    taken: Tri,
    /// Whether the current branch is taken.
    current: Tri,
    /// The condition text, for an error about an `Unknown` one.
    condition: String,
}

impl Conditions {
    fn active(&self) -> Tri {
        self.frames.last().map_or(Tri::True, |frame| frame.current)
    }

    fn depth(&self) -> usize {
        self.frames.len()
    }

    fn unknown_condition(&self) -> String {
        self.frames
            .iter()
            .rev()
            .find(|frame| frame.current == Tri::Unknown)
            .map_or(String::new(), |frame| frame.condition.clone())
    }

    /// Apply a `.if`/`.elif`/`.else`/`.endif` line; a condition is only
    /// evaluated where haproxy evaluates it (not in a skipped block).
    fn directive(&mut self, words: &[String], env: &HashMap<String, String>) -> Result<(), String> {
        let condition = words[1..].join(" ");
        match words[0].as_str() {
            ".if" => {
                let parent = self.active();
                let value = match parent {
                    Tri::False => Tri::False,
                    _ => eval_condition(&condition, env)?,
                };
                self.frames.push(Frame {
                    parent,
                    taken: value,
                    current: parent.and(value),
                    condition: format!(".if {condition}"),
                });
            }
            ".elif" => {
                let frame = self.frames.last_mut().ok_or("`.elif` without `.if`")?;
                let value = match frame.parent.and(frame.taken.not()) {
                    Tri::False => Tri::False,
                    _ => eval_condition(&condition, env)?,
                };
                frame.current = frame.parent.and(frame.taken.not()).and(value);
                frame.taken = frame.taken.or(value);
                frame.condition = format!(".elif {condition}");
            }
            ".else" => {
                let frame = self.frames.last_mut().ok_or("`.else` without `.if`")?;
                frame.current = frame.parent.and(frame.taken.not());
                frame.taken = Tri::True;
            }
            ".endif" => {
                self.frames.pop().ok_or("`.endif` without `.if`")?;
            }
            // .diag, .notice, .warning, .alert only print.
            _ => {}
        }
        Ok(())
    }
}

/// A `.if` condition (haproxy 2.6 `cfgcond.c`): `&&` binds tighter than
/// `||`, `!` negates, parentheses group; terms are integers (non-zero is
/// true), `defined(VAR)`, `streq(a,b)`, `strneq(a,b)`, and
/// `feature(..)`/`version_atleast(..)`/`version_before(..)`, which need
/// the haproxy binary and are `Unknown` here. An empty condition is false.
fn eval_condition(text: &str, env: &HashMap<String, String>) -> Result<Tri, String> {
    let mut parser = CondParser {
        rest: text.trim(),
        env,
    };
    if parser.rest.is_empty() {
        return Ok(Tri::False);
    }
    let value = parser.expr()?;
    if !parser.rest.trim().is_empty() {
        return Err(format!("unexpected `{}` in `.if {text}`", parser.rest));
    }
    Ok(value)
}

struct CondParser<'a> {
    rest: &'a str,
    env: &'a HashMap<String, String>,
}

impl CondParser<'_> {
    fn eat(&mut self, token: &str) -> bool {
        self.rest = self.rest.trim_start();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expr(&mut self) -> Result<Tri, String> {
        let mut value = self.and()?;
        while self.eat("||") {
            value = value.or(self.and()?);
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<Tri, String> {
        let mut value = self.term()?;
        while self.eat("&&") {
            value = value.and(self.term()?);
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<Tri, String> {
        if self.eat("!") {
            return Ok(self.term()?.not());
        }
        if self.eat("(") {
            let value = self.expr()?;
            if !self.eat(")") {
                return Err("missing `)` in a `.if` condition".to_owned());
            }
            return Ok(value);
        }
        self.rest = self.rest.trim_start();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return Ok(Tri::of(atol(word) != 0));
        }
        if !self.eat("(") {
            return Err(format!("unknown term `{word}` in a `.if` condition"));
        }
        let close = self
            .rest
            .find(')')
            .ok_or_else(|| format!("missing `)` after `{word}(`"))?;
        let args: Vec<&str> = self.rest[..close]
            .split(',')
            .map(|arg| arg.trim().trim_matches('"').trim_matches('\''))
            .collect();
        self.rest = &self.rest[close + 1..];
        match (word, &args[..]) {
            ("defined", [name]) => Ok(Tri::of(self.env.contains_key(*name))),
            ("streq", [a, b]) => Ok(Tri::of(a == b)),
            ("strneq", [a, b]) => Ok(Tri::of(a != b)),
            ("feature" | "version_atleast" | "version_before", [_]) => Ok(Tri::Unknown),
            _ => Err(format!("unknown predicate `{word}` in a `.if` condition")),
        }
    }
}

/// How to apply a change: haproxy in master-worker mode reloads on
/// SIGUSR2 to its master; otherwise a new haproxy takes over with `-sf`.
fn reload_hint(cmd: &Cmdline, config: &Config, pid: u32) -> String {
    if cmd.master_worker || config.master_worker {
        format!("reload haproxy (`systemctl reload haproxy`, or `kill -USR2 {pid}` to its master)")
    } else {
        format!(
            "reload haproxy (start it again with the same command line plus `-sf {pid}`, or \
             `systemctl reload haproxy`)"
        )
    }
}

/// The global maxconn: `-n`, else the global section's, else what haproxy
/// derived, asked of its stats socket through `show_info`.
fn global_limit(
    config: &Config,
    cmd: &Cmdline,
    reload: &str,
    show_info: impl Fn(&str) -> Result<u64, String>,
) -> Result<AppLimit, String> {
    let counts = "client connections across all its frontends and `listen` sections (the HTTP \
                  stats page's too; not connections to servers, health checks or the `stats \
                  socket`), and leaves further clients unanswered in the listen backlog";
    let in_global = |value: u64| match (&config.global_maxconn, &config.global_at) {
        (Some((_, at)), _) => format!(
            "raise `maxconn` at {at} (global section), e.g. to `maxconn {}`",
            value * 2
        ),
        (None, Some(at)) => format!("add `maxconn {}` to the global section at {at}", value * 2),
        (None, None) => format!(
            "add a `global` section with `maxconn {}` to {}",
            value * 2,
            cmd.config_paths[0]
        ),
    };
    let fds = "haproxy raises its own fd limit to about twice maxconn and refuses to start if it \
               cannot";
    if let Some(n) = cmd.maxconn.filter(|&n| n > 0) {
        let n = count(n, "-n")?;
        return Ok(AppLimit {
            name: GLOBAL,
            setting: n,
            max_connections: n,
            source: format!("command line -n {n}"),
            explanation: format!(
                "haproxy maxconn {n} (from -n, which overrides the global section) counts {counts}"
            ),
            remedy: format!(
                "raise `-n {n}` on haproxy's command line, e.g. to `-n {}` (it overrides any \
                 `maxconn` in the global section), then restart haproxy with it; {fds}",
                n * 2
            ),
        });
    }
    if let Some((value, at)) = &config.global_maxconn {
        let n = count(*value, &format!("maxconn at {at}"))?;
        return Ok(AppLimit {
            name: GLOBAL,
            setting: n,
            max_connections: n,
            source: at.to_string(),
            explanation: format!("haproxy maxconn {n} counts {counts}"),
            remedy: format!("{}, then {reload}; {fds}", in_global(n)),
        });
    }
    let derived = "no `maxconn` in the global section nor -n on the command line, so haproxy \
                   derived it at start from its fd limit (about (RLIMIT_NOFILE - 10 - \
                   listeners - 3 per thread) / 2, at least 100, or from -m)";
    let Some(socket) = config.stats_sockets.first() else {
        return Err(format!(
            "{derived}, which only haproxy can tell: set `maxconn` in the global section{} and \
             {reload}, or add `stats socket /run/haproxy/admin.sock` to it so c1m can ask \
             `show info`",
            config
                .global_at
                .as_ref()
                .map_or(String::new(), |at| format!(" at {at}"))
        ));
    };
    let n = show_info(socket)
        .map_err(|why| format!("{derived}; asking its stats socket {socket} failed: {why}"))?;
    Ok(AppLimit {
        name: GLOBAL,
        setting: n,
        max_connections: n,
        source: format!("`show info` on stats socket {socket} (derived: no maxconn set)"),
        explanation: format!("haproxy maxconn {n} ({derived}) counts {counts}"),
        remedy: format!("{}, then {reload}; {fds}", in_global(n)),
    })
}

/// A maxconn as haproxy stores it (an `int`); a negative one is a
/// configuration haproxy would misbehave with, not a count.
fn count(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value)
        .ok()
        .filter(|&n| n <= i32::MAX as u64)
        .ok_or_else(|| format!("{what} is {value}, not a connection count haproxy can use"))
}

/// The frontends' own maxconn (set in them, their `defaults`, or `-N`; a
/// frontend without one shares the global maxconn and adds no limit): of
/// the frontends listening on `listening`, or of all when none does.
fn frontend_limits(config: &Config, listening: &[SocketAddr], reload: &str) -> Vec<AppLimit> {
    let serving: Vec<&Frontend> = config
        .frontends
        .iter()
        .filter(|fe| {
            listening
                .iter()
                .any(|addr| fe.binds.iter().any(|bind| bind_matches(bind, addr)))
        })
        .collect();
    let chosen = if serving.is_empty() {
        config.frontends.iter().collect()
    } else {
        serving
    };
    chosen
        .into_iter()
        .filter_map(|fe| {
            let maxconn = fe.maxconn.as_ref()?;
            let n = u64::try_from(maxconn.value).ok().filter(|&n| n > 0)?;
            let label = &fe.label;
            let (source, remedy) = match &maxconn.origin {
                Origin::Own(at) => (
                    format!("{at} ({label})"),
                    format!(
                        "raise `maxconn` at {at} ({label}), e.g. to `maxconn {}`",
                        n * 2
                    ),
                ),
                Origin::Defaults { section, at } => (
                    format!("{at} ({section}, inherited by {label} at {})", fe.at),
                    format!(
                        "raise `maxconn` at {at} ({section}), or set `maxconn {}` in {label} at \
                         {}",
                        n * 2,
                        fe.at
                    ),
                ),
                Origin::CommandLine => (
                    format!("command line -N {n} ({label})"),
                    format!(
                        "set `maxconn {}` in {label} at {} (or raise -N on the command line)",
                        n * 2,
                        fe.at
                    ),
                ),
            };
            Some(AppLimit {
                name: FRONTEND,
                setting: n,
                max_connections: n,
                source,
                explanation: format!(
                    "{label} stops accepting once {n} client connections are open on its own \
                     listeners, leaving further clients unanswered in its listen backlog (the \
                     global maxconn caps all frontends together)"
                ),
                remedy: format!("{remedy}, then {reload}"),
            })
        })
        .collect()
}

/// Whether one `bind` address (`127.0.0.1:80`, `:80`, `*:8000-8010`,
/// `[::1]:443`, `ipv6@:::80`) listens on `addr`. Unix sockets, `fd@` and
/// host names never match.
fn bind_matches(bind: &str, addr: &SocketAddr) -> bool {
    let bind = match bind.split_once('@') {
        Some(("ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6", rest)) => rest,
        Some(_) => return false,
        None => bind,
    };
    let Some(colon) = bind.rfind(':') else {
        return false;
    };
    let (host, ports) = (&bind[..colon], &bind[colon + 1..]);
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (first.parse::<u16>(), last.parse::<u16>()),
        None => (ports.parse(), ports.parse()),
    };
    let (Ok(first), Ok(last)) = (first, last) else {
        return false;
    };
    if !(first..=last).contains(&addr.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host {
        "" | "*" => true,
        _ => host.parse::<IpAddr>().is_ok_and(|ip| {
            ip.is_unspecified() || ip == addr.ip() || Some(ip) == ipv4_of(addr.ip())
        }),
    }
}

fn ipv4_of(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// `Maxconn:` from haproxy's `show info`, asked on its stats socket (a
/// unix path, relative to `base`, or `ipv4@`/`ipv6@`/`host:port`).
fn show_info_maxconn(socket: &str, base: Option<&Path>) -> Result<u64, String> {
    let timeout = Duration::from_secs(1);
    let request = b"show info\n";
    let mut reply = String::new();
    let unix_path = socket.strip_prefix("unix@").or_else(|| {
        (!socket.contains('@') && (socket.starts_with('/') || !socket.contains(':')))
            .then_some(socket)
    });
    if let Some(path) = unix_path {
        let path = resolve(path, base);
        let mut stream = std::os::unix::net::UnixStream::connect(&path)
            .map_err(|err| format!("cannot connect to {}: {err}", path.display()))?;
        stream.set_read_timeout(Some(timeout)).ok();
        stream.write_all(request).map_err(|err| err.to_string())?;
        stream
            .read_to_string(&mut reply)
            .map_err(|err| err.to_string())?;
    } else {
        let address = socket
            .strip_prefix("ipv4@")
            .or_else(|| socket.strip_prefix("ipv6@"))
            .unwrap_or(socket);
        let addr: SocketAddr = address
            .parse()
            .map_err(|_| format!("c1m cannot connect to a stats socket at `{socket}`"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
        stream.set_read_timeout(Some(timeout)).ok();
        stream.write_all(request).map_err(|err| err.to_string())?;
        stream
            .read_to_string(&mut reply)
            .map_err(|err| err.to_string())?;
    }
    parse_show_info_maxconn(&reply).ok_or_else(|| {
        format!(
            "no `Maxconn:` in its `show info` reply ({} bytes)",
            reply.len()
        )
    })
}

fn parse_show_info_maxconn(reply: &str) -> Option<u64> {
    reply
        .lines()
        .find_map(|line| line.strip_prefix("Maxconn:"))
        .and_then(|value| value.trim().parse().ok())
}

/// For the fuzz targets (`parsers.rs`): the parsers of text the server's
/// admin or the server wrote (command line, config, `show info`); how many
/// accepted it.
pub fn parse_untrusted_text(text: &str) -> usize {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let env = HashMap::from([("HOME".to_owned(), "/root".to_owned())]);
    let files = [("/fuzz/haproxy.cfg".to_owned(), text.to_owned())];
    let mut accepted = usize::from(parse_cmdline(&words).is_ok());
    accepted += usize::from(parse_config(&files, &env, &Cmdline::default()).is_ok());
    accepted += usize::from(parse_show_info_maxconn(text).is_some());
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    fn words(line: &str, env: &[(&str, &str)]) -> Vec<String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let vars = Vars {
            env: &env,
            file: "/etc/haproxy/haproxy.cfg",
            line: 7,
            section: "web".to_owned(),
        };
        split_words(line, &vars).unwrap()
    }

    fn config(files: &[(&str, &str)], env: &[(&str, &str)], cmd: &Cmdline) -> Config {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect();
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_config(&files, &env, cmd).unwrap()
    }

    fn cmd() -> Cmdline {
        Cmdline {
            config_paths: strings(&["/etc/haproxy/haproxy.cfg"]),
            ..Cmdline::default()
        }
    }

    const DEBIAN: &str = "\
global
\tlog /dev/log\tlocal0
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy
\tdaemon
\tmaxconn 4096   # raised for the sale

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\ttimeout connect 5000
\ttimeout client  50000
\ttimeout server  50000
\terrorfile 503 /etc/haproxy/errors/503.http

frontend www
\tbind :80
\tbind :::8443 v4v6 ssl crt /etc/ssl/site.pem
\tmaxconn 3000
\tdefault_backend app

backend app
\tmaxconn 99
\tserver a 10.0.0.2:8080 check maxconn 50
";

    #[test]
    fn the_command_line_as_haproxy_reads_it() {
        let systemd = parse_cmdline(&strings(&[
            "-Ws",
            "-f",
            "/etc/haproxy/haproxy.cfg",
            "-p",
            "/run/haproxy.pid",
            "-S",
            "/run/haproxy-master.sock",
        ]))
        .unwrap();
        assert_eq!(systemd.config_paths, ["/etc/haproxy/haproxy.cfg"]);
        assert!(systemd.master_worker);
        assert_eq!(systemd.maxconn, None);
        // What a worker shows after a reload.
        let reloaded = parse_cmdline(&strings(&[
            "-sf",
            "18816",
            "18820",
            "-x",
            "sockpair@3",
            "-W",
            "-f",
            "b.cfg",
            "-n",
            "300",
            "-N",
            "40",
            "-C",
            "/srv",
            "--",
            "c.cfg",
            "conf.d",
        ]))
        .unwrap();
        assert_eq!(reloaded.config_paths, ["b.cfg", "c.cfg", "conf.d"]);
        assert_eq!((reloaded.maxconn, reloaded.maxpconn), (Some(300), Some(40)));
        assert_eq!(
            config_base(&reloaded, Some(Path::new("/tmp"))),
            Some(PathBuf::from("/srv"))
        );
        assert!(parse_cmdline(&strings(&["-db", "-V"])).is_err(), "no -f");
        assert!(parse_cmdline(&strings(&["-f"])).is_err());
    }

    #[test]
    fn counts_are_read_like_atol() {
        assert_eq!(atol("  2000"), 2000);
        assert_eq!(atol("1k"), 1);
        assert_eq!(atol("x"), 0);
        assert_eq!(atol("-5"), -5);
    }

    #[test]
    fn directory_files_are_the_cfg_ones() {
        assert!(config_file_name("10-web.cfg"));
        assert!(!config_file_name(".hidden.cfg"));
        assert!(!config_file_name("web.cfg.bak"));
        assert!(
            !config_file_name("a.cfg.cfg"),
            "haproxy checks the first .cfg"
        );
    }

    #[test]
    fn lines_split_like_haproxy_parse_line() {
        assert_eq!(words("  maxconn 2000 # comment", &[]), ["maxconn", "2000"]);
        assert_eq!(words("maxconn\t\"2000\"", &[]), ["maxconn", "2000"]);
        assert_eq!(
            words(r#"maxconn "${MAXCONN}""#, &[("MAXCONN", "750")]),
            ["maxconn", "750"]
        );
        assert_eq!(
            words(r#"maxconn "${MAXCONN-300}""#, &[]),
            ["maxconn", "300"]
        );
        assert_eq!(
            words(r#"maxconn "${MAXCONN-300}""#, &[("MAXCONN", "")]),
            ["maxconn", ""],
            "a default replaces a missing variable, not an empty one"
        );
        assert_eq!(
            words("maxconn $MAXCONN", &[("MAXCONN", "9")]),
            ["maxconn", "$MAXCONN"]
        );
        assert_eq!(
            words("maxconn '$MAXCONN'", &[("MAXCONN", "9")]),
            ["maxconn", "$MAXCONN"]
        );
        assert_eq!(
            words(r#"bind "${ADDRS[*]}" ssl"#, &[("ADDRS", "a:1  b:2")]),
            ["bind", "a:1", "b:2", "ssl"]
        );
        assert_eq!(
            words(r"log-format a\ b\#c \x41", &[]),
            ["log-format", "a b#c", "A"]
        );
        assert_eq!(
            words(r#"x "a # b" 'c "d"'"#, &[]),
            ["x", "a # b", "c \"d\""]
        );
        assert_eq!(words(r#"x "" y"#, &[]), ["x", "", "y"]);
        assert_eq!(words(r#"x "$.LINE" "${.SECTION}""#, &[]), ["x", "7", "web"]);
        assert_eq!(words("   # only a comment", &[]), Vec::<String>::new());
    }

    #[test]
    fn conditions_evaluate_with_unknowns() {
        let env: HashMap<String, String> = [("WITH_SSL".to_owned(), "yes".to_owned())].into();
        let eval = |text: &str| eval_condition(text, &env).unwrap();
        assert_eq!(eval(""), Tri::False);
        assert_eq!(eval("1"), Tri::True);
        assert_eq!(eval("0"), Tri::False);
        assert_eq!(eval("defined(WITH_SSL)"), Tri::True);
        assert_eq!(eval("!defined(WITH_SSL)"), Tri::False);
        assert_eq!(eval("streq(yes,yes) && strneq(a,b)"), Tri::True);
        assert_eq!(eval("feature(OPENSSL)"), Tri::Unknown);
        assert_eq!(eval("feature(OPENSSL) && 0"), Tri::False);
        assert_eq!(eval("version_atleast(2.4) || (1 && !0)"), Tri::True);
        assert!(eval_condition("bogus", &env).is_err());
    }

    #[test]
    fn the_debian_config_global_and_frontend() {
        let c = config(&[("/etc/haproxy/haproxy.cfg", DEBIAN)], &[], &cmd());
        assert_eq!(
            c.global_maxconn,
            Some((
                4096,
                Location {
                    file: "/etc/haproxy/haproxy.cfg".into(),
                    line: 9
                }
            ))
        );
        assert_eq!(c.stats_sockets, ["/run/haproxy/admin.sock"]);
        assert_eq!(c.frontends.len(), 1, "backends accept nothing");
        assert_eq!(c.frontends[0].binds, [":80", ":::8443"]);
        let reload = reload_hint(&cmd(), &c, 1);
        let global = global_limit(&c, &cmd(), &reload, |_| panic!("not asked")).unwrap();
        assert_eq!((global.name, global.max_connections), (GLOBAL, 4096));
        assert_eq!(global.source, "/etc/haproxy/haproxy.cfg:9");
        assert!(global.remedy.contains("maxconn 8192"), "{}", global.remedy);
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let fe = frontend_limits(&c, &[addr], &reload);
        assert_eq!(fe.len(), 1);
        assert_eq!((fe[0].name, fe[0].max_connections), (FRONTEND, 3000));
        assert_eq!(fe[0].source, "/etc/haproxy/haproxy.cfg:23 (frontend www)");
    }

    #[test]
    fn the_first_global_maxconn_wins_and_minus_n_overrides_it() {
        let text = "global\n    maxconn 0\n    maxconn 40\n    maxconn 70\n";
        let c = config(&[("a.cfg", text)], &[], &cmd());
        assert_eq!(c.global_maxconn.as_ref().map(|g| g.0), Some(40));
        let with_n = Cmdline {
            maxconn: Some(60),
            ..cmd()
        };
        let limit = global_limit(&c, &with_n, "reload", |_| panic!()).unwrap();
        assert_eq!(
            (limit.max_connections, limit.source.as_str()),
            (60, "command line -n 60")
        );
    }

    #[test]
    fn frontends_inherit_defaults_by_order_or_by_name() {
        let text = "\
defaults base
    maxconn 30
defaults
    mode http
frontend a from base
    bind 127.0.0.1:9001
frontend b
    bind 127.0.0.1:9002
listen c
    bind 127.0.0.1:9003,127.0.0.1:9004
    maxconn 12
";
        let second = "frontend d\n    bind *:9005-9010\n";
        let c = config(&[("one.cfg", text), ("two.cfg", second)], &[], &cmd());
        let fe = |port: u16| {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            frontend_limits(&c, &[addr], "reload")
        };
        let a = fe(9001);
        assert_eq!(a[0].max_connections, 30);
        assert_eq!(
            a[0].source,
            "one.cfg:2 (defaults base, inherited by frontend a at one.cfg:5)"
        );
        // A defaults section without maxconn resets it: b shares the global.
        let all = fe(1);
        assert_eq!(
            all.len(),
            2,
            "no frontend on port 1: each one's limit: {all:?}"
        );
        assert!(fe(9002).is_empty(), "b shares the global maxconn");
        assert_eq!(fe(9004)[0].source, "one.cfg:11 (listen c)");
        assert!(
            fe(9007).is_empty(),
            "d, in the next file, inherits the reset defaults"
        );
        // -N presets proxies' maxconn, until a defaults line sets another.
        let with_n = Cmdline {
            maxpconn: Some(500),
            ..cmd()
        };
        let c = config(&[("two.cfg", second)], &[], &with_n);
        let d = frontend_limits(&c, &["127.0.0.1:9007".parse().unwrap()], "reload");
        assert_eq!(
            (d[0].max_connections, d[0].source.as_str()),
            (500, "command line -N 500 (frontend d)")
        );
    }

    #[test]
    fn conditional_blocks_take_one_branch() {
        let text = "\
global
.if defined(BIG)
    maxconn 5000
.elif streq(\"$SIZE\",small)
    maxconn 50
.else
    maxconn 500
.endif
";
        let small = config(&[("a.cfg", text)], &[("SIZE", "small")], &cmd());
        assert_eq!(small.global_maxconn.map(|g| g.0), Some(50));
        let big = config(
            &[("a.cfg", text)],
            &[("BIG", ""), ("SIZE", "small")],
            &cmd(),
        );
        assert_eq!(big.global_maxconn.map(|g| g.0), Some(5000));
        let neither = config(&[("a.cfg", text)], &[], &cmd());
        assert_eq!(neither.global_maxconn.map(|g| g.0), Some(500));
        let unknown = "global\n.if version_atleast(2.8)\n    maxconn 10\n.endif\n";
        let files = [("a.cfg".to_owned(), unknown.to_owned())];
        let err = parse_config(&files, &HashMap::new(), &cmd()).unwrap_err();
        assert!(
            err.contains("a.cfg:3") && err.contains("version_atleast"),
            "{err}"
        );
        // An unknown condition around lines that do not matter is fine.
        let harmless = "global\n.if feature(OPENSSL)\n    tune.ssl.default-dh-param 2048\n.endif\n    maxconn 10\n";
        let c = config(&[("a.cfg", harmless)], &[], &cmd());
        assert_eq!(c.global_maxconn.map(|g| g.0), Some(10));
    }

    #[test]
    fn a_derived_maxconn_is_asked_of_the_stats_socket_or_unreadable() {
        let text = "global\n    stats socket ipv4@127.0.0.1:9999 level admin\n";
        let c = config(&[("/etc/haproxy/haproxy.cfg", text)], &[], &cmd());
        let limit = global_limit(&c, &cmd(), "reload", |socket| {
            assert_eq!(socket, "ipv4@127.0.0.1:9999");
            Ok(9986)
        })
        .unwrap();
        assert_eq!(limit.max_connections, 9986);
        assert!(limit.source.contains("show info"), "{}", limit.source);
        assert!(
            limit.remedy.contains("/etc/haproxy/haproxy.cfg:1"),
            "{}",
            limit.remedy
        );
        let none = config(
            &[("/etc/haproxy/haproxy.cfg", "global\n    daemon\n")],
            &[],
            &cmd(),
        );
        let why = global_limit(&none, &cmd(), "reload", |_| panic!()).unwrap_err();
        assert!(
            why.contains("derived") && why.contains("stats socket"),
            "{why}"
        );
    }

    #[test]
    fn show_info_maxconn() {
        let reply = "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nUlimit-n: 1024\n\
                     Maxsock: 1024\nMaxconn: 498\nHard_maxconn: 498\nCurrConns: 0\n";
        assert_eq!(parse_show_info_maxconn(reply), Some(498));
        assert_eq!(parse_show_info_maxconn("Unknown command.\n"), None);
    }

    #[test]
    fn bind_addresses() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(bind_matches(":8080", &v4));
        assert!(bind_matches("*:8080", &v4));
        assert!(bind_matches("0.0.0.0:8080", &v4));
        assert!(bind_matches("127.0.0.1:8000-8100", &v4));
        assert!(bind_matches("ipv4@127.0.0.1:8080", &v4));
        assert!(!bind_matches("127.0.0.2:8080", &v4));
        assert!(!bind_matches("127.0.0.1:8081", &v4));
        assert!(bind_matches(":::8080", &v6));
        assert!(bind_matches("[::1]:8080", &v6));
        assert!(bind_matches("ipv6@::1:8080", &v6));
        assert!(!bind_matches("/run/haproxy.sock", &v4));
        assert!(!bind_matches("fd@3", &v4));
        assert!(!bind_matches("localhost:8080", &v4));
    }
}

/// Against the real haproxy: what the reader says is what haproxy allows.
#[cfg(test)]
mod real_server {
    use std::{
        io::{Read as _, Write as _},
        net::{SocketAddr, TcpStream},
        os::unix::process::CommandExt as _,
        path::Path,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use super::{
        super::testing::{self, TempDir},
        *,
    };

    const BINARY: &str = "/usr/sbin/haproxy";

    fn haproxy_installed(test: &str) -> bool {
        if Path::new(BINARY).exists() {
            return true;
        }
        testing::skip(&format!("{test}: no {BINARY} (apt-get install haproxy)"));
        false
    }

    /// haproxy and its workers, killed by pid and reaped on drop (the
    /// server before its directory: fields drop in order).
    struct Server {
        child: Child,
        addr: SocketAddr,
        _dir: TempDir,
    }

    impl Server {
        fn pids(&self) -> Vec<u32> {
            let root = self.child.id();
            let mut pids = vec![root];
            pids.extend(
                crate::system::process::descendants(root)
                    .into_iter()
                    .map(|(pid, _)| pid),
            );
            pids
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let workers: Vec<u32> = self.pids().into_iter().skip(1).collect();
            testing::stop(&mut self.child, None, &workers);
        }
    }

    /// Write `files` (name, text with `PORT` and `DIR` replaced) to a new
    /// directory and run haproxy with `args` (`DIR` replaced) there.
    fn start(files: &[(&str, &str)], args: &[&str], nofile: Option<u64>) -> Server {
        let dir = TempDir::new("haproxy-reader");
        let port = testing::free_port();
        let fill = |text: &str| {
            text.replace("PORT", &port.to_string())
                .replace("DIR", &dir.0.display().to_string())
        };
        for (name, text) in files {
            std::fs::write(dir.0.join(name), fill(text)).unwrap();
        }
        let mut command = Command::new(BINARY);
        command
            .args(args.iter().map(|arg| fill(arg)))
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(nofile) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        let child = command.spawn().expect("starting haproxy");
        let server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while request(&server.addr, "close").is_none() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not answer on {}",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let haproxy release the probe's slot.
        std::thread::sleep(Duration::from_millis(200));
        server
    }

    /// One GET on a new connection, kept open unless `connection` is
    /// "close": the stream once haproxy answered within 500 ms.
    fn request(addr: &SocketAddr, connection: &str) -> Option<TcpStream> {
        let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(1)).ok()?;
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: c1m\r\nConnection: {connection}\r\n\r\n"
        )
        .ok()?;
        answered(&mut stream, Duration::from_millis(500)).then_some(stream)
    }

    fn answered(stream: &mut TcpStream, within: Duration) -> bool {
        stream.set_read_timeout(Some(within)).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        while !reply.ends_with(b"\r\n\r\nok") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    /// Open keep-alive connections, each served one request, until one is
    /// not served; then check it is served once a held one closes (it was
    /// the cap, not a slow server). Returns how many were served at once.
    fn measure(server: &Server, at_most: u64) -> u64 {
        let mut held = Vec::new();
        loop {
            let mut stream =
                TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).unwrap();
            write!(stream, "GET / HTTP/1.1\r\nHost: c1m\r\n\r\n").unwrap();
            if !answered(&mut stream, Duration::from_millis(500)) {
                held.pop();
                assert!(
                    answered(&mut stream, Duration::from_secs(3)),
                    "the connection past the cap was not served once one closed"
                );
                return held.len() as u64 + 1;
            }
            held.push(stream);
            assert!(held.len() as u64 <= at_most, "served more than {at_most}");
        }
    }

    /// Measure what haproxy serves and compare it with the reader's count.
    fn assert_measured(server: &Server, limit: &AppLimit, at_most: u64) {
        let served = measure(server, at_most);
        eprintln!(
            "{} {} ({}): haproxy served {served}, the reader says {}",
            limit.name, limit.setting, limit.source, limit.max_connections
        );
        assert_eq!(served, limit.max_connections);
    }

    fn read_limits(server: &Server) -> Vec<AppLimit> {
        let processes = super::super::server_processes(&server.pids(), &[server.addr]);
        let mine: Vec<&ServerProcess> = processes.iter().collect();
        read(&mine).unwrap()
    }

    const HTTP: &str = "
defaults
    mode http
    timeout client 60s
    timeout connect 5s
    timeout server 60s
frontend web
    bind 127.0.0.1:PORT
    http-request return status 200 content-type text/plain string ok
";

    #[test]
    fn global_maxconn_in_master_worker_mode() {
        if !haproxy_installed("haproxy global maxconn") {
            return;
        }
        let config = format!(
            "global\n    maxconn 40\n    stats socket DIR/admin.sock mode 600 level admin\n{HTTP}"
        );
        let server = start(
            &[("haproxy.cfg", &config)],
            &["-W", "-f", "haproxy.cfg"],
            None,
        );
        assert!(server.pids().len() >= 2, "a master and a worker");
        let limits = read_limits(&server);
        assert_eq!(limits.len(), 1, "{limits:#?}");
        let global = &limits[0];
        assert_eq!(
            (global.name, global.setting, global.max_connections),
            (GLOBAL, 40, 40)
        );
        assert!(
            global.source.ends_with("haproxy.cfg:2"),
            "{}",
            global.source
        );
        let master = server.child.id();
        let usr2 = format!("kill -USR2 {master}");
        assert!(global.remedy.contains(&usr2), "{}", global.remedy);
        // Given only the worker, the master is still the one to signal.
        let workers: Vec<u32> = server.pids().into_iter().skip(1).collect();
        let processes = super::super::server_processes(&workers, &[server.addr]);
        let mine: Vec<&ServerProcess> = processes.iter().collect();
        assert_eq!(read(&mine).unwrap(), limits);
        // Connections to the stats socket do not count.
        let socket = server._dir.0.join("admin.sock");
        let _cli: Vec<_> = (0..3)
            .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
            .collect();
        assert_measured(&server, global, 200);
    }

    #[test]
    fn frontend_maxconn_from_defaults_under_minus_n() {
        if !haproxy_installed("haproxy frontend maxconn") {
            return;
        }
        let config = format!(
            "global\n    maxconn 1000\n{}",
            HTTP.replace("mode http", "mode http\n    maxconn 25")
        );
        let server = start(
            &[("10-web.cfg", &config), ("notes.txt", "not a config")],
            &["-db", "-f", "DIR", "-n", "60"],
            None,
        );
        let limits = read_limits(&server);
        assert_eq!(limits.len(), 2, "{limits:#?}");
        assert_eq!(
            (limits[0].max_connections, limits[0].source.as_str()),
            (60, "command line -n 60")
        );
        let frontend = &limits[1];
        assert_eq!((frontend.name, frontend.max_connections), (FRONTEND, 25));
        assert!(
            frontend
                .source
                .contains("10-web.cfg:6 (defaults, inherited by frontend web"),
            "{}",
            frontend.source
        );
        assert_measured(&server, frontend, 200);
    }

    #[test]
    fn derived_maxconn_from_the_stats_socket() {
        if !haproxy_installed("haproxy derived maxconn") {
            return;
        }
        let config =
            format!("global\n    stats socket DIR/admin.sock mode 600 level admin\n{HTTP}");
        let server = start(
            &[("haproxy.cfg", &config)],
            &["-db", "-f", "haproxy.cfg"],
            Some(300),
        );
        let limits = read_limits(&server);
        assert_eq!(limits.len(), 1, "{limits:#?}");
        let global = &limits[0];
        assert!(global.source.contains("show info"), "{}", global.source);
        // 300 fds - 10 reserved - 2 listeners - 10 CLI slots - 3 per thread.
        // haproxy runs one thread per CPU it may run on.
        // SAFETY: a zeroed cpu_set_t is valid; the kernel fills it.
        let threads = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            libc::CPU_COUNT(&set) as u64
        };
        assert_eq!(global.max_connections, (300 - 22 - 3 * threads) / 2);
        assert_measured(&server, global, 300);
        // Without the socket the derived value is unreadable, and says so.
        let bare = start(
            &[("haproxy.cfg", HTTP)],
            &["-db", "-f", "haproxy.cfg"],
            Some(300),
        );
        let processes = super::super::server_processes(&bare.pids(), &[bare.addr]);
        let mine: Vec<&ServerProcess> = processes.iter().collect();
        let err = read(&mine).unwrap_err();
        assert!(err.why.contains("derived"), "{err}");
    }
}
