//! The echo service's answers, on one kernel.

use mach::types::msg_type;
use mach::{Abi, Item, Kernel, Message, PortRight, RecvOptions, NAME_NULL};
use netmsg::echo;

/// A request's data comes back in order on its reply right, with id + 100;
/// a right it carries is released, not echoed; a message without a reply
/// right gets no answer and leaves nothing behind either.
#[test]
fn echoes_data_and_releases_rights() {
    let mut k = Kernel::new(Abi::X86_64);
    let server = k.create_task();
    let client = k.create_task();
    let root = k.port_allocate(server, PortRight::Receive).unwrap();
    let to_root = {
        k.port_insert_right(server, root, server, root, msg_type::MAKE_SEND)
            .unwrap();
        k.port_extract_right(server, root, msg_type::COPY_SEND, client)
            .unwrap()
            .0
    };
    let reply = k.port_allocate(client, PortRight::Receive).unwrap();
    let gift = k.port_allocate(client, PortRight::Receive).unwrap();
    let mut request = echo::request(to_root, reply, 7, 16);
    request.body.push(Item::port(msg_type::MAKE_SEND, gift));
    request.body.push(Item::bytes(vec![1, 2, 3]));
    k.send(client, request, false).unwrap();
    let got = k
        .receive(server, root, RecvOptions::default())
        .unwrap()
        .unwrap();
    let answer = echo::answer(&mut k, server, got).expect("a reply");
    k.send(server, answer, false).unwrap();
    let m = k
        .receive(client, reply, RecvOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(m.id, echo::PING + 100);
    let data: Vec<&[u8]> = m.body.iter().map(|i| i.bytes_payload().unwrap()).collect();
    let mut first = 7u32.to_le_bytes().to_vec();
    first.resize(16, 0);
    assert_eq!(data, vec![&first[..], &[1, 2, 3][..]]);
    // The gift's send right is gone from the server: only the client's
    // receive right is left, so it is no-senders now.
    assert_eq!(k.port_get_refs(client, gift, PortRight::Send as u32), Ok(0));

    let no_reply = Message::simple(
        to_root,
        msg_type::COPY_SEND,
        echo::PING,
        vec![Item::port(msg_type::MAKE_SEND, gift)],
    );
    k.send(client, no_reply, false).unwrap();
    let got = k
        .receive(server, root, RecvOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(got.remote_port, NAME_NULL);
    let carried = got.body[0].names_payload().unwrap()[0];
    assert!(echo::answer(&mut k, server, got).is_none());
    assert!(
        k.port_type(server, carried).is_err(),
        "the carried right is released"
    );
}
