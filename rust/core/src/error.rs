//! The crate-wide error type.

use std::fmt;
use std::path::PathBuf;

/// Every failure this crate reports.
#[derive(Debug)]
pub enum Error {
    /// An operating-system call failed.
    ///
    /// `source.raw_os_error()` keeps the errno so the Python side can raise
    /// the matching `OSError` subclass with `filename=path`.
    Io {
        /// Short name of the failed operation, e.g. `"open"` or `"rename"`.
        op: &'static str,
        /// The path the operation was about (the user's target path where
        /// the failing file is only a temporary stand-in for it).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Input could not be decoded by the strict fast path.
    Decode {
        /// Byte offset of the first offending byte in the decoder's input.
        offset: usize,
        /// Short human-readable reason.
        reason: String,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The same failure again (`io::Error` is not `Clone`), for the later
    /// calls of a writer that failed.
    pub(crate) fn repeat(&self) -> Self {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(errno) => std::io::Error::from_raw_os_error(errno),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Decode { offset, reason } => Error::decode(*offset, reason.clone()),
        }
    }

    /// A writer used while its sink changed hands, which only a panic in
    /// the middle of that could leave behind.
    pub(crate) fn moving() -> Self {
        Error::io(
            "write",
            PathBuf::new(),
            std::io::Error::other("the writer is unusable after an earlier failure"),
        )
    }

    pub(crate) fn decode(offset: usize, reason: impl Into<String>) -> Self {
        Error::Decode {
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "{op} failed for {}: {source}", path.display())
            }
            Error::Decode { offset, reason } => {
                write!(f, "invalid base64 data at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Decode { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_keeps_errno_and_formats() {
        let e = Error::io(
            "open",
            "/x/y",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        match &e {
            Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOENT)),
            Error::Decode { .. } => unreachable!(),
        }
        let s = e.to_string();
        assert!(s.contains("open") && s.contains("/x/y"), "{s}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn decode_error_formats() {
        let e = Error::decode(7, "bad");
        assert_eq!(e.to_string(), "invalid base64 data at byte 7: bad");
        assert!(std::error::Error::source(&e).is_none());
    }
}
