//! netmsg's cluster certificate authority and node enrollment.
//!
//! Every node proves who it is with its own certificate; its private key never
//! leaves it. The CA node ([`Authority`]) issues one-time join tokens that carry
//! the CA's public-key pin; a new node [`enroll`]s with one: it makes its key and
//! a CSR, checks the CA by the pin before sending anything, proves it holds the
//! token without sending the secret (an HMAC bound to the TLS session), and gets
//! its certificate, the CA bundle and the current CRL. [`Credentials`] turns a
//! node's state directory into the verifiers its links use.
#![forbid(unsafe_code)]

mod authority;
mod credentials;
mod enroll;
mod error;
mod pem;
mod pin;
mod state;
mod token;

pub use authority::{Authority, Issued, IssuedCert, TokenInfo, CRL_TTL, LEAF_TTL};
pub use credentials::{renewal_time, Credentials, CrlInfo};
pub use enroll::{enroll, renew, renew_local, serve_connection, EnrollmentGuard, ENROLL_ALPN};
pub use error::Error;
pub use pin::spki_sha256;
pub use state::StateDir;
pub use token::JoinToken;
