//! The echo service `netmsg serve` exports as its root port, and `netmsg
//! ping` calls: a Mach RPC server that answers each request on the reply
//! port it names with the request's data. It shows a peer's links, mutual
//! TLS, the bootstrap exchange and port translation working end to end, as
//! ICMP echo shows a host's network stack.
//!
//! A request is any message with a send or send-once reply right: the reply
//! has id `request id + 100` (MIG's convention) and the request's data items
//! in order; rights a request carries are released, never echoed.

use mach::runtime::Host;
use mach::types::msg_type;
use mach::{Item, Kernel, Message, Name, Payload, PortRight, RecvOptions, TaskId};
use mach::{NAME_DEAD, NAME_NULL};

/// The id of a `netmsg ping` request.
pub const PING: i32 = 4000;

/// The reply to `request` (received by `task`), if it names a reply port;
/// the rights it carries are released in `k` either way.
pub fn answer(k: &mut Kernel, task: TaskId, mut request: Message) -> Option<Message> {
    let mut body = Vec::new();
    for item in std::mem::take(&mut request.body) {
        match &item.payload {
            Payload::Names(names) => {
                for &n in names {
                    release(k, task, n, item.type_name);
                }
            }
            Payload::Bytes(_) => body.push(item),
            Payload::Address(_) => {}
        }
    }
    let reply = request.remote_port;
    match request.remote_type() {
        msg_type::PORT_SEND | msg_type::PORT_SEND_ONCE if reply != NAME_NULL => Some(
            Message::simple(reply, request.remote_type(), request.id + 100, body),
        ),
        0 => None,
        ty => {
            release(k, task, reply, ty);
            None
        }
    }
}

/// Drops a right `task` received as `type_name` (a `PORT_*` type).
fn release(k: &mut Kernel, task: TaskId, name: Name, type_name: u8) {
    if name == NAME_NULL || name == NAME_DEAD {
        return;
    }
    let _ = if type_name == msg_type::PORT_RECEIVE {
        k.port_mod_refs(task, name, PortRight::Receive as u32, -1)
    } else {
        k.port_deallocate(task, name)
    };
}

/// Serves `port` (a receive right of `task`) until it dies.
pub async fn serve(host: Host, task: TaskId, port: Name) {
    while let Ok(request) = host.receive(task, port, RecvOptions::default(), None).await {
        if let Some(reply) = host.with(|k| answer(k, task, request)) {
            // A reply port that died meanwhile is the client's business.
            let _ = host.send(task, reply, None).await;
        }
    }
}

/// A `PING` request of `size` bytes (sequence number first) replying to
/// `reply` with a send-once right.
pub fn request(dest: Name, reply: Name, sequence: u32, size: usize) -> Message {
    let mut bytes = sequence.to_le_bytes().to_vec();
    bytes.resize(size.max(4), 0);
    Message::new(
        dest,
        msg_type::COPY_SEND,
        reply,
        msg_type::MAKE_SEND_ONCE,
        PING,
        vec![Item::bytes(bytes)],
    )
}
