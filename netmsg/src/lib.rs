//! netmsg: Mach messages between machines. The library holds the translator's
//! parts; `src/main.rs` is the `netmsg` command.
#![forbid(unsafe_code)]

pub mod causal;
pub mod driver;
pub mod echo;
pub mod release;
pub mod sim;
pub mod translate;
pub mod wire;
