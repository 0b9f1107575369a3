//! QUIC links between netmsg nodes.
//!
//! One [`Node`] per process owns a UDP socket. Links to other nodes are mutually
//! authenticated (TLS 1.3 with client certificates, ALPN `netmsg/1`, 0-RTT off);
//! each [`Link`] knows its peer's [`PeerIdentity`] from the certificate. There is
//! one link per pair of nodes: crossed dials keep the connection dialed by the
//! node with the smaller name. On a link, each port's traffic runs on its own
//! unidirectional stream ([`PortSender`], [`PortReceiver`]) whose first frame
//! names a 64-bit port ID; one bidirectional control stream is always open.
//!
//! The crate knows nothing of Mach: frames are opaque bytes. Wire details are in
//! `docs/protocol.md`.
#![forbid(unsafe_code)]

mod error;
mod frame;
mod identity;
mod link;
mod node;
pub mod relay;
#[cfg(feature = "test-support")]
pub mod test_support;
mod tls;

pub use error::{CloseCode, Error};
pub use identity::PeerIdentity;
pub use link::{
    CreditPolicy, Link, LinkClosed, LinkStats, PortReceiver, PortSender, Rest, TrySend,
};
pub use node::{Node, NodeEvent, TransportOptions};
pub use tls::NodeTls;

/// The ALPN protocol of cluster links.
pub const ALPN: &[u8] = b"netmsg/1";
