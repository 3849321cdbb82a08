//! What a load connection says once it is connected, so a server that
//! allocates per client on first use is priced as in production: nothing
//! (idle), a message and the reply it must start with (`--send/--expect`,
//! e.g. redis `PING\r\n` / `+PONG`), or one keep-alive HTTP GET read to the
//! end of its body (`--http PATH`). A connection counts as open only once
//! answered.
//!
//! Failures are counted by name like socket errors: the server closing
//! before answering is `UnexpectedEof` (accepted, then closed), a reply
//! that is not the expected one `InvalidData`.

use std::{io, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Replies longer than this without the expected text are wrong.
const MAX_REPLY_BYTES: usize = 64 * 1024;

pub use crate::loadgen::protocol::Greeting;

impl Greeting {
    /// One line for humans: what each connection does.
    pub fn describe(&self) -> String {
        match self {
            Greeting::Send { send, expect } => format!(
                "sends {:?} and expects {:?}",
                String::from_utf8_lossy(send),
                String::from_utf8_lossy(expect)
            ),
            Greeting::Http { path } => format!("one keep-alive HTTP GET {path}"),
        }
    }
}

/// Run the greeting on a fresh connection.
pub async fn greet(
    stream: &mut TcpStream,
    greeting: &Greeting,
    target: SocketAddr,
) -> io::Result<()> {
    match greeting {
        Greeting::Send { send, expect } => {
            stream.write_all(send).await?;
            let mut reply = Vec::new();
            read_until(stream, &mut reply, |r| {
                if expect.is_empty() {
                    !r.is_empty()
                } else {
                    r.windows(expect.len()).any(|w| w == expect.as_slice())
                }
            })
            .await
        }
        Greeting::Http { path } => {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: c1m-load\r\nAccept: */*\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut reply = Vec::new();
            read_until(stream, &mut reply, |r| http_complete(r).is_some()).await?;
            match http_complete(&reply) {
                Some(true) => Ok(()),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an HTTP response",
                )),
            }
        }
    }
}

/// Read into `reply` until `done` says so; EOF first is `UnexpectedEof`.
async fn read_until(
    stream: &mut TcpStream,
    reply: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> io::Result<()> {
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering",
            ));
        }
        reply.extend_from_slice(&buffer[..n]);
        if done(reply) {
            return Ok(());
        }
        if reply.len() > MAX_REPLY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no expected reply within 64 KiB",
            ));
        }
    }
}

/// Whether `reply` holds a whole HTTP response (headers and, by
/// Content-Length, body): `Some(ok)` when complete, `ok` = it is HTTP.
pub fn http_complete(reply: &[u8]) -> Option<bool> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&reply[..end]);
    if !head.starts_with("HTTP/1.") {
        return Some(false);
    }
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    (reply.len() >= end + 4 + length).then_some(true)
}

/// C-style escapes in a command-line text: `\r`, `\n`, `\t`, `\0`, `\\`,
/// `\xHH`.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("{text:?}: \\x wants two hex digits, e.g. \\x0a"))?;
                out.push(byte);
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown escape \\{}; use \\r \\n \\t \\0 \\\\ or \\xHH",
                    other.map_or(String::new(), String::from)
                ));
            }
        }
    }
    Ok(out)
}

/// The inverse of [`unescape`]: printable ASCII as is, the rest escaped,
/// to hand bytes to a child process on its command line.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_reads_back() {
        let bytes = b"PING\r\n\\\x01\xff ok".to_vec();
        assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        assert_eq!(escape(b"PING\r\n"), r"PING\r\n");
    }

    #[test]
    fn escapes_are_c_style() {
        assert_eq!(unescape(r"PING\r\n").unwrap(), b"PING\r\n");
        assert_eq!(unescape(r"a\x41\\").unwrap(), b"aA\\");
        assert!(unescape(r"\q").unwrap_err().contains("unknown escape"));
        assert!(unescape(r"\xZ").is_err());
    }

    #[test]
    fn an_http_response_is_complete_with_its_body() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(http_complete(head), None);
        assert_eq!(http_complete(&[head.as_slice(), b"ok"].concat()), None);
        assert_eq!(
            http_complete(&[head.as_slice(), b"ok\n"].concat()),
            Some(true)
        );
        assert_eq!(http_complete(b"SSH-2.0\r\n\r\n"), Some(false));
        assert_eq!(
            http_complete(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Some(true)
        );
    }
}
