//! A multi-client pager: several kernels map one memory object and every page
//! stays coherent — many readers or one writer.
//!
//! [`engine::Engine`] is the pure coherence engine; [`server::Pager`] wires it to
//! Mach messages (memory_object in, memory_object_control out) through the
//! project's interface definitions, and is what a file server uses.
#![forbid(unsafe_code)]

pub mod engine;
pub mod server;

pub use engine::{Access, Action, ClientId, Config, Engine, Event, PageIndex};
pub use server::{BackingStore, Pager};
