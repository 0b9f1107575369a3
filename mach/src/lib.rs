//! A user-space model of GNU Mach IPC.
//!
//! [`Kernel`] is a pure state machine holding ports, port sets and IPC spaces;
//! [`runtime::Host`] drives it on tokio. [`codec`] reads and writes the exact GNU
//! Mach message layout; [`interface!`] defines MIG-style RPC interfaces, and
//! [`interfaces`] holds the ones the project uses.
#![forbid(unsafe_code)]

pub mod codec;
mod error;
pub mod interfaces;
mod kernel;
mod message;
pub mod rpc;
pub mod runtime;
pub mod types;

pub use codec::Abi;
pub use error::Error;
pub use kernel::{
    Kernel, PortId, PortStatus, PsetId, RecvError, RecvOptions, SendError, SendStatus, SendTicket,
    TaskId, Waitable, Wake,
};
pub use message::{Item, Message, Payload};
pub use types::{KernReturn, MsgReturn, Name, PortRight, NAME_DEAD, NAME_NULL};
