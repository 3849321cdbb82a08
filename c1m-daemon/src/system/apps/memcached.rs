//! memcached's connection limit, `-c N` / `--conn-limit=N` (default 1024),
//! read from the running process's command line: memcached has no config
//! file of its own (Debian's `/etc/memcached.conf` is turned into command
//! line flags by its service wrapper, so it only tells the remedy which
//! line to edit).
//!
//! `-c` caps file descriptors, not clients. At start-up memcached sets its
//! RLIMIT_NOFILE (soft and hard) to `-c` itself, and with `maxconns_fast`
//! (the default since 1.5) it answers `ERROR Too many open connections`
//! and closes every accepted connection whose fd is `-c - 1` or above
//! (`sfd >= settings.maxconns - 1` in `drive_machine`); without it,
//! `accept` fails with EMFILE at `-c` and memcached stops accepting. Its
//! own fds come first: stdio, an event loop, eventfd and notify pipe per
//! worker thread (`-t`, default 4), its listeners (and `-t` dups of each
//! UDP socket). They are counted from `/proc/PID/fd` rather than from a
//! per-version formula. `stats` shows `max_connections` = the `-c` value,
//! which is not the number of clients it takes.

use std::{
    collections::HashSet,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
};

use super::{AppLimit, AppLimitError, ServerProcess};

pub const NAME: &str = "memcached.conn_limit";
const DEFAULT_CONN_LIMIT: u64 = 1024;
const DEFAULT_THREADS: u64 = 4;
/// memcached opens its own fds at start-up, before any client, so they
/// are the lowest-numbered: the first entries of `/proc/PID/fd` hold them
/// all (listing more would make the kernel build a dentry per client).
const SCAN_FDS: usize = 4096;

/// memcached connection limits, one per memcached process of the target.
pub fn read(processes: &[&ServerProcess]) -> Result<Vec<AppLimit>, AppLimitError> {
    processes.iter().map(|p| read_one(p)).collect()
}

fn read_one(process: &ServerProcess) -> Result<AppLimit, AppLimitError> {
    let error = |why: String| AppLimitError {
        server: "memcached",
        pid: process.pid,
        why,
    };
    if process.cmdline.is_empty() {
        return Err(error(format!(
            "/proc/{}/cmdline is empty (the process is exiting, or c1m may not read it); run c1m-daemon as root",
            process.pid
        )));
    }
    let options = parse_args(&process.cmdline).map_err(|why| {
        error(format!(
            "its command line {:?} does not parse as memcached's: {why}",
            process.cmdline.join(" ")
        ))
    })?;
    let listeners = listener_inodes(process.pid, options.unix_socket.is_some());
    let fd_bound = options.fd_bound();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", process.pid))
        .and_then(|dir| {
            let mut entries = Vec::new();
            for entry in dir.take(SCAN_FDS) {
                let entry = entry?;
                let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if fd >= fd_bound {
                    break; // listed in ascending order
                }
                // An fd closed meanwhile is simply not there.
                if let Ok(target) = std::fs::read_link(entry.path()) {
                    entries.push((fd, target.to_string_lossy().into_owned()));
                }
            }
            Ok(entries)
        })
        .map_err(|err| {
            error(format!(
                "cannot list /proc/{}/fd to count the fds it keeps for itself: {err}; run c1m-daemon as root",
                process.pid
            ))
        })?;
    let own = count_own_fds(&fds, fd_bound, &listeners);
    let origin = debian_conf_origin(process);
    Ok(conn_limit(&options, own, origin.as_ref()))
}

/// What memcached's command line sets that bears on its connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-c`: the value and the flag as written (`-c 200`, `--conn-limit=200`).
    pub conn_limit: Option<(u64, String)>,
    /// `-t`, worker threads.
    pub threads: u64,
    /// `-U`, 0 = no UDP.
    pub udp_port: u64,
    /// `-s`: a unix socket instead of TCP.
    pub unix_socket: Option<String>,
    /// `-o maxconns_fast` (default on; off with `no_maxconns_fast` or `no_modern`).
    pub maxconns_fast: bool,
}

impl Options {
    pub fn maxconns(&self) -> u64 {
        self.conn_limit
            .as_ref()
            .map_or(DEFAULT_CONN_LIMIT, |(value, _)| *value)
    }

    /// Client fds must be below this: `-c - 1` with maxconns_fast (that fd
    /// is accepted only to be refused), else `-c` (RLIMIT_NOFILE).
    pub fn fd_bound(&self) -> u64 {
        self.maxconns() - u64::from(self.maxconns_fast)
    }
}

/// Short options of memcached 1.6 that take an argument (its `shortopts`).
const SHORT_WITH_ARG: &str = "apsUmclupfntDRbBIYeoNP";
/// Long options (name, takes an argument, short equivalent); `--verbose`'s
/// argument is optional, so only `--verbose=N` carries one.
const LONG: &[(&str, bool, char)] = &[
    ("unix-mask", true, 'a'),
    ("enable-shutdown", false, 'A'),
    ("enable-ssl", false, 'Z'),
    ("port", true, 'p'),
    ("unix-socket", true, 's'),
    ("udp-port", true, 'U'),
    ("memory-limit", true, 'm'),
    ("disable-evictions", false, 'M'),
    ("conn-limit", true, 'c'),
    ("lock-memory", false, 'k'),
    ("help", false, 'h'),
    ("license", false, 'i'),
    ("version", false, 'V'),
    ("enable-coredumps", false, 'r'),
    ("verbose", false, 'v'),
    ("daemon", false, 'd'),
    ("listen", true, 'l'),
    ("user", true, 'u'),
    ("pidfile", true, 'P'),
    ("slab-growth-factor", true, 'f'),
    ("slab-min-size", true, 'n'),
    ("threads", true, 't'),
    ("enable-largepages", false, 'L'),
    ("max-reqs-per-event", true, 'R'),
    ("disable-cas", false, 'C'),
    ("listen-backlog", true, 'b'),
    ("protocol", true, 'B'),
    ("max-item-size", true, 'I'),
    ("enable-sasl", false, 'S'),
    ("disable-flush-all", false, 'F'),
    ("disable-dumping", false, 'X'),
    ("disable-watch", false, 'W'),
    ("auth-file", true, 'Y'),
    ("memory-file", true, 'e'),
    ("extended", true, 'o'),
    ("napi-ids", true, 'N'),
];

/// memcached's options from its argv (argv[0] first), parsed as its
/// `getopt_long` does: clustered short flags (`-vc 200`, `-c200`), long
/// ones with `=` or a separate value and unique prefixes (`--conn=200`),
/// `--` ending them, later flags overriding earlier ones.
pub fn parse_args(argv: &[String]) -> Result<Options, String> {
    let mut options = Options {
        conn_limit: None,
        threads: DEFAULT_THREADS,
        udp_port: 0,
        unix_socket: None,
        maxconns_fast: true,
    };
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let exact = LONG.iter().find(|(n, ..)| *n == name);
            let mut prefixed = LONG.iter().filter(|(n, ..)| n.starts_with(name));
            let found = exact.or_else(|| match (prefixed.next(), prefixed.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            });
            let Some(&(full, takes_arg, short)) = found else {
                return Err(format!("unknown or ambiguous option --{name}"));
            };
            let value = match (takes_arg, inline) {
                (true, Some(value)) => value.to_owned(),
                (true, None) => match args.next() {
                    Some(value) => value.clone(),
                    None => return Err(format!("--{full} without its value")),
                },
                (false, _) => continue,
            };
            let written = match inline {
                Some(_) => arg.clone(),
                None => format!("{arg} {value}"),
            };
            apply(&mut options, short, &value, written)?;
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (at, short) in cluster.char_indices() {
                if !SHORT_WITH_ARG.contains(short) {
                    continue;
                }
                let rest = &cluster[at + short.len_utf8()..];
                let (value, written) = if rest.is_empty() {
                    match args.next() {
                        Some(value) => (value.clone(), format!("{arg} {value}")),
                        None => return Err(format!("-{short} without its value")),
                    }
                } else {
                    (rest.to_owned(), arg.clone())
                };
                apply(&mut options, short, &value, written)?;
                break;
            }
        }
        // Anything else is an operand, which getopt_long skips over.
    }
    Ok(options)
}

fn apply(options: &mut Options, short: char, value: &str, written: String) -> Result<(), String> {
    match short {
        'c' => match u64::try_from(atoi(value)) {
            Ok(n) if n > 0 => options.conn_limit = Some((n, written)),
            _ => return Err(format!("{written}: memcached refuses a limit below 1")),
        },
        't' => match u64::try_from(atoi(value)) {
            Ok(n) if n > 0 => options.threads = n,
            _ => return Err(format!("{written}: memcached refuses fewer than 1 thread")),
        },
        'U' => options.udp_port = u64::try_from(atoi(value)).unwrap_or(0),
        's' => options.unix_socket = Some(value.to_owned()),
        'o' => {
            for token in value.split(',') {
                match token.split_once('=').map_or(token, |(name, _)| name) {
                    "maxconns_fast" => options.maxconns_fast = true,
                    "no_maxconns_fast" | "no_modern" => options.maxconns_fast = false,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// C's `atoi`: leading blanks, a sign, digits, and whatever follows ignored.
fn atoi(text: &str) -> i64 {
    let text = text.trim_start();
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    let value = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    sign * value
}

/// The fds memcached keeps for itself below the client fd bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OwnFds {
    /// stdio, event loops, eventfds, pipes, /dev/null, inherited files.
    pub files: u64,
    /// Its listening (TCP, unix) and UDP sockets, counting dups.
    pub listeners: u64,
}

impl OwnFds {
    pub fn total(&self) -> u64 {
        self.files + self.listeners
    }
}

/// Count, among `(fd, link target)` pairs of `/proc/PID/fd`, those below
/// `fd_bound` that are not client connections: anything not a socket, and
/// the sockets whose inode is among `listeners`.
pub fn count_own_fds(fds: &[(u64, String)], fd_bound: u64, listeners: &HashSet<u64>) -> OwnFds {
    let mut own = OwnFds {
        files: 0,
        listeners: 0,
    };
    for (_, target) in fds.iter().filter(|(fd, _)| *fd < fd_bound) {
        match socket_inode(target) {
            None => own.files += 1,
            Some(inode) if listeners.contains(&inode) => own.listeners += 1,
            Some(_) => {} // a client
        }
    }
    own
}

fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inodes of the listening sockets in the process's network namespace: TCP
/// listeners (the kernel lists them before all other TCP sockets, so only
/// the head of the file is read), every UDP socket (memcached's UDP sockets
/// are all its own), and listening unix sockets when it has one.
fn listener_inodes(pid: u32, unix: bool) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for (file, all) in [
        ("tcp", false),
        ("tcp6", false),
        ("udp", true),
        ("udp6", true),
    ] {
        if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/net/{file}")) {
            let lines = BufReader::new(f).lines().map_while(Result::ok);
            inodes.extend(inet_listener_inodes(lines, all));
        }
    }
    if unix && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
        inodes.extend(unix_listener_inodes(&text));
    }
    inodes
}

/// From `/proc/net/{tcp,udp}{,6}` lines (header first): the inodes of the
/// sockets in LISTEN (`st` 0A), stopping at the first other one, or of
/// every socket when `all`.
pub fn inet_listener_inodes(lines: impl Iterator<Item = impl AsRef<str>>, all: bool) -> Vec<u64> {
    let mut inodes = Vec::new();
    for line in lines.skip(1) {
        let fields: Vec<&str> = line.as_ref().split_whitespace().collect();
        let (Some(state), Some(inode)) = (fields.get(3), fields.get(9)) else {
            continue;
        };
        if !all && *state != "0A" {
            break;
        }
        if let Ok(inode) = inode.parse() {
            inodes.push(inode);
        }
    }
    inodes
}

/// From `/proc/net/unix`: the inodes of listening sockets (flag
/// `__SO_ACCEPTCON`, 0x10000).
pub fn unix_listener_inodes(text: &str) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u64::from_str_radix(fields.get(3)?, 16).ok()?;
            (flags & 0x10000 != 0).then_some(fields.get(6)?.parse().ok()?)
        })
        .collect()
}

/// Where Debian's service took the command line from: its
/// `systemd-memcached-wrapper` turns each `-` line of
/// `/etc/memcached.conf` (`/etc/memcached_NAME.conf` for
/// `memcached@NAME`) into flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfOrigin {
    pub path: PathBuf,
    /// `systemctl restart` unit.
    pub unit: String,
    /// The line setting `-c` (1-based) and its text.
    pub conn_line: Option<(usize, String)>,
    /// Else a commented-out `# -c 1024` to uncomment (1-based).
    pub commented_line: Option<usize>,
}

fn debian_conf_origin(process: &ServerProcess) -> Option<ConfOrigin> {
    let root = PathBuf::from(format!("/proc/{}/root", process.pid));
    let mut candidates = vec![PathBuf::from("/etc/memcached.conf")];
    if let Ok(dir) = std::fs::read_dir(root.join("etc")) {
        let mut named: Vec<PathBuf> = dir
            .filter_map(|e| Some(PathBuf::from("/etc").join(e.ok()?.file_name())))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("memcached_") && n.ends_with(".conf"))
            })
            .collect();
        named.sort();
        candidates.extend(named);
    }
    candidates.into_iter().find_map(|path| {
        let text = std::fs::read_to_string(root.join(path.strip_prefix("/").ok()?)).ok()?;
        conf_origin(&path, &text, &process.cmdline)
    })
}

/// `path`'s text as Debian's wrapper reads it, if it yields exactly
/// `cmdline`'s flags (so the running memcached came from it).
pub fn conf_origin(path: &Path, text: &str, cmdline: &[String]) -> Option<ConfOrigin> {
    let params = wrapper_params(text);
    let mut tokens: Vec<&str> = params
        .iter()
        .flat_map(|(_, line)| line.split_whitespace())
        .collect();
    if tokens.is_empty() {
        tokens = vec!["-u", "root"]; // the wrapper's fallback
    }
    if cmdline.get(1..)? != tokens {
        return None;
    }
    let line_options = |line: &str| {
        let argv: Vec<String> = std::iter::once("memcached")
            .chain(line.split_whitespace())
            .map(str::to_owned)
            .collect();
        parse_args(&argv).ok()
    };
    let conn_line = params
        .iter()
        .rfind(|(_, line)| line_options(line).is_some_and(|o| o.conn_limit.is_some()))
        .map(|(n, line)| (*n, line.clone()));
    let commented_line = text.lines().position(|line| {
        line.trim_start()
            .strip_prefix('#')
            .and_then(&line_options)
            .is_some_and(|o| o.conn_limit.is_some())
    });
    let stem = path.file_stem()?.to_str()?;
    Some(ConfOrigin {
        path: path.to_owned(),
        unit: stem.strip_prefix("memcached_").map_or_else(
            || "memcached".to_owned(),
            |name| format!("memcached@{name}"),
        ),
        conn_line,
        commented_line: commented_line.map(|i| i + 1),
    })
}

/// The lines Debian's `systemd-memcached-wrapper` passes on, with their
/// 1-based numbers: comments cut at an unescaped `#`, blank lines, `-d`
/// and `-h` lines and directives not starting with `-` (`logfile`) left out.
pub fn wrapper_params(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let cut = line
                .char_indices()
                .find(|&(at, c)| c == '#' && !line[..at].ends_with('\\'))
                .map_or(line, |(at, _)| &line[..at]);
            let line = cut.trim();
            let passed =
                line.starts_with('-') && !line.starts_with("-d") && !line.starts_with("-h");
            passed.then(|| (i + 1, line.to_owned()))
        })
        .collect()
}

/// The limit, its source, and what to change, from the parsed options, the
/// fds memcached keeps for itself and where Debian's service got them.
///
/// Clients = fd bound - own fds below it. E.g. memcached 1.6.18 `-c 200 -t
/// 4 -l 127.0.0.1` holds 23 fds of its own (3 stdio, an epoll fd and a
/// pipe for its main loop, an eventfd, an epoll fd and a pipe per worker
/// thread, 1 listener): 199 - 23 = 176 clients, the 177th is told `ERROR
/// Too many open connections`.
pub fn conn_limit(options: &Options, own: OwnFds, origin: Option<&ConfOrigin>) -> AppLimit {
    let maxconns = options.maxconns();
    let fd_bound = options.fd_bound();
    let max_connections = fd_bound.saturating_sub(own.total());
    let overhead = maxconns - max_connections;
    let source = match (&options.conn_limit, origin) {
        (
            Some((_, written)),
            Some(ConfOrigin {
                path,
                conn_line: Some((line, _)),
                ..
            }),
        ) => format!(
            "command line {written} (from {}:{line} by Debian's systemd-memcached-wrapper)",
            path.display()
        ),
        (Some((_, written)), _) => format!("command line {written}"),
        (None, _) => format!("compiled-in default {DEFAULT_CONN_LIMIT}"),
    };
    let refusal = if options.maxconns_fast {
        format!(
            "answers `ERROR Too many open connections` and closes any connection that would get fd {} (maxconns_fast)",
            maxconns - 1
        )
    } else {
        format!(
            "stops accepting when its fd limit of {maxconns} is full (no_maxconns_fast), leaving new connections in the listen queue"
        )
    };
    let explanation = format!(
        "memcached -c {maxconns} caps its file descriptors, not its clients: it sets its RLIMIT_NOFILE to {maxconns}, \
         keeps {} fds for itself ({} for stdio, event loops and pipes of its {} worker thread{}, {} for listening sockets) and {refusal}, \
         so {max_connections} clients fit (`stats` max_connections shows the -c value, {maxconns})",
        own.total(),
        own.files,
        options.threads,
        if options.threads == 1 { "" } else { "s" },
        own.listeners,
    );
    let twice = maxconns * 2;
    let change = format!(
        "`-c N` lets N - {overhead} clients in, e.g. `-c {twice}` for {}",
        twice - overhead
    );
    let how = match origin {
        Some(ConfOrigin {
            path,
            unit,
            conn_line: Some((line, text)),
            ..
        }) => format!(
            "replace `{text}` at {}:{line} with `-c N`, then `systemctl restart {unit}`",
            path.display()
        ),
        Some(ConfOrigin {
            path,
            unit,
            commented_line,
            ..
        }) => format!(
            "add a line `-c N` to {}{}, then `systemctl restart {unit}`",
            path.display(),
            commented_line.map_or(String::new(), |n| format!(
                " (or uncomment the `-c` at line {n})"
            )),
        ),
        None => match &options.conn_limit {
            Some((_, written)) => format!("restart memcached with `-c N` instead of `{written}`"),
            None => "restart memcached with `-c N` added to its command line".to_owned(),
        },
    };
    AppLimit {
        name: NAME,
        setting: maxconns,
        max_connections,
        source,
        explanation,
        remedy: format!(
            "{how}; {change}. memcached sets its fd limit from -c, so raising `ulimit -n` or LimitNOFILE= does not help"
        ),
    }
}

/// For the fuzz targets (`parsers.rs`): the parsers of text the server's
/// admin or the kernel wrote (command line, config wrappers, socket
/// tables); how many accepted it.
pub fn parse_untrusted_text(text: &str) -> usize {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let mut accepted = usize::from(parse_args(&words).is_ok());
    accepted += usize::from(conf_origin(Path::new("/fuzz/memcached.conf"), text, &words).is_some());
    accepted += usize::from(!wrapper_params(text).is_empty());
    accepted += usize::from(!unix_listener_inodes(text).is_empty());
    accepted += usize::from(!inet_listener_inodes(text.lines(), true).is_empty());
    accepted
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{SocketAddr, TcpStream},
        process::{Child, Command, Stdio},
        time::Duration,
    };

    use super::{super::testing, *};

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn limit_of(line: &str) -> Option<(u64, String)> {
        parse_args(&argv(line)).unwrap().conn_limit
    }

    #[test]
    fn the_conn_limit_is_read_as_getopt_reads_it() {
        let options = parse_args(&argv("/usr/bin/memcached -m 64 -p 11211 -u memcache")).unwrap();
        assert_eq!(options.maxconns(), 1024);
        assert_eq!((options.threads, options.maxconns_fast), (4, true));
        assert_eq!(options.fd_bound(), 1023);
        let c = |n: u64, written: &str| Some((n, written.to_owned()));
        assert_eq!(limit_of("memcached -c 200"), c(200, "-c 200"));
        assert_eq!(limit_of("memcached -c200"), c(200, "-c200"));
        assert_eq!(limit_of("memcached -vvc 300 -m 64"), c(300, "-vvc 300"));
        assert_eq!(
            limit_of("memcached --conn-limit=400"),
            c(400, "--conn-limit=400")
        );
        assert_eq!(
            limit_of("memcached --conn-limit 500"),
            c(500, "--conn-limit 500")
        );
        assert_eq!(limit_of("memcached --conn=600"), c(600, "--conn=600"));
        // Later flags win; an option's value is not a flag; `--` ends them.
        assert_eq!(limit_of("memcached -c 100 -m 64 -c 700"), c(700, "-c 700"));
        assert_eq!(limit_of("memcached -P -c -u root"), None);
        assert_eq!(limit_of("memcached -c 800 -- -c 900"), c(800, "-c 800"));
        assert_eq!(limit_of("memcached -c 1200abc"), c(1200, "-c 1200abc"));
        assert!(parse_args(&argv("memcached -c 0")).is_err());
        assert!(parse_args(&argv("memcached -c many")).is_err());
        assert!(parse_args(&argv("memcached --dis=1")).is_err(), "ambiguous");
    }

    #[test]
    fn threads_udp_unix_and_maxconns_fast_are_read_too() {
        let options = parse_args(&argv(
            "memcached -t 2 -U 11211 -o hashpower=20,no_maxconns_fast",
        ))
        .unwrap();
        assert_eq!((options.threads, options.udp_port), (2, 11211));
        assert!(!options.maxconns_fast);
        assert_eq!(options.fd_bound(), 1024);
        let options =
            parse_args(&argv("memcached --threads=8 -o no_modern -o maxconns_fast")).unwrap();
        assert_eq!((options.threads, options.maxconns_fast), (8, true));
        let options = parse_args(&argv("memcached -s /run/mc.sock -o no_modern")).unwrap();
        assert_eq!(options.unix_socket.as_deref(), Some("/run/mc.sock"));
        assert!(!options.maxconns_fast);
        assert_eq!((atoi(" 12abc"), atoi("-3"), atoi("x")), (12, -3, 0));
    }

    /// `ls -l /proc/PID/fd` of memcached 1.6.18 `-t 2 -l 127.0.0.1 -U
    /// 21299` with two clients (the UDP socket is dup'd per thread), and
    /// /dev/null at fd 10 and a pipe at fd 251 inherited from its parent.
    #[test]
    fn own_fds_are_everything_but_client_sockets() {
        let listing = "0 /dev/null|1 pipe:[9]|2 pipe:[9]|3 anon_inode:[eventpoll]|4 pipe:[41130]\
            |5 pipe:[41130]|6 anon_inode:[eventfd]|7 anon_inode:[eventpoll]|8 pipe:[41135]\
            |9 pipe:[41135]|10 /dev/null|11 anon_inode:[eventfd]|12 anon_inode:[eventpoll]\
            |13 pipe:[41136]|14 pipe:[41136]|15 socket:[41149]|16 socket:[41150]\
            |17 socket:[41150]|18 socket:[50001]|19 socket:[50002]|251 pipe:[20074]";
        let fds: Vec<(u64, String)> = listing
            .split('|')
            .map(|entry| {
                let (fd, target) = entry.split_once(' ').unwrap();
                (fd.parse().unwrap(), target.to_owned())
            })
            .collect();
        let listeners = HashSet::from([41149, 41150]);
        let own = count_own_fds(&fds, 99, &listeners);
        assert_eq!(
            own,
            OwnFds {
                files: 15,
                listeners: 3
            }
        );
        assert_eq!(count_own_fds(&fds, 1023, &listeners).files, 16);
    }

    #[test]
    fn listeners_are_the_head_of_proc_net_tcp() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 655 1 000000002aac3feb 100 0 0 10 0
   1: 0100007F:2BCB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 61777 1 000000001d31db5a 100 0 0 10 0
   2: 0100007F:2BCB 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 61780 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 61790 1 000000001d31db5a 100 0 0 10 0";
        assert_eq!(inet_listener_inodes(tcp.lines(), false), [655, 61777]);
        assert_eq!(inet_listener_inodes(tcp.lines(), true).len(), 4);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path
000000004ca63794: 00000002 00000000 00010000 0001 01 41151 /run/memcached.sock
00000000cc2f2c22: 00000003 00000000 00000000 0001 03 61778";
        assert_eq!(unix_listener_inodes(unix), [41151]);
    }

    /// Debian 12's /etc/memcached.conf, with `-c` set at line 38.
    const DEBIAN_CONF: &str = "# memcached default config file
# 2003 - Jay Bonci <jaybonci@debian.org>
# This configuration file is read by the start-memcached script provided as
# part of the Debian GNU/Linux distribution.

# Run memcached as a daemon. This command is implied, and is not needed for the
# daemon to run. See the README.Debian that comes with this package for more
# information.
-d

# Log memcached's output to /var/log/memcached
logfile /var/log/memcached.log

# Be verbose
# -v

# Be even more verbose (print client commands as well)
# -vv

# Start with a cap of 64 megs of memory. It's reasonable, and the daemon default
# Note that the daemon will grow to this size, but does not start out holding this much
# memory
-m 64

# Default connection port is 11211
-p 11211

# Run the daemon as root. The start-memcached will default to running as root if no
# -u command is present in this config file
-u memcache

# Specify which IP address to listen on. The default is to listen on all IP addresses
# This parameter is one of the only security measures that memcached has, so make sure
# it's listening on a firewalled interface.
-l 127.0.0.1

# Limit the number of simultaneous incoming connections. The daemon default is 1024
-c 1200  # raised for the web tier

# Lock down all paged memory. Consult with the README.Debian before using this
# -k

# Use a pid file
-P /var/run/memcached/memcached.pid
";

    #[test]
    fn debian_conf_lines_are_found_when_they_made_the_command_line() {
        let cmdline = argv(
            "/usr/bin/memcached -m 64 -p 11211 -u memcache -l 127.0.0.1 -c 1200 -P /var/run/memcached/memcached.pid",
        );
        let path = Path::new("/etc/memcached.conf");
        let origin = conf_origin(path, DEBIAN_CONF, &cmdline).unwrap();
        assert_eq!(origin.conn_line, Some((38, "-c 1200".to_owned())));
        assert_eq!(origin.unit, "memcached");
        // Another instance's file did not make this command line.
        assert_eq!(
            conf_origin(path, DEBIAN_CONF, &argv("memcached -c 1200")),
            None
        );
        // The stock file has `-c` commented out.
        let stock = DEBIAN_CONF.replace("-c 1200  # raised for the web tier", "# -c 1024");
        let cmdline = argv(
            "/usr/bin/memcached -m 64 -p 11211 -u memcache -l 127.0.0.1 -P /var/run/memcached/memcached.pid",
        );
        let named = Path::new("/etc/memcached_sessions.conf");
        let origin = conf_origin(named, &stock, &cmdline).unwrap();
        assert_eq!((origin.conn_line, origin.commented_line), (None, Some(38)));
        assert_eq!(origin.unit, "memcached@sessions");
    }

    #[test]
    fn clients_are_the_fd_bound_minus_memcached_s_own_fds() {
        let own = OwnFds {
            files: 22,
            listeners: 1,
        };
        let options = parse_args(&argv("memcached -c 200 -t 4")).unwrap();
        let limit = conn_limit(&options, own, None);
        assert_eq!((limit.setting, limit.max_connections), (200, 176));
        assert_eq!(limit.source, "command line -c 200");
        assert!(
            limit.explanation.contains("keeps 23 fds"),
            "{}",
            limit.explanation
        );
        assert!(
            limit.remedy.contains("`-c 400` for 376"),
            "{}",
            limit.remedy
        );
        assert!(
            limit
                .remedy
                .starts_with("restart memcached with `-c N` instead of `-c 200`")
        );
        let options = parse_args(&argv("memcached -c 200 -o no_maxconns_fast")).unwrap();
        assert_eq!(conn_limit(&options, own, None).max_connections, 177);
        let options = parse_args(&argv("memcached")).unwrap();
        let limit = conn_limit(&options, own, None);
        assert_eq!(
            (limit.max_connections, limit.source.as_str()),
            (1000, "compiled-in default 1024")
        );
    }

    #[test]
    fn the_remedy_names_the_debian_conf_line() {
        let cmdline = argv(
            "/usr/bin/memcached -m 64 -p 11211 -u memcache -l 127.0.0.1 -c 1200 -P /var/run/memcached/memcached.pid",
        );
        let origin = conf_origin(Path::new("/etc/memcached.conf"), DEBIAN_CONF, &cmdline);
        let options = parse_args(&cmdline).unwrap();
        let own = OwnFds {
            files: 23,
            listeners: 1,
        };
        let limit = conn_limit(&options, own, origin.as_ref());
        assert_eq!(
            limit.source,
            "command line -c 1200 (from /etc/memcached.conf:38 by Debian's systemd-memcached-wrapper)"
        );
        assert!(
            limit.remedy.starts_with(
                "replace `-c 1200` at /etc/memcached.conf:38 with `-c N`, then `systemctl restart memcached`"
            ),
            "{}",
            limit.remedy
        );
    }

    const MEMCACHED: &str = "/usr/bin/memcached";

    /// A memcached child, killed by pid and reaped on drop.
    struct Memcached {
        child: Child,
        addr: SocketAddr,
    }

    impl Drop for Memcached {
        fn drop(&mut self) {
            testing::stop(&mut self.child, None, &[]);
        }
    }

    /// memcached on a free loopback port with `-c cap` and `extra` flags
    /// (`PORT` in them stands for that port).
    fn start(cap: u64, extra: &[&str]) -> Option<Memcached> {
        if !Path::new(MEMCACHED).exists() {
            testing::skip(&format!(
                "{MEMCACHED} is not installed (apt install memcached)"
            ));
            return None;
        }
        let port = testing::free_port();
        let port_text = port.to_string();
        let mut command = Command::new(MEMCACHED);
        if !extra.contains(&"-l") {
            command.args(["-l", "127.0.0.1"]);
        }
        if !extra.contains(&"-U") {
            command.args(["-U", "0"]);
        }
        let child = command
            .args(["-p", &port_text, "-c", &cap.to_string(), "-u", "root"])
            .args(extra.iter().map(|arg| {
                if *arg == "PORT" {
                    port_text.as_str()
                } else {
                    arg
                }
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Memcached {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        for _ in 0..100 {
            if let Some(reply) = version(server.addr) {
                assert!(reply.starts_with("VERSION"), "{reply}");
                // Let memcached close the probe's fd before anyone counts.
                std::thread::sleep(Duration::from_millis(200));
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("memcached did not answer on {}", server.addr);
    }

    /// Connect and ask `version`: the reply, or None if connecting failed.
    fn version(addr: SocketAddr) -> Option<String> {
        let (_, reply) = version_on(addr)?;
        Some(reply)
    }

    fn version_on(addr: SocketAddr) -> Option<(TcpStream, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = stream.write_all(b"version\r\n");
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).unwrap_or(0);
        Some((stream, String::from_utf8_lossy(&reply[..n]).into_owned()))
    }

    /// Clients memcached serves at once: connect, each asking `version`,
    /// until one is refused (`ERROR Too many open connections`, closed,
    /// or left unanswered in the listen queue).
    fn measure(addr: SocketAddr) -> u64 {
        let mut held = Vec::new();
        loop {
            match version_on(addr) {
                Some((stream, reply)) if reply.starts_with("VERSION") => held.push(stream),
                other => {
                    eprintln!(
                        "memcached refused client {}: {:?}",
                        held.len() + 1,
                        other.map(|o| o.1)
                    );
                    return held.len() as u64;
                }
            }
            assert!(held.len() < 10_000, "memcached never refused");
        }
    }

    fn reader_matches_the_real_server(cap: u64, extra: &[&str]) {
        let Some(server) = start(cap, extra) else {
            return;
        };
        let pid = server.child.id();
        let processes = super::super::server_processes(&[pid], &[server.addr]);
        let mine: Vec<&ServerProcess> = processes.iter().collect();
        let limits = read(&mine).unwrap();
        let [limit] = limits.as_slice() else {
            panic!("{limits:?}");
        };
        eprintln!("{limit:#?}");
        let measured = measure(server.addr);
        eprintln!(
            "-c {cap} {extra:?}: memcached served {measured}, the reader says {}",
            limit.max_connections
        );
        assert_eq!(limit.name, NAME);
        assert_eq!(limit.setting, cap);
        assert_eq!(limit.max_connections, measured, "{limit:#?}");
        assert_eq!(limit.source, format!("command line -c {cap}"));
    }

    #[test]
    fn a_real_memcached_with_4_threads_serves_what_the_reader_says() {
        reader_matches_the_real_server(200, &["-t", "4"]);
    }

    #[test]
    fn a_real_memcached_with_2_threads_serves_what_the_reader_says() {
        reader_matches_the_real_server(100, &["-t", "2"]);
    }

    #[test]
    fn a_real_memcached_without_maxconns_fast_serves_what_the_reader_says() {
        reader_matches_the_real_server(120, &["-t", "1", "-o", "no_maxconns_fast"]);
    }

    /// Two listeners (one IPv6) and a UDP socket dup'd for each of 2 threads.
    #[test]
    fn a_real_memcached_with_udp_and_ipv6_serves_what_the_reader_says() {
        reader_matches_the_real_server(100, &["-t", "2", "-l", "127.0.0.1,[::1]", "-U", "PORT"]);
    }
}
