use thiserror::Error;

/// Errors of this crate, by blame: malformed input first, then local misuse.
///
/// Kernel calls report Mach's own codes ([`crate::KernReturn`],
/// [`crate::MsgReturn`]); this enum covers decoding and typed RPC arguments.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // --- malformed input (a peer, a file, a user) ---
    #[error("message truncated at byte {offset}: {needed} bytes needed, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("msgh_size says {declared} bytes but the message has {actual}")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("misaligned at byte {offset}: {what}")]
    Misaligned { offset: usize, what: &'static str },
    #[error("{field} has bits set above the 32-bit port name")]
    NameHighBits { field: &'static str },
    #[error("type descriptor at byte {offset} has its unused bits set")]
    UnusedBits { offset: usize },
    #[error("long type descriptor at byte {offset} has a non-zero short header")]
    LongformHeader { offset: usize },
    #[error("type descriptor at byte {offset} names unknown type {type_name}")]
    UnknownType { offset: usize, type_name: u32 },
    #[error("port item at byte {offset} has msgt_size {size}; this ABI requires {expected}")]
    PortSize {
        offset: usize,
        size: u16,
        expected: u16,
    },
    #[error("item at byte {offset} is inline but has the deallocate bit")]
    DeallocInline { offset: usize },
    #[error("item at byte {offset} needs {length} bytes of data but only {remaining} remain")]
    ItemPastEnd {
        offset: usize,
        length: u64,
        remaining: usize,
    },
    #[error("reply id {found} does not answer request id {expected}")]
    ReplyMismatch { expected: i32, found: i32 },
    #[error("argument {index} of message {id}: {reason}")]
    Argument {
        id: i32,
        index: usize,
        reason: &'static str,
    },

    // --- local misuse ---
    #[error("unknown ABI {0:?} (expected x86_64 or i386)")]
    UnknownAbi(String),
    #[error("item {index}: {reason}")]
    Payload { index: usize, reason: &'static str },
    #[error("message of {size} bytes exceeds the 32-bit msgh_size")]
    TooLarge { size: u64 },
}
