//! Helpers for tests against real servers, shared by the readers' own tests
//! (`#[cfg(test)]` here) and the end-to-end tests (`tests/common` includes
//! this file by path): a loud skip, a free loopback port, a temp dir and a
//! stop by pid that always clean up, and a minimal PostgreSQL. Only std and
//! libc, so it compiles in both places.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Child,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Say why a test cannot run here ("SKIPPED ..."), unless
/// `C1M_REQUIRE_KERNEL_TESTS=1` (set by `cargo xtask test` and CI), where a
/// skip would hide a failure, so it panics instead.
pub fn skip(why: &str) {
    if std::env::var("C1M_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
        panic!("{why}, and C1M_REQUIRE_KERNEL_TESTS=1 forbids skipping");
    }
    eprintln!("SKIPPED {why}");
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A directory of this test's own under the system's temp dir
/// (`c1m-TAG-PID-N`), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("c1m-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Write `text` to `path` under the directory (making its parents).
    pub fn write(&self, path: &str, text: &str) -> PathBuf {
        let path = self.0.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// End a server this test started, by pid: `signal` to `child` (the
/// master) first when given, waiting up to 5 s for it to exit; then
/// SIGKILL to `others` (its workers) and to `child`, which is reaped.
pub fn stop(child: &mut Child, signal: Option<i32>, others: &[u32]) {
    if let Some(signal) = signal {
        // SAFETY: signalling a process this test started, by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for &pid in others {
        // SAFETY: as above; one that already exited is gone (ESRCH).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A real PostgreSQL from a temporary cluster, and a minimal client of its
/// protocol (v3): StartupMessage, trust authentication, simple Query.
pub mod postgres {
    use std::{
        io::{Read as _, Write as _},
        net::{SocketAddr, TcpStream},
        path::{Path, PathBuf},
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    /// A running postgres, ended (immediate shutdown, then SIGKILL) and its
    /// cluster removed on drop.
    pub struct Postgres {
        pub child: Child,
        /// The postmaster's pid (setpriv execs it, so it is the child's).
        pub pid: u32,
        pub addr: SocketAddr,
        pub dir: PathBuf,
    }

    impl Postgres {
        /// `initdb` a cluster in a temp dir, write `files` (paths under the
        /// data directory), append `append` to postgresql.conf, and start
        /// postgres on a free loopback port with `args`; wait until it
        /// answers. None (and "SKIPPED") without postgres installed, unless
        /// C1M_REQUIRE_KERNEL_TESTS=1.
        pub fn start(
            tag: &str,
            args: &[&str],
            files: &[(&str, &str)],
            append: &str,
        ) -> Option<Postgres> {
            let Some(bin) = bindir() else {
                super::skip("no PostgreSQL server (/usr/lib/postgresql/*/bin/postgres and initdb)");
                return None;
            };
            let dir = std::env::temp_dir().join(format!("c1m-pg-{tag}-{}", std::process::id()));
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
            for (path, text) in files {
                let path = data.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text).unwrap();
                give_to_postgres(path.parent().unwrap());
                give_to_postgres(&path);
            }
            if !append.is_empty() {
                let conf = data.join("postgresql.conf");
                let mut text = std::fs::read_to_string(&conf).unwrap();
                text += append;
                std::fs::write(&conf, text).unwrap();
            }
            let port = super::free_port();
            let child = as_postgres(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("log")).unwrap())
                .spawn()
                .unwrap();
            let pg = Postgres {
                pid: child.id(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Err(why) = query(pg.addr, "postgres", "SELECT 1") {
                assert!(
                    Instant::now() < deadline,
                    "postgres did not start: {why}: {}",
                    std::fs::read_to_string(pg.dir.join("log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(pg)
        }

        pub fn data_dir(&self) -> PathBuf {
            self.dir.join("data")
        }
    }

    impl Drop for Postgres {
        fn drop(&mut self) {
            // SIGQUIT: immediate shutdown, the postmaster ends its children.
            super::stop(&mut self.child, Some(libc::SIGQUIT), &[]);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The newest `/usr/lib/postgresql/VERSION/bin` with a server and initdb.
    fn bindir() -> Option<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                (bin.join("postgres").exists() && bin.join("initdb").exists())
                    .then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    fn running_as_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// postgres refuses to run as root: as root, run it as the `postgres`
    /// user (Debian's package creates it; setpriv execs, so the pid is
    /// postgres's own).
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
        // SAFETY: getpwnam with a NUL-terminated name; the result is read
        // at once.
        let (uid, gid) = unsafe {
            let pw = libc::getpwnam(c"postgres".as_ptr());
            assert!(!pw.is_null(), "no user postgres to run the server as");
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }

    /// Open a session as `user` to database postgres: the stream once the
    /// server is ready for queries, or its refusal ("sorry, too many
    /// clients already", "remaining connection slots are reserved ...").
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

    /// Read messages until ReadyForQuery ('Z'); an ErrorResponse ('E') is
    /// the error.
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
}
