//! Shared by the wire and hostile-peer tests.

use netmsg::wire::{Form, GlobalId, WireItem, WireMessage, WireRef, WireRight};

/// Message 1, by a send right, carrying `right` alone.
pub(crate) fn message_with_right(right: WireRight) -> WireMessage {
    WireMessage {
        id: 1,
        other_bits: 0,
        marker: false,
        dest_form: Form::Send,
        once: None,
        reply: None,
        origin: None,
        dependencies: Vec::new(),
        items: vec![WireItem::Rights {
            form: right.form,
            inline: true,
            longform: false,
            deallocate: false,
            rights: vec![right],
        }],
    }
}

/// A send export (ID, identity's home, port and incarnation, the one-shot
/// exports it names), from a strategy's tuple.
#[allow(dead_code)] // (Not every test crate that includes this file uses it.)
pub(crate) fn sender_export(
    (id, home, port, incarnation, once_exports): (u64, String, u64, u64, Vec<u64>),
) -> WireRef {
    WireRef::SenderExport {
        id,
        global: GlobalId {
            home,
            port,
            incarnation,
        },
        once_exports,
    }
}
