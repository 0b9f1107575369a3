//! `netmsg msg decode`: one raw message to JSON.

use anyhow::{bail, Context};
use mach::types::{msg_type as mt, msgh_bits};
use mach::{codec, Abi, Item, Payload};
use serde_json::{json, Value};

/// Hex text to bytes; whitespace is ignored.
pub(crate) fn parse_hex(text: &[u8]) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 != 0 {
        bail!("hex input has an odd number of digits ({})", digits.len());
    }
    hex::decode(&digits).context("hex input is not valid hexadecimal")
}

pub(crate) fn describe(abi: Abi, bytes: &[u8]) -> anyhow::Result<Value> {
    let msg =
        codec::decode(abi, bytes).with_context(|| format!("not a valid {abi:?} Mach message"))?;
    let routine = mach::interfaces::routine_name(msg.id).map(|(subsystem, name, reply)| {
        json!({ "subsystem": subsystem, "routine": name, "reply": reply })
    });
    let port_type = |t: u8| {
        if t == 0 {
            Value::Null
        } else {
            json!(mt::name(t))
        }
    };
    Ok(json!({
        "abi": abi,
        "size": bytes.len(),
        "header": {
            "bits": format!("{:#010x}", msg.bits),
            "remote_type": port_type(msg.remote_type()),
            "local_type": port_type(msg.local_type()),
            "complex": msg.is_complex(),
            "other_bits": format!("{:#x}", msgh_bits::other(msg.bits) & !msgh_bits::COMPLEX),
            "remote_port": msg.remote_port,
            "local_port": msg.local_port,
            "seqno": msg.seqno,
            "id": msg.id,
        },
        "routine": routine,
        "items": msg.body.iter().map(item).collect::<Vec<_>>(),
    }))
}

fn item(item: &Item) -> Value {
    let mut v = json!({
        "type": mt::name(item.type_name),
        "type_name": item.type_name,
        "size": item.size,
        "number": item.number,
        "inline": item.inline,
        "longform": item.longform,
        "deallocate": item.deallocate,
    });
    let obj = v.as_object_mut().expect("object");
    match &item.payload {
        Payload::Address(addr) => {
            obj.insert("address".into(), json!(format!("{addr:#x}")));
        }
        Payload::Names(names) => {
            obj.insert("names".into(), json!(names));
        }
        Payload::Bytes(bytes) => {
            obj.insert("bytes".into(), json!(hex::encode(bytes)));
            if let Some(values) = values(item.type_name, item.size, bytes) {
                obj.insert("values".into(), values);
            }
        }
    }
    v
}

/// Integers and strings shown as values when the element size is the natural one.
fn values(type_name: u8, size: u16, bytes: &[u8]) -> Option<Value> {
    let ints = |width: usize, f: fn(&[u8]) -> i64| -> Value {
        json!(bytes.chunks_exact(width).map(f).collect::<Vec<_>>())
    };
    match (type_name, size) {
        (mt::INTEGER_16, 16) => Some(ints(2, |c| i64::from(i16::from_le_bytes([c[0], c[1]])))),
        (mt::INTEGER_32 | mt::BOOLEAN, 32) => Some(ints(4, |c| {
            i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })),
        (mt::PORT_NAME, 32) => Some(ints(4, |c| {
            i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })),
        (mt::INTEGER_64, 64) => Some(ints(8, |c| {
            i64::from_le_bytes(c.try_into().expect("8 bytes"))
        })),
        (mt::STRING, _) | (mt::CHAR, 8) => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            Some(json!(String::from_utf8_lossy(&bytes[..end])))
        }
        _ => None,
    }
}
