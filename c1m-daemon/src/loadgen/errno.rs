//! Socket errors by name, counted: what the echo server and the load
//! generator report instead of a vague "connection failed".

use std::{collections::BTreeMap, io, sync::Mutex};

/// `EMFILE`, `ECONNRESET`... or the error kind when there is no errno.
pub fn errno_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => errno_code_name(code),
        None => format!("{:?}", err.kind()),
    }
}

pub fn errno_code_name(code: i32) -> String {
    let name = match code {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EPIPE => "EPIPE",
        libc::EAGAIN => "EAGAIN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EINVAL => "EINVAL",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        other => return format!("errno {other}"),
    };
    name.to_owned()
}

/// Errors by name, shared between tasks.
#[derive(Debug, Default)]
pub struct ErrorCounts(Mutex<BTreeMap<String, u64>>);

impl ErrorCounts {
    pub fn count(&self, err: &io::Error) {
        self.count_name(errno_name(err));
    }

    pub fn count_name(&self, name: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errnos_and_counts_them() {
        let counts = ErrorCounts::default();
        counts.count(&io::Error::from_raw_os_error(libc::EMFILE));
        counts.count(&io::Error::from_raw_os_error(libc::EMFILE));
        counts.count(&io::Error::from_raw_os_error(4095));
        counts.count(&io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
        let snap = counts.snapshot();
        assert_eq!(snap["EMFILE"], 2);
        assert_eq!(snap["errno 4095"], 1);
        assert_eq!(snap["UnexpectedEof"], 1);
    }
}
