//! A Mach message as a task sees it: header fields and typed items.
//!
//! The model is ABI-neutral: port names are 32-bit, sizes in bits are kept as the
//! sender gave them, out-of-line regions carry their bytes. `codec` maps it to and
//! from the exact GNU Mach byte layout of an ABI.

use serde::Serialize;

use crate::types::{msg_type, msgh_bits, Name, NAME_NULL};

/// `mach_msg_header_t` plus the typed body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `msgh_bits`: remote disposition in bits 0–7, local in 8–15, `COMPLEX`.
    pub bits: u32,
    /// Destination when sending; the reply right when received.
    pub remote_port: Name,
    /// Reply port when sending; the receiving port's name when received.
    pub local_port: Name,
    pub seqno: u32,
    pub id: i32,
    pub body: Vec<Item>,
}

/// One typed item (`mach_msg_type_t` or `mach_msg_type_long_t` plus its data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub type_name: u8,
    /// Bits per element (`msgt_size`).
    pub size: u16,
    /// Element count (`msgt_number`).
    pub number: u32,
    pub inline: bool,
    pub longform: bool,
    pub deallocate: bool,
    pub payload: Payload,
}

/// What an item carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Payload {
    /// Plain data, `ceil(number * size / 8)` bytes, inline or out of line.
    #[serde(serialize_with = "hex_bytes")]
    Bytes(Vec<u8>),
    /// Port names (with the item's disposition), inline or out of line.
    Names(Vec<Name>),
    /// An out-of-line region seen only as an address, as in a raw message buffer.
    Address(u64),
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    s.serialize_str(&out)
}

impl Message {
    /// A message to `dest` (with `dest_disposition`) carrying `reply` (with
    /// `reply_disposition`, 0 for none). `COMPLEX` is set from the body.
    pub fn new(
        dest: Name,
        dest_disposition: u8,
        reply: Name,
        reply_disposition: u8,
        id: i32,
        body: Vec<Item>,
    ) -> Self {
        let complex = body.iter().any(Item::is_complex);
        Self {
            bits: msgh_bits::make(dest_disposition, reply_disposition)
                | if complex { msgh_bits::COMPLEX } else { 0 },
            remote_port: dest,
            local_port: reply,
            seqno: 0,
            id,
            body,
        }
    }

    /// A simple message without a reply port.
    pub fn simple(dest: Name, dest_disposition: u8, id: i32, body: Vec<Item>) -> Self {
        Self::new(dest, dest_disposition, NAME_NULL, 0, id, body)
    }

    pub fn remote_type(&self) -> u8 {
        msgh_bits::remote(self.bits)
    }
    pub fn local_type(&self) -> u8 {
        msgh_bits::local(self.bits)
    }
    pub fn is_complex(&self) -> bool {
        self.bits & msgh_bits::COMPLEX != 0
    }
}

impl Item {
    /// Inline data of `type_name` with `size` bits per element.
    pub fn data(type_name: u8, size: u16, number: u32, bytes: Vec<u8>) -> Self {
        Self {
            type_name,
            size,
            number,
            inline: true,
            longform: false,
            deallocate: false,
            payload: Payload::Bytes(bytes),
        }
    }
    pub fn int32(v: i32) -> Self {
        Self::data(msg_type::INTEGER_32, 32, 1, v.to_le_bytes().to_vec())
    }
    pub fn int64(v: i64) -> Self {
        Self::data(msg_type::INTEGER_64, 64, 1, v.to_le_bytes().to_vec())
    }
    pub fn int16(v: i16) -> Self {
        Self::data(msg_type::INTEGER_16, 16, 1, v.to_le_bytes().to_vec())
    }
    pub fn boolean(v: bool) -> Self {
        Self::data(
            msg_type::BOOLEAN,
            32,
            1,
            u32::from(v).to_le_bytes().to_vec(),
        )
    }
    /// Inline bytes (`MACH_MSG_TYPE_BYTE`), as MIG sends `data_t` when small.
    pub fn bytes(bytes: Vec<u8>) -> Self {
        Self::data(msg_type::BYTE, 8, bytes.len() as u32, bytes)
    }
    /// Out-of-line bytes; `deallocate` moves rather than copies the region.
    pub fn ool_bytes(bytes: Vec<u8>, deallocate: bool) -> Self {
        Self {
            type_name: msg_type::BYTE,
            size: 8,
            number: bytes.len() as u32,
            inline: false,
            longform: false,
            deallocate,
            payload: Payload::Bytes(bytes),
        }
    }
    /// A C string in a fixed-size field of `capacity` bytes (`string_t` is 1024).
    pub fn c_string(s: &str, capacity: usize) -> Self {
        let mut bytes = vec![0u8; capacity];
        let n = s.len().min(capacity.saturating_sub(1));
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self::data(msg_type::STRING_C, (capacity * 8) as u16, 1, bytes)
    }
    /// A port name without a right (`MACH_MSG_TYPE_PORT_NAME`).
    pub fn port_name(name: Name) -> Self {
        Self::data(msg_type::PORT_NAME, 32, 1, name.to_le_bytes().to_vec())
    }
    /// One inline port right with `disposition`.
    pub fn port(disposition: u8, name: Name) -> Self {
        Self::ports(disposition, vec![name])
    }
    /// Inline port rights. `size` is 32 in the model; the codec writes the ABI's.
    pub fn ports(disposition: u8, names: Vec<Name>) -> Self {
        Self {
            type_name: disposition,
            size: 32,
            number: names.len() as u32,
            inline: true,
            longform: false,
            deallocate: false,
            payload: Payload::Names(names),
        }
    }
    /// An out-of-line array of port rights.
    pub fn ool_ports(disposition: u8, names: Vec<Name>, deallocate: bool) -> Self {
        Self {
            inline: false,
            deallocate,
            ..Self::ports(disposition, names)
        }
    }

    /// Whether this item makes a message complex (rights or out-of-line memory).
    pub fn is_complex(&self) -> bool {
        !self.inline || msg_type::is_port_any(self.type_name)
    }
    /// Bytes of data this item describes: `ceil(number * size / 8)`.
    pub fn data_len(&self) -> u64 {
        (u64::from(self.number) * u64::from(self.size)).div_ceil(8)
    }
    pub fn bytes_payload(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn names_payload(&self) -> Option<&[Name]> {
        match &self.payload {
            Payload::Names(n) => Some(n),
            _ => None,
        }
    }
}
