//! Shared by the wire and hostile-peer tests.

use netmsg::wire::{Form, WireItem, WireMessage, WireRight};

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
