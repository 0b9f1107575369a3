//! Shared by the wire and hostile-peer property tests.

use netmsg::wire::{Dependency, Form, HomeLane, WireRef, WireRight};

/// A right as the decoder accepts it: positions only on a named right, a home
/// stream only on a right its sender exports (the rest is dropped).
pub(crate) fn valid_right(
    form: Form,
    reference: WireRef,
    watermark: u64,
    after: Vec<Dependency>,
    home_stream: Option<HomeLane>,
) -> WireRight {
    let named = !matches!(reference, WireRef::Null | WireRef::Dead);
    let exported = matches!(reference, WireRef::SenderExport { .. });
    WireRight {
        form,
        after: if named { after } else { Vec::new() },
        home_stream: home_stream.filter(|_| exported),
        reference,
        watermark,
    }
}
