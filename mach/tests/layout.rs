//! The codec against the layout oracle: `layout/replica.c`, a replica of GNU
//! Mach's current structs compiled by gcc with `-m64` and `-m32`.
//!
//! The gcc output is checked into `layout/golden-*.txt`; the Rust codec is always
//! compared with those files, and where gcc can build the replica (always under
//! `CI=true`) the files are compared with a fresh gcc run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mach::types::{msg_type as mt, msgh_bits, notify_id, PortRight};
use mach::{codec, Abi, Item, Kernel, Message, Payload, RecvOptions};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layout")
}

fn abi_name(abi: Abi) -> &'static str {
    match abi {
        Abi::X86_64 => "x86_64",
        Abi::I386 => "i386",
    }
}

fn parse(text: &str) -> (BTreeMap<String, u64>, BTreeMap<String, Vec<u8>>) {
    let mut facts = BTreeMap::new();
    let mut golden = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["golden", name, hex] => {
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                golden.insert(name.to_string(), bytes);
            }
            [key, value] => {
                facts.insert(key.to_string(), value.parse().unwrap());
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    (facts, golden)
}

fn checked_in(abi: Abi) -> String {
    std::fs::read_to_string(dir().join(format!("golden-{}.txt", abi_name(abi)))).unwrap()
}

/// Builds and runs the replica; `None` (with the reason printed) where gcc cannot,
/// which is not allowed in CI.
fn run_gcc(abi: Abi) -> Option<String> {
    let flag = match abi {
        Abi::X86_64 => "-m64",
        Abi::I386 => "-m32",
    };
    let out = std::env::temp_dir().join(format!(
        "netmsg-replica-{}-{}",
        abi_name(abi),
        std::process::id()
    ));
    let built = Command::new("gcc")
        .args([flag, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(dir().join("replica.c"))
        .output();
    let why = match built {
        Ok(o) if o.status.success() => {
            let run = Command::new(&out).output().expect("run the replica");
            let _ = std::fs::remove_file(&out);
            assert!(run.status.success());
            return Some(String::from_utf8(run.stdout).unwrap());
        }
        Ok(o) => format!("gcc {flag} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("gcc not runnable: {e}"),
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "layout oracle must run in CI: {why}"
    );
    eprintln!(
        "skipping the gcc comparison for {}: {why} (install gcc-multilib)",
        abi_name(abi)
    );
    None
}

#[test]
fn checked_in_goldens_are_what_gcc_produces() {
    for abi in [Abi::X86_64, Abi::I386] {
        if let Some(fresh) = run_gcc(abi) {
            assert_eq!(
                fresh,
                checked_in(abi),
                "regenerate tests/layout/golden-{}.txt",
                abi_name(abi)
            );
        }
    }
}

fn descriptor_word(abi: Abi, item: Item) -> u64 {
    let msg = Message::simple(1, mt::COPY_SEND, 0, vec![item]);
    let bytes = codec::encode(abi, &msg).unwrap();
    u64::from(u32::from_le_bytes(
        bytes[abi.header_len()..abi.header_len() + 4]
            .try_into()
            .unwrap(),
    ))
}

fn data_item(name: u8, size: u16, number: u32) -> Item {
    let len = (u64::from(number) * u64::from(size)).div_ceil(8) as usize;
    Item::data(name, size, number, vec![0; len])
}

#[test]
fn header_descriptor_and_bitfield_layout_match_gcc() {
    for abi in [Abi::X86_64, Abi::I386] {
        let (facts, _) = parse(&checked_in(abi));
        let f = |k: &str| *facts.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(f("sizeof_header"), abi.header_len() as u64);
        assert_eq!(f("alignment"), abi.align() as u64);
        assert_eq!(
            f("sizeof_port_inlined") * 8,
            u64::from(abi.port_inline_bits())
        );
        // Header field offsets, by encoding distinct values.
        let msg = Message {
            bits: 0x1122_3344,
            remote_port: 0x5566_7788,
            local_port: 0x99aa_bbcc,
            seqno: 0x0102_0304,
            id: 0x0506_0708,
            body: vec![],
        };
        let bytes = codec::encode(abi, &msg).unwrap();
        let at = |k: &str| {
            u32::from_le_bytes(bytes[f(k) as usize..f(k) as usize + 4].try_into().unwrap())
        };
        assert_eq!(at("offset_bits"), msg.bits);
        assert_eq!(at("offset_size"), abi.header_len() as u32);
        assert_eq!(at("offset_remote"), msg.remote_port);
        assert_eq!(at("offset_local"), msg.local_port);
        assert_eq!(at("offset_seqno"), msg.seqno);
        assert_eq!(at("offset_id"), msg.id as u32);
        // Each descriptor field alone.
        assert_eq!(
            descriptor_word(abi, data_item(0xff, 0, 0)),
            f("bits_name") | f("bits_inline"),
            "{abi:?} name"
        );
        let max_size = if abi == Abi::X86_64 { 0xffff } else { 0xff };
        assert_eq!(
            descriptor_word(abi, data_item(0, max_size, 0)),
            f("bits_size") | f("bits_inline")
        );
        assert_eq!(descriptor_word(abi, data_item(0, 0, 0)), f("bits_inline"));
        let ool = Item {
            inline: false,
            payload: Payload::Address(0),
            ..data_item(0, 0, 0)
        };
        assert_eq!(descriptor_word(abi, ool.clone()), 0);
        assert_eq!(
            descriptor_word(
                abi,
                Item {
                    deallocate: true,
                    ..ool.clone()
                }
            ),
            f("bits_deallocate")
        );
        if abi == Abi::X86_64 {
            assert_eq!(
                descriptor_word(
                    abi,
                    Item {
                        longform: true,
                        ..ool
                    }
                ),
                f("bits_longform")
            );
            assert_eq!(f("sizeof_type"), 8);
            assert_eq!(f("sizeof_type_long"), 8);
        } else {
            assert_eq!(
                descriptor_word(
                    abi,
                    Item {
                        longform: true,
                        ..ool
                    }
                ),
                f("bits_longform"),
                "long header word"
            );
            assert_eq!(
                descriptor_word(abi, data_item(0, 0, 0xfff)),
                f("bits_number") | f("bits_inline")
            );
            assert_eq!(f("sizeof_type"), 4);
            assert_eq!(f("sizeof_type_long"), 12);
        }
        let unused = f("bits_unused");
        assert_ne!(unused, 0);
        let mut with_unused = Message::simple(1, mt::COPY_SEND, 0, vec![Item::int32(1)]);
        with_unused.bits = 0;
        let mut raw = codec::encode(abi, &with_unused).unwrap();
        let w = u32::from_le_bytes(
            raw[abi.header_len()..abi.header_len() + 4]
                .try_into()
                .unwrap(),
        ) | unused as u32;
        raw[abi.header_len()..abi.header_len() + 4].copy_from_slice(&w.to_le_bytes());
        assert!(
            matches!(
                codec::decode(abi, &raw),
                Err(mach::Error::UnusedBits { .. })
            ),
            "{abi:?}: unused bits rejected"
        );
        let port = Item {
            size: abi.port_inline_bits(),
            ..Item::port(mt::MOVE_SEND, 0)
        };
        let expected_port_desc = if abi == Abi::I386 {
            Some(0x1001_2011)
        } else {
            None
        };
        if let Some(e) = expected_port_desc {
            assert_eq!(descriptor_word(abi, port), e, "mach-facts.md example");
            assert_eq!(f("desc_move_send_32"), e);
        }
    }
}

fn port_item(abi: Abi, disposition: u8, names: Vec<u32>) -> Item {
    Item {
        size: abi.port_inline_bits(),
        ..Item::ports(disposition, names)
    }
}

fn ool(name: u8, size: u16, number: u32, addr: u64, dealloc: bool, longform: bool) -> Item {
    Item {
        type_name: name,
        size,
        number,
        inline: false,
        longform,
        deallocate: dealloc,
        payload: Payload::Address(addr),
    }
}

/// The Rust side of each golden message in `replica.c`.
fn goldens(abi: Abi) -> Vec<(&'static str, Message)> {
    let long_ints = Item {
        longform: true,
        ..Item::data(
            mt::INTEGER_32,
            32,
            2,
            [(-1i32).to_le_bytes(), 5i32.to_le_bytes()].concat(),
        )
    };
    vec![
        (
            "lock_request",
            Message {
                bits: 19 | msgh_bits::COMPLEX,
                remote_port: 0x103,
                local_port: 0,
                seqno: 0,
                id: 2044,
                body: vec![
                    Item::int64(0x2000),
                    Item::int64(0x4000),
                    Item::int32(1),
                    Item::boolean(true),
                    Item::int32(2),
                    port_item(abi, mt::MAKE_SEND_ONCE, vec![0x207]),
                ],
            },
        ),
        (
            "reply_with_chars",
            Message {
                bits: 18,
                remote_port: 0x301,
                local_port: 0,
                seqno: 7,
                id: 2140,
                body: vec![Item::int32(0), Item::data(mt::CHAR, 8, 3, b"abc".to_vec())],
            },
        ),
        (
            "ool_and_long",
            Message {
                bits: 17 | (21 << 8) | msgh_bits::COMPLEX,
                remote_port: 0x11,
                local_port: 0x12,
                seqno: 0,
                id: 21000,
                body: vec![
                    ool(mt::BYTE, 8, 1000, 0x10000, true, false),
                    ool(mt::MOVE_SEND, 32, 2, 0x20000, false, false),
                    ool(mt::BYTE, 8, 5000, 0x30000, false, true),
                    long_ints,
                ],
            },
        ),
        (
            "dead_name_notification",
            Message {
                bits: 18 << 8,
                remote_port: 0,
                local_port: 0x505,
                seqno: 3,
                id: 72,
                body: vec![Item::port_name(0x606)],
            },
        ),
        (
            "two_port_items",
            Message {
                bits: 17 | msgh_bits::COMPLEX,
                remote_port: 9,
                local_port: 0,
                seqno: 0,
                id: 1000,
                body: vec![
                    port_item(abi, mt::MAKE_SEND, vec![0x10, 0x11]),
                    port_item(abi, mt::MOVE_RECEIVE, vec![0x12]),
                ],
            },
        ),
    ]
}

#[test]
fn golden_messages_encode_and_decode_exactly() {
    for abi in [Abi::X86_64, Abi::I386] {
        let (_, golden) = parse(&checked_in(abi));
        for (name, msg) in goldens(abi) {
            let bytes = &golden[name];
            assert_eq!(
                &codec::encode(abi, &msg).unwrap(),
                bytes,
                "{abi:?} {name}: encode"
            );
            assert_eq!(
                codec::decode(abi, bytes).unwrap(),
                msg,
                "{abi:?} {name}: decode"
            );
            assert_eq!(abi.message_len(&msg), bytes.len() as u64);
        }
    }
}

#[test]
fn kernel_generated_notifications_have_the_c_layout() {
    for abi in [Abi::X86_64, Abi::I386] {
        let (facts, golden) = parse(&checked_in(abi));
        let mut k = Kernel::new(abi);
        let a = k.create_task();
        let b = k.create_task();
        let port = k.port_allocate(a, PortRight::Receive).unwrap();
        k.port_allocate_name(b, PortRight::Receive, 0x505).unwrap();
        k.port_insert_right(b, 0x606, a, port, mt::MAKE_SEND)
            .unwrap();
        k.port_request_notification(b, 0x606, notify_id::DEAD_NAME, 0, 0x505, mt::MAKE_SEND_ONCE)
            .unwrap();
        k.port_set_seqno(b, 0x505, 3).unwrap();
        k.port_destroy(a, port).unwrap();
        let n = k
            .receive(b, 0x505, RecvOptions::default())
            .unwrap()
            .unwrap();
        let bytes = codec::encode(abi, &n).unwrap();
        assert_eq!(bytes, golden["dead_name_notification"], "{abi:?}");
        assert_eq!(bytes.len() as u64, facts["sizeof_dead_name_notification"]);
        // No-senders and port-destroyed have the sizes of their C structs.
        let p2 = k.port_allocate(b, PortRight::Receive).unwrap();
        let backup = k.port_allocate(b, PortRight::Receive).unwrap();
        k.port_request_notification(b, p2, notify_id::NO_SENDERS, 0, backup, mt::MAKE_SEND_ONCE)
            .unwrap();
        let ns = k
            .receive(b, backup, RecvOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(ns.id, notify_id::NO_SENDERS);
        assert_eq!(
            abi.message_len(&ns),
            facts["sizeof_no_senders_notification"]
        );
        k.port_request_notification(
            b,
            p2,
            notify_id::PORT_DESTROYED,
            0,
            backup,
            mt::MAKE_SEND_ONCE,
        )
        .unwrap();
        k.port_destroy(b, p2).unwrap();
        let pd = k
            .receive(
                b,
                backup,
                RecvOptions {
                    max_size: Some(facts["sizeof_port_destroyed_notification"] as u32),
                    large: true,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(pd.id, notify_id::PORT_DESTROYED);
        assert_eq!(
            abi.message_len(&pd),
            facts["sizeof_port_destroyed_notification"]
        );
        assert_eq!(
            codec::decode(abi, &codec::encode(abi, &pd).unwrap()).unwrap(),
            pd
        );
    }
}
