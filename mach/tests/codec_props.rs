//! Codec properties: encode → decode → encode is the identity for both ABIs, and
//! the decoder answers every byte string with a message or an error.

use mach::types::msg_type as mt;
use mach::{codec, Abi, Item, Message, Payload};
use proptest::prelude::*;

fn data_item() -> impl Strategy<Value = Item> {
    let type_name = prop::sample::select(vec![
        mt::BIT,
        mt::INTEGER_16,
        mt::INTEGER_32,
        mt::CHAR,
        mt::BYTE,
        mt::REAL,
        mt::INTEGER_64,
        mt::STRING,
        mt::PORT_NAME,
    ]);
    let size = prop_oneof![
        Just(1u16),
        Just(8),
        Just(16),
        Just(32),
        Just(64),
        1u16..2048
    ];
    let number = prop_oneof![0u32..40, 4000u32..5000];
    (
        type_name,
        size,
        number,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_flat_map(
            |(type_name, size, number, inline, longform, deallocate, addr)| {
                let number = if inline {
                    number.min(600 * 8 / u32::from(size).max(1) + 1)
                } else {
                    number
                };
                let len = (u64::from(number) * u64::from(size)).div_ceil(8) as usize;
                prop::collection::vec(any::<u8>(), len).prop_map(move |bytes| Item {
                    type_name,
                    size,
                    number,
                    inline,
                    longform,
                    deallocate: deallocate && !inline,
                    payload: if inline {
                        Payload::Bytes(bytes)
                    } else {
                        Payload::Address(u64::from(addr))
                    },
                })
            },
        )
}

fn port_item() -> impl Strategy<Value = Item> {
    (
        16u8..=21,
        prop::collection::vec(any::<u32>(), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(disposition, names, inline, deallocate, addr)| {
            if inline {
                Item::ports(disposition, names)
            } else {
                Item {
                    deallocate,
                    payload: Payload::Address(u64::from(addr)),
                    ..Item::ool_ports(disposition, names, false)
                }
            }
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
        prop::collection::vec(prop_oneof![data_item(), port_item()], 0..8),
    )
        .prop_map(|(bits, remote_port, local_port, seqno, id, body)| Message {
            // A protected payload would widen msgh_local_port; keep it a name.
            bits: if bits >> 8 & 0xff == u32::from(mt::PROTECTED_PAYLOAD) {
                bits ^ 0x100
            } else {
                bits
            },
            remote_port,
            local_port,
            seqno,
            id,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_encode_is_identity(msg in message()) {
        for abi in [Abi::X86_64, Abi::I386] {
            let first = codec::encode(abi, &msg).unwrap();
            prop_assert_eq!(first.len() as u64, abi.message_len(&msg));
            let decoded = codec::decode(abi, &first).unwrap();
            prop_assert_eq!(codec::encode(abi, &decoded).unwrap(), first);
            prop_assert_eq!((decoded.bits, decoded.remote_port, decoded.local_port, decoded.seqno, decoded.id),
                (msg.bits, msg.remote_port, msg.local_port, msg.seqno, msg.id));
            prop_assert_eq!(decoded.body.len(), msg.body.len());
            for (d, m) in decoded.body.iter().zip(&msg.body) {
                prop_assert_eq!((d.type_name, d.number, d.inline, d.deallocate), (m.type_name, m.number, m.inline, m.deallocate));
                prop_assert_eq!(&d.payload, &m.payload);
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_mutations(msg in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        for abi in [Abi::X86_64, Abi::I386] {
            let mut bytes = codec::encode(abi, &msg).unwrap();
            for (at, value) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= value;
            }
            let _ = codec::decode(abi, &bytes);
            let cut = cut.index(bytes.len() + 1);
            let _ = codec::decode(abi, &bytes[..cut]);
        }
    }

    #[test]
    fn decoder_never_panics_on_noise(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for abi in [Abi::X86_64, Abi::I386] {
            let _ = codec::decode(abi, &bytes);
        }
    }
}

#[test]
fn malformed_messages_get_specific_errors() {
    use mach::Error;
    let abi = Abi::X86_64;
    let good = codec::encode(
        abi,
        &Message::simple(
            5,
            mt::COPY_SEND,
            7,
            vec![Item::int32(3), Item::port(mt::MOVE_SEND, 9)],
        ),
    )
    .unwrap();
    assert!(matches!(
        codec::decode(abi, &good[..20]),
        Err(Error::Truncated { .. })
    ));
    let mut wrong_size = good.clone();
    wrong_size[4] = 200;
    assert!(matches!(
        codec::decode(abi, &wrong_size),
        Err(Error::SizeMismatch { declared: 200, .. })
    ));
    let mut unknown = good.clone();
    unknown[32] = 5;
    assert!(matches!(
        codec::decode(abi, &unknown),
        Err(Error::UnknownType { type_name: 5, .. })
    ));
    let mut count = good.clone();
    count[36..40].copy_from_slice(&1_000_000u32.to_le_bytes());
    assert!(matches!(
        codec::decode(abi, &count),
        Err(Error::ItemPastEnd { .. })
    ));
    let mut port_size = good.clone();
    port_size[49] = 32; // msgt_size of the port item
    assert!(matches!(
        codec::decode(abi, &port_size),
        Err(Error::PortSize {
            size: 32,
            expected: 64,
            ..
        })
    ));
    let mut dealloc_inline = good.clone();
    dealloc_inline[35] |= 0x80;
    assert!(matches!(
        codec::decode(abi, &dealloc_inline),
        Err(Error::DeallocInline { .. })
    ));
    let mut unaligned = good.clone();
    unaligned.push(0);
    unaligned[4] = unaligned.len() as u8;
    assert!(matches!(
        codec::decode(abi, &unaligned),
        Err(Error::Misaligned { .. })
    ));
    let mut high = good;
    high[12] = 1;
    assert!(matches!(
        codec::decode(abi, &high),
        Err(Error::NameHighBits {
            field: "msgh_remote_port"
        })
    ));
}
