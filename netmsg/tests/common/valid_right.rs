//! Shared by the wire and hostile-peer property tests.

use netmsg::release::{MOVED_ID_BIT, SEND_ONCE_ID_BIT};
use netmsg::wire::{Dependency, Form, HomeLane, WireRef, WireRight};

/// A right as the decoder accepts it: positions only on a named send right,
/// a home stream only on a send right its sender exports, a named
/// send-once right only as a one-shot export (or one coming home) and a
/// one-shot export only as a send-once right, a named receive right only as a moved one and a moved
/// one only as a receive right (the rest is dropped or changed to fit).
pub(crate) fn valid_right(
    form: Form,
    reference: WireRef,
    watermark: u64,
    after: Vec<Dependency>,
    home_stream: Option<HomeLane>,
) -> WireRight {
    let named = !matches!(reference, WireRef::Null | WireRef::Dead);
    let reference = match reference {
        WireRef::SenderExport { id, .. }
        | WireRef::ReceiverExport { id }
        | WireRef::OnceExport { id, .. }
        | WireRef::OnceHome { id }
            if form == Form::Receive =>
        {
            WireRef::MovedReceive {
                id: (id | MOVED_ID_BIT) & !SEND_ONCE_ID_BIT,
                no_senders: None,
                port_destroyed: None,
            }
        }
        WireRef::SenderExport { id, .. } | WireRef::ReceiverExport { id }
            if form == Form::SendOnce =>
        {
            WireRef::OnceExport {
                id,
                port_stream: None,
            }
        }
        WireRef::OnceExport { id, .. } | WireRef::OnceHome { id } if form == Form::Send => {
            WireRef::ReceiverExport { id }
        }
        WireRef::MovedReceive { .. } if form != Form::Receive => WireRef::Null,
        r => r,
    };
    let named = named && reference != WireRef::Null;
    let moved = matches!(reference, WireRef::MovedReceive { .. });
    let once = matches!(
        reference,
        WireRef::OnceExport { .. } | WireRef::OnceHome { .. }
    );
    let exported = matches!(reference, WireRef::SenderExport { .. });
    WireRight {
        form,
        after: if named && !moved && !once {
            after
        } else {
            Vec::new()
        },
        home_stream: home_stream.filter(|_| exported),
        reference,
        watermark: if moved { 0 } else { watermark },
    }
}
