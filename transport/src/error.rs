use std::fmt;

use thiserror::Error;

/// Application close codes of a link (QUIC `CONNECTION_CLOSE` error codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// Orderly shutdown.
    Done,
    /// A crossed dial lost to the connection the other way.
    Duplicate,
    /// The peer broke the framing rules (oversized or malformed frame).
    ProtocolViolation,
    /// The peer's certificate does not name exactly one node.
    BadIdentity,
    /// The peer's certificate was revoked or expired while connected.
    Revoked,
    /// The node is shutting down.
    Shutdown,
    /// A newer connection from the same peer replaced this one.
    Superseded,
    /// A code this version does not know.
    Other(u32),
}

impl CloseCode {
    pub const fn code(self) -> u32 {
        match self {
            CloseCode::Done => 0,
            CloseCode::Duplicate => 1,
            CloseCode::ProtocolViolation => 2,
            CloseCode::BadIdentity => 3,
            CloseCode::Revoked => 4,
            CloseCode::Shutdown => 5,
            CloseCode::Superseded => 6,
            CloseCode::Other(c) => c,
        }
    }
    pub const fn from_code(c: u64) -> Self {
        match c {
            0 => CloseCode::Done,
            1 => CloseCode::Duplicate,
            2 => CloseCode::ProtocolViolation,
            3 => CloseCode::BadIdentity,
            4 => CloseCode::Revoked,
            5 => CloseCode::Shutdown,
            6 => CloseCode::Superseded,
            c => CloseCode::Other(c as u32),
        }
    }
    pub(crate) fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.code())
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Errors of this crate, by blame: the peer, local misuse, I/O and TLS, bugs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    // --- the peer ---
    #[error("peer sent a frame of {length} bytes; the limit is {max}")]
    FrameTooLarge { length: u64, max: u64 },
    #[error("peer broke the protocol: {0}")]
    Protocol(String),
    #[error("peer certificate: {0}")]
    Identity(String),
    #[error("link closed: {0}")]
    Closed(crate::link::LinkClosed),
    #[error("peer reset the stream (code {0})")]
    Reset(u64),

    // --- local misuse ---
    #[error("invalid node name {0:?}: node names must be DNS names")]
    BadNodeName(String),
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("frame of {length} bytes exceeds the configured limit {max}")]
    FrameTooLargeToSend { length: u64, max: u64 },
    #[error("stream already finished")]
    Finished,
    #[error("the rest of a frame begun on port {rest_of} given to another sender (port {sender})")]
    RestOfAnotherSender { rest_of: u64, sender: u64 },

    // --- I/O and the network ---
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("timed out {0}")]
    TimedOut(&'static str),
}
