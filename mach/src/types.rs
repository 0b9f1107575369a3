//! Numbers of GNU Mach's user ABI: names, message types, rights, return codes.
//!
//! Values are those of GNU Mach's `include/mach/{port,message,kern_return,notify}.h`;
//! `tests/layout.rs` checks them against a C replica compiled by gcc.

use std::fmt;

/// A port name in one IPC space (`mach_port_name_t`, 32 bits on every ABI).
pub type Name = u32;

/// `MACH_PORT_NULL`.
pub const NAME_NULL: Name = 0;
/// `MACH_PORT_DEAD`.
pub const NAME_DEAD: Name = !0;

/// True for names that can denote a right (`MACH_PORT_NAME_VALID`).
pub const fn name_valid(name: Name) -> bool {
    name != NAME_NULL && name != NAME_DEAD
}

/// `MACH_PORT_UREFS_MAX`: user references are 16 bits in GNU Mach.
pub const UREFS_MAX: u32 = (1 << 16) - 1;
/// `MACH_PORT_QLIMIT_DEFAULT`.
pub const QLIMIT_DEFAULT: u32 = 5;
/// `MACH_PORT_QLIMIT_MAX`.
pub const QLIMIT_MAX: u32 = 16;

/// `msgt_name` values (`MACH_MSG_TYPE_*`).
pub mod msg_type {
    pub const UNSTRUCTURED: u8 = 0;
    pub const BIT: u8 = 0;
    pub const BOOLEAN: u8 = 0;
    pub const INTEGER_16: u8 = 1;
    pub const INTEGER_32: u8 = 2;
    pub const CHAR: u8 = 8;
    pub const BYTE: u8 = 9;
    pub const INTEGER_8: u8 = 9;
    pub const REAL: u8 = 10;
    pub const INTEGER_64: u8 = 11;
    pub const STRING: u8 = 12;
    pub const STRING_C: u8 = 12;
    pub const PORT_NAME: u8 = 15;
    pub const MOVE_RECEIVE: u8 = 16;
    pub const MOVE_SEND: u8 = 17;
    pub const MOVE_SEND_ONCE: u8 = 18;
    pub const COPY_SEND: u8 = 19;
    pub const MAKE_SEND: u8 = 20;
    pub const MAKE_SEND_ONCE: u8 = 21;
    pub const PORT_RECEIVE: u8 = MOVE_RECEIVE;
    pub const PORT_SEND: u8 = MOVE_SEND;
    pub const PORT_SEND_ONCE: u8 = MOVE_SEND_ONCE;
    pub const PROTECTED_PAYLOAD: u8 = 23;
    pub const LAST: u8 = 23;

    /// `MACH_MSG_TYPE_PORT_ANY`: a disposition that carries a right.
    pub const fn is_port_any(t: u8) -> bool {
        t >= MOVE_RECEIVE && t <= MAKE_SEND_ONCE
    }
    /// `MACH_MSG_TYPE_PORT_ANY_SEND`.
    pub const fn is_port_any_send(t: u8) -> bool {
        t >= MOVE_SEND && t <= MAKE_SEND_ONCE
    }
    /// `MACH_MSG_TYPE_PORT_ANY_RIGHT`: the received forms.
    pub const fn is_port_any_right(t: u8) -> bool {
        t >= PORT_RECEIVE && t <= PORT_SEND_ONCE
    }
    /// `ipc_object_copyin_type`: the form a disposition arrives as.
    pub const fn copyin_type(t: u8) -> u8 {
        match t {
            MOVE_RECEIVE => PORT_RECEIVE,
            MOVE_SEND | COPY_SEND | MAKE_SEND => PORT_SEND,
            MOVE_SEND_ONCE | MAKE_SEND_ONCE => PORT_SEND_ONCE,
            other => other,
        }
    }
    /// Every `msgt_name` GNU Mach defines for message bodies.
    pub const fn is_known(t: u8) -> bool {
        matches!(t, 0..=2 | 8..=12 | 15..=21)
    }
    /// The C name, for diagnostics and JSON.
    pub const fn name(t: u8) -> &'static str {
        match t {
            0 => "UNSTRUCTURED",
            1 => "INTEGER_16",
            2 => "INTEGER_32",
            8 => "CHAR",
            9 => "INTEGER_8",
            10 => "REAL",
            11 => "INTEGER_64",
            12 => "STRING",
            15 => "PORT_NAME",
            16 => "MOVE_RECEIVE",
            17 => "MOVE_SEND",
            18 => "MOVE_SEND_ONCE",
            19 => "COPY_SEND",
            20 => "MAKE_SEND",
            21 => "MAKE_SEND_ONCE",
            23 => "PROTECTED_PAYLOAD",
            _ => "UNKNOWN",
        }
    }
}

/// `msgh_bits` fields.
pub mod msgh_bits {
    pub const REMOTE_MASK: u32 = 0x0000_00ff;
    pub const LOCAL_MASK: u32 = 0x0000_ff00;
    pub const COMPLEX: u32 = 0x8000_0000;
    pub const CIRCULAR: u32 = 0x4000_0000;
    pub const UNUSED: u32 = 0x07ff_0000;
    pub const PORTS_MASK: u32 = REMOTE_MASK | LOCAL_MASK;

    /// `MACH_MSGH_BITS(remote, local)`.
    pub const fn make(remote: u8, local: u8) -> u32 {
        remote as u32 | ((local as u32) << 8)
    }
    pub const fn remote(bits: u32) -> u8 {
        (bits & REMOTE_MASK) as u8
    }
    pub const fn local(bits: u32) -> u8 {
        ((bits & LOCAL_MASK) >> 8) as u8
    }
    /// `MACH_MSGH_BITS_OTHER`.
    pub const fn other(bits: u32) -> u32 {
        bits & !PORTS_MASK
    }
}

/// `mach_port_right_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PortRight {
    Send = 0,
    Receive = 1,
    SendOnce = 2,
    PortSet = 3,
    DeadName = 4,
}

impl PortRight {
    /// `MACH_PORT_RIGHT_NUMBER`.
    pub const NUMBER: u32 = 5;

    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Send,
            1 => Self::Receive,
            2 => Self::SendOnce,
            3 => Self::PortSet,
            4 => Self::DeadName,
            _ => return None,
        })
    }
    /// `MACH_PORT_TYPE(right)`.
    pub const fn type_bit(self) -> u32 {
        1 << (self as u32 + 16)
    }
}

/// `mach_port_type_t` bits.
pub mod port_type {
    pub const NONE: u32 = 0;
    pub const SEND: u32 = 1 << 16;
    pub const RECEIVE: u32 = 1 << 17;
    pub const SEND_ONCE: u32 = 1 << 18;
    pub const PORT_SET: u32 = 1 << 19;
    pub const DEAD_NAME: u32 = 1 << 20;
    pub const SEND_RECEIVE: u32 = SEND | RECEIVE;
    pub const SEND_RIGHTS: u32 = SEND | SEND_ONCE;
    pub const PORT_RIGHTS: u32 = SEND_RIGHTS | RECEIVE;
    pub const PORT_OR_DEAD: u32 = PORT_RIGHTS | DEAD_NAME;
    pub const ALL_RIGHTS: u32 = PORT_OR_DEAD | PORT_SET;
    pub const DNREQUEST: u32 = 0x8000_0000;
}

/// `mach_msg` option bits.
pub mod option {
    pub const SEND_MSG: u32 = 0x1;
    pub const RCV_MSG: u32 = 0x2;
    pub const SEND_TIMEOUT: u32 = 0x10;
    pub const SEND_NOTIFY: u32 = 0x20;
    pub const SEND_INTERRUPT: u32 = 0x40;
    pub const SEND_CANCEL: u32 = 0x80;
    pub const RCV_TIMEOUT: u32 = 0x100;
    pub const RCV_NOTIFY: u32 = 0x200;
    pub const RCV_INTERRUPT: u32 = 0x400;
    pub const RCV_LARGE: u32 = 0x800;
}

/// Notification message IDs (`notify.defs`, base 64).
pub mod notify_id {
    pub const FIRST: i32 = 64;
    pub const PORT_DELETED: i32 = 65;
    pub const MSG_ACCEPTED: i32 = 66;
    pub const PORT_DESTROYED: i32 = 69;
    pub const NO_SENDERS: i32 = 70;
    pub const SEND_ONCE: i32 = 71;
    pub const DEAD_NAME: i32 = 72;
    pub const LAST: i32 = 77;
}

macro_rules! code_enum {
    ($(#[$m:meta])* $vis:vis enum $ty:ident : $repr:ty { $($(#[$vm:meta])* $name:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $ty { $($(#[$vm])* $name,)* }
        impl $ty {
            pub const fn code(self) -> $repr { match self { $(Self::$name => $val,)* } }
            pub fn from_code(c: $repr) -> Option<Self> { match c { $($val => Some(Self::$name),)* _ => None } }
            pub const fn c_name(self) -> &'static str { match self { $(Self::$name => stringify!($name),)* } }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", self.c_name(), self.code())
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { fmt::Debug::fmt(self, f) }
        }
        impl std::error::Error for $ty {}
    };
}

code_enum! {
    /// `kern_return_t` failures (`KERN_SUCCESS` is `Ok`).
    pub enum KernReturn: i32 {
        InvalidAddress = 1,
        ProtectionFailure = 2,
        NoSpace = 3,
        InvalidArgument = 4,
        Failure = 5,
        ResourceShortage = 6,
        NotReceiver = 7,
        NoAccess = 8,
        MemoryFailure = 9,
        MemoryError = 10,
        NotInSet = 12,
        NameExists = 13,
        Aborted = 14,
        InvalidName = 15,
        InvalidTask = 16,
        InvalidRight = 17,
        InvalidValue = 18,
        UrefsOverflow = 19,
        InvalidCapability = 20,
        RightExists = 21,
        InvalidHost = 22,
        MemoryPresent = 23,
        WriteProtectionFailure = 24,
        Terminated = 26,
        TimedOut = 27,
        Interrupted = 28,
    }
}

code_enum! {
    /// `mach_msg_return_t` failures (`MACH_MSG_SUCCESS` is `Ok`).
    pub enum MsgReturn: u32 {
        SendInProgress = 0x1000_0001,
        SendInvalidData = 0x1000_0002,
        SendInvalidDest = 0x1000_0003,
        SendTimedOut = 0x1000_0004,
        SendWillNotify = 0x1000_0005,
        SendNotifyInProgress = 0x1000_0006,
        SendInterrupted = 0x1000_0007,
        SendMsgTooSmall = 0x1000_0008,
        SendInvalidReply = 0x1000_0009,
        SendInvalidRight = 0x1000_000a,
        SendInvalidNotify = 0x1000_000b,
        SendInvalidMemory = 0x1000_000c,
        SendNoBuffer = 0x1000_000d,
        SendNoNotify = 0x1000_000e,
        SendInvalidType = 0x1000_000f,
        SendInvalidHeader = 0x1000_0010,
        RcvInProgress = 0x1000_4001,
        RcvInvalidName = 0x1000_4002,
        RcvTimedOut = 0x1000_4003,
        RcvTooLarge = 0x1000_4004,
        RcvInterrupted = 0x1000_4005,
        RcvPortChanged = 0x1000_4006,
        RcvInvalidNotify = 0x1000_4007,
        RcvInvalidData = 0x1000_4008,
        RcvPortDied = 0x1000_4009,
        RcvInSet = 0x1000_400a,
        RcvHeaderError = 0x1000_400b,
        RcvBodyError = 0x1000_400c,
    }
}

/// MIG's own return codes (`mig_errors.h`).
pub mod mig {
    pub const TYPE_ERROR: i32 = -300;
    pub const REPLY_MISMATCH: i32 = -301;
    pub const REMOTE_ERROR: i32 = -302;
    pub const BAD_ID: i32 = -303;
    pub const BAD_ARGUMENTS: i32 = -304;
    pub const NO_REPLY: i32 = -305;
    pub const EXCEPTION: i32 = -306;
    pub const ARRAY_TOO_LARGE: i32 = -307;
    pub const SERVER_DIED: i32 = -308;
    pub const DESTROY_REQUEST: i32 = -309;
}

/// VM protections (`vm_prot.h`).
pub mod vm_prot {
    pub const NONE: i32 = 0;
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const EXECUTE: i32 = 4;
    pub const NO_CHANGE: i32 = 8;
}

/// Memory-object copy strategies (`memory_object.h`).
pub mod copy_strategy {
    pub const NONE: i32 = 0;
    pub const CALL: i32 = 1;
    pub const DELAY: i32 = 2;
    pub const TEMPORARY: i32 = 3;
}

/// `should_return` values of `memory_object_lock_request`.
pub mod should_return {
    pub const NONE: i32 = 0;
    pub const DIRTY: i32 = 1;
    pub const ALL: i32 = 2;
}
