//! MIG-style RPC definitions.
//!
//! [`interface!`](crate::interface) declares a subsystem's routines (name, message
//! ID, argument types in order, and for routines the reply's). It generates a
//! struct per request and reply with `to_message`/`from_message`, a `Server` trait
//! with one method per routine, `dispatch` (MIG's demux), and the ID table used
//! to name messages. Conventions are MIG's: the destination port is implicit, a
//! reply's ID is the request's plus 100, a reply starts with the `RetCode`
//! (`INTEGER_32`), and a failed routine replies with the code alone.

use crate::message::{Item, Message, Payload};
use crate::types::{msg_type, msgh_bits, Name};
use crate::Error;

/// A value that travels as one typed item.
pub trait Arg: Sized {
    fn put(&self, items: &mut Vec<Item>);
    fn take(item: &Item) -> Result<Self, &'static str>;
}

fn bytes_of(item: &Item, type_names: &[u8], size: u16) -> Result<Vec<u8>, &'static str> {
    if !type_names.contains(&item.type_name) || item.size != size || item.number != 1 {
        return Err("wrong type descriptor");
    }
    item.bytes_payload()
        .map(<[u8]>::to_vec)
        .ok_or("not inline data")
}

macro_rules! int_arg {
    ($t:ty, $name:expr, $bits:expr) => {
        impl Arg for $t {
            fn put(&self, items: &mut Vec<Item>) {
                items.push(Item::data($name, $bits, 1, self.to_le_bytes().to_vec()));
            }
            fn take(item: &Item) -> Result<Self, &'static str> {
                let b = bytes_of(item, &[$name], $bits)?;
                Ok(<$t>::from_le_bytes(
                    b.try_into().map_err(|_| "wrong length")?,
                ))
            }
        }
    };
}

int_arg!(i32, msg_type::INTEGER_32, 32);
int_arg!(u32, msg_type::INTEGER_32, 32);
int_arg!(i64, msg_type::INTEGER_64, 64);
int_arg!(u64, msg_type::INTEGER_64, 64);

impl Arg for bool {
    fn put(&self, items: &mut Vec<Item>) {
        items.push(Item::boolean(*self));
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        let b = bytes_of(item, &[msg_type::BOOLEAN], 32)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| "wrong length")?) != 0)
    }
}

/// A port right argument: the name and its disposition when sending, the name
/// and received form (`PORT_SEND`, …) when received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Right {
    pub name: Name,
    pub disposition: u8,
}

impl Right {
    pub const fn new(name: Name, disposition: u8) -> Self {
        Self { name, disposition }
    }
}

impl Arg for Right {
    fn put(&self, items: &mut Vec<Item>) {
        items.push(Item::port(self.disposition, self.name));
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        if !msg_type::is_port_any(item.type_name) || item.number != 1 || !item.inline {
            return Err("expected one inline port right");
        }
        let names = item.names_payload().ok_or("port item without names")?;
        Ok(Right {
            name: names[0],
            disposition: item.type_name,
        })
    }
}

/// A port name without a right (`mach_port_name_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortName(pub Name);

impl Arg for PortName {
    fn put(&self, items: &mut Vec<Item>) {
        items.push(Item::port_name(self.0));
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        let b = bytes_of(item, &[msg_type::PORT_NAME], 32)?;
        Ok(PortName(u32::from_le_bytes(
            b.try_into().map_err(|_| "wrong length")?,
        )))
    }
}

/// `data_t`/`pointer_t`: bytes, inline when small, out of line otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

/// MIG sends variable arrays inline up to this size (its default is 2048 bytes).
pub const INLINE_DATA_MAX: usize = 2048;

impl Arg for Bytes {
    fn put(&self, items: &mut Vec<Item>) {
        if self.0.len() <= INLINE_DATA_MAX {
            items.push(Item::bytes(self.0.clone()));
        } else {
            items.push(Item::ool_bytes(self.0.clone(), false));
        }
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        if !matches!(item.type_name, msg_type::BYTE | msg_type::CHAR) || item.size != 8 {
            return Err("expected bytes");
        }
        match &item.payload {
            Payload::Bytes(b) => Ok(Bytes(b.clone())),
            _ => Err("bytes not carried"),
        }
    }
}

/// `pointer_t`: bytes always sent out of line; `deallocate` moves the region
/// (MIG's `Dealloc[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub bytes: Vec<u8>,
    pub deallocate: bool,
}

impl Arg for Region {
    fn put(&self, items: &mut Vec<Item>) {
        items.push(Item::ool_bytes(self.bytes.clone(), self.deallocate));
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        if !matches!(item.type_name, msg_type::BYTE | msg_type::CHAR) || item.size != 8 {
            return Err("expected bytes");
        }
        match &item.payload {
            Payload::Bytes(b) => Ok(Region {
                bytes: b.clone(),
                deallocate: item.deallocate,
            }),
            _ => Err("bytes not carried"),
        }
    }
}

/// `string_t`: a C string in a 1024-byte field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CString(pub String);

pub const STRING_T_LEN: usize = 1024;

impl Arg for CString {
    fn put(&self, items: &mut Vec<Item>) {
        items.push(Item::c_string(&self.0, STRING_T_LEN));
    }
    fn take(item: &Item) -> Result<Self, &'static str> {
        if item.type_name != msg_type::STRING_C {
            return Err("expected a string");
        }
        let b = item.bytes_payload().ok_or("string not inline")?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8(b[..end].to_vec())
            .map(CString)
            .map_err(|_| "string is not UTF-8")
    }
}

/// What a server's demux did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Send this reply (to the request's reply port).
    Reply(Message),
    /// A simpleroutine, or a routine whose reply port was null.
    NoReply,
    /// The ID belongs to no routine of this interface (MIG's `MIG_BAD_ID`); the
    /// caller may try another interface or reply with [`bad_id_reply`].
    NotMine,
}

/// Reads the arguments of message `id` in order.
#[derive(Debug)]
pub struct ArgReader<'a> {
    id: i32,
    items: std::slice::Iter<'a, Item>,
    index: usize,
}

impl<'a> ArgReader<'a> {
    pub fn new(msg: &'a Message) -> Self {
        Self {
            id: msg.id,
            items: msg.body.iter(),
            index: 0,
        }
    }
    pub fn arg<T: Arg>(&mut self) -> Result<T, Error> {
        let (id, index) = (self.id, self.index);
        self.index += 1;
        let item = self.items.next().ok_or(Error::Argument {
            id,
            index,
            reason: "missing",
        })?;
        T::take(item).map_err(|reason| Error::Argument { id, index, reason })
    }
    pub fn finish(mut self) -> Result<(), Error> {
        match self.items.next() {
            None => Ok(()),
            Some(_) => Err(Error::Argument {
                id: self.id,
                index: self.index,
                reason: "unexpected extra item",
            }),
        }
    }
}

/// A reply with only a return code (MIG's reply to a failed or unknown routine).
pub fn error_reply(request: &Message, code: i32) -> Message {
    reply_message(request, code, Vec::new())
}

/// The reply MIG's demux sends for an unknown ID.
pub fn bad_id_reply(request: &Message) -> Message {
    error_reply(request, crate::types::mig::BAD_ID)
}

/// Builds the reply to `request`: to its reply right, with the form it arrived as.
pub fn reply_message(request: &Message, code: i32, mut rest: Vec<Item>) -> Message {
    let mut body = Vec::with_capacity(rest.len() + 1);
    code.put(&mut body);
    body.append(&mut rest);
    Message::simple(
        request.remote_port,
        msgh_bits::remote(request.bits),
        request.id + 100,
        body,
    )
}

/// The return code and the rest of a reply to request `request_id`.
pub fn split_reply(request_id: i32, reply: &Message) -> Result<(i32, ArgReader<'_>), Error> {
    if reply.id != request_id + 100 {
        return Err(Error::ReplyMismatch {
            expected: request_id + 100,
            found: reply.id,
        });
    }
    let mut args = ArgReader::new(reply);
    let code: i32 = args.arg()?;
    Ok((code, args))
}

/// Defines a MIG-style interface. See the module documentation; example:
///
/// ```
/// mach::interface! {
///     /// A tiny counter service.
///     pub mod counter: "counter" 5000 {
///         /// Adds to the counter and returns the new value.
///         routine add = 5000 (Add) { amount: i32 } -> AddReply { total: i64 };
///         /// Resets it.
///         simpleroutine reset = 5001 (Reset) {};
///     }
/// }
/// use counter::Server;
/// struct Counter(i64);
/// impl counter::Server for Counter {
///     fn add(&mut self, _req: &mach::Message, args: counter::Add) -> Result<counter::AddReply, i32> {
///         self.0 += i64::from(args.amount);
///         Ok(counter::AddReply { total: self.0 })
///     }
///     fn reset(&mut self, _req: &mach::Message, _args: counter::Reset) { self.0 = 0; }
/// }
/// ```
#[macro_export]
macro_rules! interface {
    (
        $(#[$mdoc:meta])*
        $vis:vis mod $module:ident : $subsystem:literal $base:literal {
            $(
                $(#[$rdoc:meta])*
                $kind:ident $routine:ident = $id:literal ($req:ident) { $($arg:ident : $argty:ty),* $(,)? }
                $(-> $reply:ident { $($out:ident : $outty:ty),* $(,)? })? ;
            )*
        }
    ) => {
        $(#[$mdoc])*
        #[allow(clippy::too_many_arguments)]
        $vis mod $module {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::rpc::{Arg as _, Bytes, CString, PortName, Region, Right};

            /// The subsystem's name and base ID.
            pub const SUBSYSTEM: (&str, i32) = ($subsystem, $base);

            /// Every routine: (request ID, name, has a reply).
            pub const ROUTINES: &[(i32, &str, bool)] = &[
                $(($id, stringify!($routine), $crate::__has_reply!($($reply)?)),)*
            ];

            $(
                $(#[$rdoc])*
                #[derive(Clone, Debug, PartialEq, Eq)]
                pub struct $req { $(pub $arg: $argty,)* }

                impl $req {
                    pub const ID: i32 = $id;

                    /// The request message to `dest`, with `reply` as its reply port.
                    pub fn to_message(&self, dest: $crate::Name, dest_disposition: u8, reply: $crate::Name, reply_disposition: u8) -> $crate::Message {
                        #[allow(unused_mut)]
                        let mut body = ::std::vec::Vec::new();
                        $($crate::rpc::Arg::put(&self.$arg, &mut body);)*
                        $crate::Message::new(dest, dest_disposition, reply, reply_disposition, $id, body)
                    }

                    pub fn from_message(msg: &$crate::Message) -> ::std::result::Result<Self, $crate::Error> {
                        #[allow(unused_mut)]
                        let mut args = $crate::rpc::ArgReader::new(msg);
                        let value = Self { $($arg: args.arg()?,)* };
                        args.finish()?;
                        Ok(value)
                    }
                }

                $(
                    #[derive(Clone, Debug, PartialEq, Eq)]
                    pub struct $reply { $(pub $out: $outty,)* }

                    impl $reply {
                        pub const ID: i32 = $id + 100;

                        /// The reply to `request`.
                        pub fn to_message(&self, request: &$crate::Message) -> $crate::Message {
                            #[allow(unused_mut)]
                            let mut rest = ::std::vec::Vec::new();
                            $($crate::rpc::Arg::put(&self.$out, &mut rest);)*
                            $crate::rpc::reply_message(request, 0, rest)
                        }

                        /// The routine's result: its outputs, or the `RetCode` it failed with.
                        pub fn from_message(msg: &$crate::Message) -> ::std::result::Result<::std::result::Result<Self, i32>, $crate::Error> {
                            let (code, mut args) = $crate::rpc::split_reply($id, msg)?;
                            if code != 0 {
                                args.finish()?;
                                return Ok(Err(code));
                            }
                            let value = Self { $($out: args.arg()?,)* };
                            args.finish()?;
                            Ok(Ok(value))
                        }
                    }
                )?
            )*

            /// The server side: one method per routine.
            pub trait Server {
                $(
                    $(#[$rdoc])*
                    fn $routine(&mut self, request: &$crate::Message, args: $req) -> $crate::__server_return!($($reply)?);
                )*
            }

            /// MIG's demux: decodes, calls the method, builds the reply.
            pub fn dispatch<S: Server + ?Sized>(server: &mut S, msg: &$crate::Message) -> $crate::rpc::Dispatch {
                match msg.id {
                    $(
                        $id => {
                            let args = match $req::from_message(msg) {
                                Ok(a) => a,
                                Err(_) => return $crate::__bad_arguments!(msg $(, $reply)?),
                            };
                            $crate::__call!(server, $routine, msg, args $(, $reply)?)
                        }
                    )*
                    _ => $crate::rpc::Dispatch::NotMine,
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __has_reply {
    () => {
        false
    };
    ($r:ident) => {
        true
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __server_return {
    () => { () };
    ($r:ident) => { ::std::result::Result<$r, i32> };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bad_arguments {
    ($msg:ident) => {
        $crate::rpc::Dispatch::NoReply
    };
    ($msg:ident, $r:ident) => {
        $crate::rpc::reply_or_nothing(
            $msg,
            $crate::rpc::error_reply($msg, $crate::types::mig::BAD_ARGUMENTS),
        )
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __call {
    ($server:ident, $routine:ident, $msg:ident, $args:ident) => {{
        $server.$routine($msg, $args);
        $crate::rpc::Dispatch::NoReply
    }};
    ($server:ident, $routine:ident, $msg:ident, $args:ident, $r:ident) => {{
        let reply = match $server.$routine($msg, $args) {
            Ok(out) => out.to_message($msg),
            Err(code) => $crate::rpc::error_reply($msg, code),
        };
        $crate::rpc::reply_or_nothing($msg, reply)
    }};
}

/// A routine called without a reply port gets no reply.
pub fn reply_or_nothing(request: &Message, reply: Message) -> Dispatch {
    if crate::types::name_valid(request.remote_port) {
        Dispatch::Reply(reply)
    } else {
        Dispatch::NoReply
    }
}
