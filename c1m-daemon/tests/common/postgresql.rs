//! A real PostgreSQL for the end-to-end tests: a temporary cluster
//! (`initdb`) started with `-c max_connections=CAP` on a free loopback
//! port, ended by pid; and a minimal client of its protocol (v3:
//! StartupMessage, trust authentication, simple Query) to open sessions.
//!
//! Sessions need that client: `c1m-daemon load` cannot make postgres count
//! one. A raw TCP connection gets a backend process of its own, which waits
//! up to authentication_timeout (60 s) for a startup packet and is never
//! refused before; load's messages (bytes 0, 1, 2, ...) read as a startup
//! packet 66051 bytes long, which postgres closes as invalid.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The ordinary (non-superuser) role `start` creates: the one
/// [`allowed`] counts for.
pub const USER: &str = "app";

/// Sessions an ordinary role gets with `max_connections = cap`: the last 3
/// (superuser_reserved_connections' default) are kept for superusers.
pub fn allowed(cap: u64) -> u64 {
    cap - 3
}

/// A running postgres, ended (immediate shutdown, then SIGKILL) and its
/// cluster removed on drop.
pub struct Running {
    pub child: Child,
    /// The postmaster's pid (setpriv execs it, so it is the child's).
    pub pid: u32,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling the postgres this test started, by its pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start postgres with `max_connections = cap` and the role [`USER`];
/// None (after "SKIPPED") when it is not installed, unless
/// C1M_REQUIRE_KERNEL_TESTS=1.
pub fn start(cap: u64) -> Option<Running> {
    let Some(bin) = bindir() else {
        let why = "no PostgreSQL server (/usr/lib/postgresql/*/bin/postgres and initdb)";
        if std::env::var("C1M_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
            panic!("{why}, and C1M_REQUIRE_KERNEL_TESTS=1 forbids skipping");
        }
        eprintln!("SKIPPED {why}");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("c1m-e2e-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    give_to_postgres(&dir);
    let data = dir.join("data");
    let out = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync"])
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!("initdb: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("max_connections={cap}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let running = Running {
        pid: child.id(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(why) = query(running.addr, "postgres", "SELECT 1") {
        assert!(
            Instant::now() < deadline,
            "postgres did not start: {why}: {}",
            std::fs::read_to_string(running.dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    query(
        running.addr,
        "postgres",
        &format!("CREATE ROLE {USER} LOGIN"),
    )
    .unwrap();
    Some(running)
}

/// The newest `/usr/lib/postgresql/VERSION/bin` with a server and initdb.
fn bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// postgres refuses to run as root: as root, run it as the `postgres` user
/// (Debian's package creates it).
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if !running_as_root() {
        return;
    }
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at once.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(!pw.is_null(), "no user postgres to run the server as");
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Open a session as `user` to database postgres: the stream once the
/// server is ready for queries, or its refusal ("sorry, too many clients
/// already", "remaining connection slots are reserved ...").
pub fn session(addr: SocketAddr, user: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let params = format!("user\0{user}\0database\0postgres\0\0");
    let mut message = ((8 + params.len()) as i32).to_be_bytes().to_vec();
    message.extend(196_608_i32.to_be_bytes()); // protocol 3.0
    message.extend(params.as_bytes());
    stream.write_all(&message).map_err(|e| e.to_string())?;
    until_ready(&mut stream)?;
    Ok(stream)
}

/// Read messages until ReadyForQuery ('Z'); an ErrorResponse ('E') is the
/// error.
fn until_ready(stream: &mut TcpStream) -> Result<(), String> {
    let mut error = None;
    loop {
        let mut header = [0u8; 5];
        if let Err(e) = stream.read_exact(&mut header) {
            return Err(error.unwrap_or_else(|| format!("connection ended: {e}")));
        }
        let len = i32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        match header[0] {
            b'Z' => return error.map_or(Ok(()), Err),
            b'E' => {
                let text = String::from_utf8_lossy(&body);
                let message = text
                    .split('\0')
                    .find_map(|field| field.strip_prefix('M'))
                    .unwrap_or(&text);
                error = Some(message.to_owned());
            }
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err("the server asks for a password, not trust".into());
            }
            _ => {}
        }
    }
}

/// A simple Query on a new session.
pub fn query(addr: SocketAddr, user: &str, sql: &str) -> Result<(), String> {
    let mut stream = session(addr, user)?;
    let mut message = vec![b'Q'];
    message.extend(((4 + sql.len() + 1) as i32).to_be_bytes());
    message.extend(sql.as_bytes());
    message.push(0);
    stream.write_all(&message).map_err(|e| e.to_string())?;
    until_ready(&mut stream)
}

/// Sessions of [`USER`] held on a thread, like an application's pool:
/// `attempts` opened one by one, then one more tried every 200 ms (each
/// refused while the server is full) until dropped, which closes them all.
pub struct Sessions {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    last_refusal: Arc<std::sync::Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Sessions {
    pub fn hold(addr: SocketAddr, attempts: u64) -> Sessions {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let last_refusal = Arc::new(std::sync::Mutex::new(String::new()));
        let (s, o, r, l) = (
            stop.clone(),
            open.clone(),
            refused.clone(),
            last_refusal.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut tried = 0;
            while !s.load(Ordering::Relaxed) {
                if tried >= attempts {
                    std::thread::sleep(Duration::from_millis(200));
                }
                tried += 1;
                match session(addr, USER) {
                    Ok(stream) => {
                        held.push(stream);
                        o.store(held.len() as u64, Ordering::Relaxed);
                    }
                    Err(why) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        *l.lock().unwrap() = why;
                    }
                }
            }
        });
        Sessions {
            stop,
            open,
            refused,
            last_refusal,
            thread: Some(thread),
        }
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn last_refusal(&self) -> String {
        self.last_refusal.lock().unwrap().clone()
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
