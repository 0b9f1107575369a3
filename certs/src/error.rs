use std::path::PathBuf;

use thiserror::Error;

/// Errors of this crate, by blame. Messages say what to do next.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    // --- the peer or the CA refused ---
    #[error("the CA refused: {0}")]
    Refused(String),
    #[error("the server presented key fingerprints {found}, but the token pins {expected}: this is not your cluster's CA (or the token is for another cluster); nothing was sent")]
    PinMismatch { expected: String, found: String },
    #[error("enrollment protocol: {0}")]
    Protocol(String),

    // --- bad input: tokens, files, arguments ---
    #[error("not a netmsg join token (expected NMT1-<pin>-<id>.<secret>); get one with `netmsg cert token --name NODE` on the CA node")]
    BadToken,
    #[error("{path}: {what}")]
    File { path: PathBuf, what: String },
    #[error("{0}")]
    Usage(String),

    // --- local state ---
    #[error("{path} already exists: refusing to overwrite it ({hint})")]
    Exists { path: PathBuf, hint: &'static str },
    #[error("{path} is missing: {hint}")]
    Missing { path: PathBuf, hint: &'static str },

    // --- I/O, network, crypto ---
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Network(String),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    pub(crate) fn file(path: &std::path::Path, what: impl Into<String>) -> Self {
        Error::File {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}
