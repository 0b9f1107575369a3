//! The GNU Mach binary message layout, x86_64 (current LP64 ABI) and i386.
//!
//! x86_64: a 32-byte header with 8-byte port fields; 8-byte type descriptors (name
//! bits 0–7, size bits 8–23, unused 24–28, inline 29, longform 30, deallocate 31,
//! then a 32-bit count); inline data padded to 8; inline rights in 8-byte slots;
//! out-of-line port arrays of 32-bit names.
//! i386: a 24-byte header; 4-byte descriptors (name 0–7, size 8–15, number 16–27,
//! inline 28, longform 29, deallocate 30, unused 31) or 12-byte long forms; data
//! padded to 4. `tests/layout.rs` checks all of it against gcc.
//!
//! One decoder: every length and count is checked against the bytes left before
//! anything is allocated.

use serde::Serialize;

use crate::message::{Item, Message, Payload};
use crate::types::{msg_type, msgh_bits};
use crate::Error;

/// A user ABI of GNU Mach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Abi {
    X86_64,
    I386,
}

impl std::str::FromStr for Abi {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "x86_64" | "x86-64" | "amd64" => Ok(Abi::X86_64),
            "i386" | "i686" | "x86" => Ok(Abi::I386),
            other => Err(Error::UnknownAbi(other.to_owned())),
        }
    }
}

impl Abi {
    /// `sizeof(mach_msg_header_t)`.
    pub const fn header_len(self) -> usize {
        match self {
            Abi::X86_64 => 32,
            Abi::I386 => 24,
        }
    }
    /// `MACH_MSG_USER_ALIGNMENT`.
    pub const fn align(self) -> usize {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
    /// Bits of an inline port right (`PORT_T_SIZE_IN_BITS`).
    pub const fn port_inline_bits(self) -> u16 {
        match self {
            Abi::X86_64 => 64,
            Abi::I386 => 32,
        }
    }
    /// Bits of a name in an out-of-line port array (`PORT_NAME_T_SIZE_IN_BITS`).
    pub const fn port_ool_bits(self) -> u16 {
        32
    }
    const fn pointer_len(self) -> usize {
        match self {
            Abi::X86_64 => 8,
            Abi::I386 => 4,
        }
    }
    /// Whether an i386 short descriptor can hold these fields.
    fn short_fits(self, item: &Item) -> bool {
        match self {
            Abi::X86_64 => true,
            Abi::I386 => item.size <= 0xff && item.number <= 0xfff,
        }
    }
    /// Whether the item is written with the long descriptor form.
    fn uses_long_descriptor(self, item: &Item, size: u16) -> bool {
        match self {
            Abi::X86_64 => false,
            Abi::I386 => item.longform || size > 0xff || item.number > 0xfff,
        }
    }
    const fn descriptor_len(self, long: bool) -> usize {
        match (self, long) {
            (Abi::X86_64, _) => 8,
            (Abi::I386, false) => 4,
            (Abi::I386, true) => 12,
        }
    }

    /// The `msgt_size` the ABI requires for a port item, or the item's own.
    fn wire_size(self, item: &Item) -> u16 {
        if msg_type::is_port_any(item.type_name) {
            if item.inline {
                self.port_inline_bits()
            } else {
                self.port_ool_bits()
            }
        } else {
            item.size
        }
    }

    fn inline_data_len(self, item: &Item) -> u64 {
        if msg_type::is_port_any(item.type_name) {
            u64::from(item.number) * u64::from(self.port_inline_bits() / 8)
        } else {
            item.data_len()
        }
    }

    /// Bytes one item takes in a message body, padding included.
    pub fn item_len(self, item: &Item) -> u64 {
        let size = self.wire_size(item);
        let desc = self.descriptor_len(self.uses_long_descriptor(item, size)) as u64;
        let data = if item.inline {
            self.inline_data_len(item)
        } else {
            self.pointer_len() as u64
        };
        round_up(desc + data, self.align() as u64)
    }

    /// `msgh_size` of a message in this ABI.
    pub fn message_len(self, msg: &Message) -> u64 {
        self.header_len() as u64 + msg.body.iter().map(|i| self.item_len(i)).sum::<u64>()
    }
}

const fn round_up(n: u64, align: u64) -> u64 {
    (n + align - 1) & !(align - 1)
}

/// Encodes a message. Out-of-line items must carry [`Payload::Address`], as in
/// a task's buffer; data and names must match their descriptors.
pub fn encode(abi: Abi, msg: &Message) -> Result<Vec<u8>, Error> {
    let total = abi.message_len(msg);
    let total = u32::try_from(total).map_err(|_| Error::TooLarge { size: total })?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&msg.bits.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    match abi {
        Abi::X86_64 => {
            out.extend_from_slice(&u64::from(msg.remote_port).to_le_bytes());
            out.extend_from_slice(&u64::from(msg.local_port).to_le_bytes());
        }
        Abi::I386 => {
            out.extend_from_slice(&msg.remote_port.to_le_bytes());
            out.extend_from_slice(&msg.local_port.to_le_bytes());
        }
    }
    out.extend_from_slice(&msg.seqno.to_le_bytes());
    out.extend_from_slice(&msg.id.to_le_bytes());
    for (index, item) in msg.body.iter().enumerate() {
        encode_item(abi, index, item, &mut out)?;
    }
    debug_assert_eq!(out.len(), total as usize);
    Ok(out)
}

fn encode_item(abi: Abi, index: usize, item: &Item, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    let size = abi.wire_size(item);
    let is_port = msg_type::is_port_any(item.type_name);
    if item.inline && item.deallocate {
        return Err(Error::Payload {
            index,
            reason: "deallocate is set on inline data",
        });
    }
    match abi {
        Abi::X86_64 => {
            let word = u32::from(item.type_name)
                | (u32::from(size) << 8)
                | (u32::from(item.inline) << 29)
                | (u32::from(item.longform) << 30)
                | (u32::from(item.deallocate) << 31);
            out.extend_from_slice(&word.to_le_bytes());
            out.extend_from_slice(&item.number.to_le_bytes());
        }
        Abi::I386 if abi.uses_long_descriptor(item, size) => {
            let word =
                (u32::from(item.inline) << 28) | (1 << 29) | (u32::from(item.deallocate) << 30);
            out.extend_from_slice(&word.to_le_bytes());
            out.extend_from_slice(&u16::from(item.type_name).to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&item.number.to_le_bytes());
        }
        Abi::I386 => {
            debug_assert!(abi.short_fits(item));
            let word = u32::from(item.type_name)
                | (u32::from(size) << 8)
                | (item.number << 16)
                | (u32::from(item.inline) << 28)
                | (u32::from(item.longform) << 29)
                | (u32::from(item.deallocate) << 30);
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    match (&item.payload, item.inline) {
        (Payload::Address(addr), false) => match abi {
            Abi::X86_64 => out.extend_from_slice(&addr.to_le_bytes()),
            Abi::I386 => {
                let a = u32::try_from(*addr).map_err(|_| Error::Payload {
                    index,
                    reason: "address does not fit 32 bits",
                })?;
                out.extend_from_slice(&a.to_le_bytes());
            }
        },
        (_, false) => {
            return Err(Error::Payload {
                index,
                reason: "out-of-line items need an address",
            })
        }
        (Payload::Names(names), true) if is_port => {
            if names.len() as u64 != u64::from(item.number) {
                return Err(Error::Payload {
                    index,
                    reason: "name count differs from msgt_number",
                });
            }
            for &n in names {
                match abi {
                    Abi::X86_64 => out.extend_from_slice(&u64::from(n).to_le_bytes()),
                    Abi::I386 => out.extend_from_slice(&n.to_le_bytes()),
                }
            }
        }
        (Payload::Bytes(bytes), true) if !is_port => {
            if bytes.len() as u64 != item.data_len() {
                return Err(Error::Payload {
                    index,
                    reason: "data length differs from number * size",
                });
            }
            out.extend_from_slice(bytes);
        }
        _ => {
            return Err(Error::Payload {
                index,
                reason: "payload kind does not match the type",
            })
        }
    }
    let end = start + abi.item_len(item) as usize;
    out.resize(end, 0);
    Ok(())
}

/// Decodes one message of `abi` from exactly `bytes`.
pub fn decode(abi: Abi, bytes: &[u8]) -> Result<Message, Error> {
    let header_len = abi.header_len();
    if bytes.len() < header_len {
        return Err(Error::Truncated {
            offset: 0,
            needed: header_len,
            available: bytes.len(),
        });
    }
    let bits = u32_at(bytes, 0);
    let size = u32_at(bytes, 4) as usize;
    if size != bytes.len() {
        return Err(Error::SizeMismatch {
            declared: size,
            actual: bytes.len(),
        });
    }
    if size % 4 != 0 {
        return Err(Error::Misaligned {
            offset: 4,
            what: "msgh_size is not a multiple of 4",
        });
    }
    let (remote_port, local_port, seqno, id) = match abi {
        Abi::X86_64 => {
            let remote = u64_at(bytes, 8);
            let local = u64_at(bytes, 16);
            if remote >> 32 != 0 {
                return Err(Error::NameHighBits {
                    field: "msgh_remote_port",
                });
            }
            if local >> 32 != 0 && msgh_bits::local(bits) != msg_type::PROTECTED_PAYLOAD {
                return Err(Error::NameHighBits {
                    field: "msgh_local_port",
                });
            }
            (
                remote as u32,
                local as u32,
                u32_at(bytes, 24),
                u32_at(bytes, 28) as i32,
            )
        }
        Abi::I386 => (
            u32_at(bytes, 8),
            u32_at(bytes, 12),
            u32_at(bytes, 16),
            u32_at(bytes, 20) as i32,
        ),
    };
    let mut body = Vec::new();
    let mut offset = header_len;
    while offset < bytes.len() {
        let (item, next) = decode_item(abi, bytes, offset)?;
        body.push(item);
        offset = next;
    }
    Ok(Message {
        bits,
        remote_port,
        local_port,
        seqno,
        id,
        body,
    })
}

fn decode_item(abi: Abi, bytes: &[u8], offset: usize) -> Result<(Item, usize), Error> {
    let need = |at: usize, n: usize| -> Result<(), Error> {
        if bytes.len() - at < n {
            Err(Error::Truncated {
                offset: at,
                needed: n,
                available: bytes.len() - at,
            })
        } else {
            Ok(())
        }
    };
    need(offset, abi.descriptor_len(false))?;
    let word = u32_at(bytes, offset);
    let (type_name, size, number, inline, longform, deallocate, data_at);
    match abi {
        Abi::X86_64 => {
            type_name = (word & 0xff) as u8;
            size = ((word >> 8) & 0xffff) as u16;
            if (word >> 24) & 0x1f != 0 {
                return Err(Error::UnusedBits { offset });
            }
            inline = word & (1 << 29) != 0;
            longform = word & (1 << 30) != 0;
            deallocate = word & (1 << 31) != 0;
            number = u32_at(bytes, offset + 4);
            data_at = offset + 8;
        }
        Abi::I386 => {
            inline = word & (1 << 28) != 0;
            longform = word & (1 << 29) != 0;
            deallocate = word & (1 << 30) != 0;
            if word & (1 << 31) != 0 {
                return Err(Error::UnusedBits { offset });
            }
            if longform {
                need(offset, 12)?;
                if word & 0x0fff_ffff != 0 {
                    return Err(Error::LongformHeader { offset });
                }
                let long_name = u16::from_le_bytes([bytes[offset + 4], bytes[offset + 5]]);
                type_name = u8::try_from(long_name).map_err(|_| Error::UnknownType {
                    offset,
                    type_name: u32::from(long_name),
                })?;
                size = u16::from_le_bytes([bytes[offset + 6], bytes[offset + 7]]);
                number = u32_at(bytes, offset + 8);
                data_at = offset + 12;
            } else {
                type_name = (word & 0xff) as u8;
                size = ((word >> 8) & 0xff) as u16;
                number = (word >> 16) & 0xfff;
                data_at = offset + 4;
            }
        }
    }
    if !msg_type::is_known(type_name) {
        return Err(Error::UnknownType {
            offset,
            type_name: u32::from(type_name),
        });
    }
    let is_port = msg_type::is_port_any(type_name);
    if is_port {
        let expected = if inline {
            abi.port_inline_bits()
        } else {
            abi.port_ool_bits()
        };
        if size != expected {
            return Err(Error::PortSize {
                offset,
                size,
                expected,
            });
        }
    }
    if deallocate && inline {
        return Err(Error::DeallocInline { offset });
    }
    let item_shell = |payload| Item {
        type_name,
        size,
        number,
        inline,
        longform,
        deallocate,
        payload,
    };
    let remaining = bytes.len() - data_at;
    let (payload, data_end) = if !inline {
        let len = abi.pointer_len();
        need(data_at, len)?;
        let addr = match abi {
            Abi::X86_64 => u64_at(bytes, data_at),
            Abi::I386 => u64::from(u32_at(bytes, data_at)),
        };
        (Payload::Address(addr), data_at + len)
    } else if is_port {
        let slot = usize::from(abi.port_inline_bits() / 8);
        let len = u64::from(number) * slot as u64;
        if len > remaining as u64 {
            return Err(Error::ItemPastEnd {
                offset,
                length: len,
                remaining,
            });
        }
        let names = (0..number as usize)
            .map(|i| u32_at(bytes, data_at + i * slot))
            .collect();
        (Payload::Names(names), data_at + len as usize)
    } else {
        let len = (u64::from(number) * u64::from(size)).div_ceil(8);
        if len > remaining as u64 {
            return Err(Error::ItemPastEnd {
                offset,
                length: len,
                remaining,
            });
        }
        let end = data_at + len as usize;
        (Payload::Bytes(bytes[data_at..end].to_vec()), end)
    };
    // The next descriptor starts aligned; the last item's padding may be absent.
    let next = round_up(data_end as u64, abi.align() as u64) as usize;
    Ok((item_shell(payload), next.min(bytes.len()).max(data_end)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes checked"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes checked"))
}

/// The decoder's fuzz property, shared by the fuzz target and the corpus test:
/// the first byte picks the ABI; any input decodes or fails cleanly, and what
/// decodes re-encodes to bytes that decode to the same message.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let abi = if selector & 1 == 0 {
        Abi::X86_64
    } else {
        Abi::I386
    };
    if let Ok(msg) = decode(abi, bytes) {
        let again = encode(abi, &msg).expect("a decoded message re-encodes");
        assert_eq!(decode(abi, &again).expect("re-encoded bytes decode"), msg);
        assert!(
            again.len() >= bytes.len(),
            "only trailing padding may be added"
        );
    }
}
