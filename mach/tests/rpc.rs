//! Interfaces defined with `interface!`, exercised through the kernel and driver.

use std::time::Duration;

use mach::interfaces::{memory_object, memory_object_control as control, notify, routine_name};
use mach::rpc::{Dispatch, Region, Right};
use mach::runtime::Host;
use mach::types::{mig, msg_type as mt, notify_id, PortRight};
use mach::{Message, MsgReturn, RecvOptions};

#[derive(Default)]
struct Recorder(Vec<String>);

impl notify::Server for Recorder {
    fn mach_notify_port_deleted(&mut self, _: &Message, a: notify::PortDeleted) {
        self.0.push(format!("deleted {}", a.name.0));
    }
    fn mach_notify_msg_accepted(&mut self, _: &Message, a: notify::MsgAccepted) {
        self.0.push(format!("accepted {}", a.name.0));
    }
    fn mach_notify_port_destroyed(&mut self, _: &Message, a: notify::PortDestroyed) {
        self.0
            .push(format!("destroyed form {}", a.rights.disposition));
    }
    fn mach_notify_no_senders(&mut self, _: &Message, a: notify::NoSenders) {
        self.0.push(format!("no-senders {}", a.mscount));
    }
    fn mach_notify_send_once(&mut self, _: &Message, _: notify::SendOnce) {
        self.0.push("send-once".into());
    }
    fn mach_notify_dead_name(&mut self, _: &Message, a: notify::DeadName) {
        self.0.push(format!("dead-name {}", a.name.0));
    }
}

#[tokio::test]
async fn kernel_notifications_decode_with_the_notify_interface() {
    let host = Host::default();
    let (a, b, port, notify_port, send_name) = host.with(|k| {
        let a = k.create_task();
        let b = k.create_task();
        let port = k.port_allocate(a, PortRight::Receive).unwrap();
        let notify_port = k.port_allocate(a, PortRight::Receive).unwrap();
        let (send_name, _) = k.port_extract_right(a, port, mt::MAKE_SEND, b).unwrap();
        k.port_request_notification(
            a,
            port,
            notify_id::NO_SENDERS,
            0,
            notify_port,
            mt::MAKE_SEND_ONCE,
        )
        .unwrap();
        (a, b, port, notify_port, send_name)
    });
    let server = host.clone();
    let waiter = tokio::spawn(async move {
        let mut rec = Recorder::default();
        for _ in 0..1 {
            let msg = server
                .receive(
                    a,
                    notify_port,
                    RecvOptions::default(),
                    Some(Duration::from_secs(5)),
                )
                .await
                .unwrap();
            assert_eq!(notify::dispatch(&mut rec, &msg), Dispatch::NoReply);
        }
        rec.0
    });
    host.with(|k| {
        k.port_deallocate(b, send_name).unwrap();
        let so = k
            .port_extract_right(a, port, mt::MAKE_SEND_ONCE, b)
            .unwrap()
            .0;
        k.port_deallocate(b, so).unwrap();
    });
    // The no-senders notification goes to notify_port, the send-once one to port.
    let got = waiter.await.unwrap();
    assert_eq!(got, ["no-senders 1"]);
    let so = host
        .receive(a, port, RecvOptions::default(), Some(Duration::ZERO))
        .await
        .unwrap();
    let mut rec = Recorder::default();
    notify::dispatch(&mut rec, &so);
    assert_eq!(rec.0, ["send-once"]);
}

struct Kernelish;

impl control::Server for Kernelish {
    fn memory_object_data_unavailable(&mut self, _: &Message, _: control::DataUnavailable) {}
    fn memory_object_get_attributes(
        &mut self,
        _: &Message,
        _: control::GetAttributes,
    ) -> Result<control::GetAttributesReply, i32> {
        Ok(control::GetAttributesReply {
            object_ready: true,
            may_cache: false,
            copy_strategy: 2,
        })
    }
    fn memory_object_lock_request(&mut self, _: &Message, _: control::LockRequest) {}
    fn memory_object_data_error(&mut self, _: &Message, _: control::DataError) {}
    fn memory_object_destroy(&mut self, _: &Message, _: control::Destroy) {}
    fn memory_object_data_supply(&mut self, _: &Message, _: control::DataSupply) {}
    fn memory_object_ready(&mut self, _: &Message, _: control::Ready) {}
    fn memory_object_change_attributes(&mut self, _: &Message, _: control::ChangeAttributes) {}
}

#[tokio::test]
async fn routine_with_reply_round_trips_through_the_driver() {
    let host = Host::default();
    let (client, server_task, service, to_service, reply_port) = host.with(|k| {
        let client = k.create_task();
        let server_task = k.create_task();
        let service = k.port_allocate(server_task, PortRight::Receive).unwrap();
        let to_service = k
            .port_extract_right(server_task, service, mt::MAKE_SEND, client)
            .unwrap()
            .0;
        let reply_port = k.port_allocate(client, PortRight::Receive).unwrap();
        (client, server_task, service, to_service, reply_port)
    });
    let server_host = host.clone();
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let req = server_host
                .receive(server_task, service, RecvOptions::default(), None)
                .await
                .unwrap();
            let reply = match control::dispatch(&mut Kernelish, &req) {
                Dispatch::Reply(m) => m,
                Dispatch::NotMine => mach::rpc::bad_id_reply(&req),
                Dispatch::NoReply => continue,
            };
            assert_eq!(reply.remote_type(), mt::MOVE_SEND_ONCE);
            server_host.send(server_task, reply, None).await.unwrap();
        }
    });
    let req = control::GetAttributes {}.to_message(
        to_service,
        mt::COPY_SEND,
        reply_port,
        mt::MAKE_SEND_ONCE,
    );
    let reply = host.call(client, req, reply_port).await.unwrap();
    assert_eq!(reply.id, 2140);
    let out = control::GetAttributesReply::from_message(&reply)
        .unwrap()
        .unwrap();
    assert_eq!(
        out,
        control::GetAttributesReply {
            object_ready: true,
            may_cache: false,
            copy_strategy: 2
        }
    );
    // A malformed request gets MIG_BAD_ARGUMENTS.
    let mut bad = control::GetAttributes {}.to_message(
        to_service,
        mt::COPY_SEND,
        reply_port,
        mt::MAKE_SEND_ONCE,
    );
    bad.body.push(mach::Item::int32(1));
    let reply = host.call(client, bad, reply_port).await.unwrap();
    assert_eq!(
        control::GetAttributesReply::from_message(&reply).unwrap(),
        Err(mig::BAD_ARGUMENTS)
    );
    // An unknown ID gets MIG_BAD_ID.
    let unknown = Message::new(
        to_service,
        mt::COPY_SEND,
        reply_port,
        mt::MAKE_SEND_ONCE,
        2999,
        vec![],
    );
    let reply = host.call(client, unknown, reply_port).await.unwrap();
    assert_eq!(mach::rpc::split_reply(2999, &reply).unwrap().0, mig::BAD_ID);
    server.await.unwrap();
}

#[test]
fn requests_encode_and_decode_with_their_types() {
    let req = memory_object::DataReturn {
        control: Right::new(5, mt::MAKE_SEND),
        offset: 4096,
        data: Region {
            bytes: vec![1; 4096],
            deallocate: true,
        },
        dirty: true,
        kernel_copy: false,
    };
    let msg = req.to_message(9, mt::COPY_SEND, 0, 0);
    assert_eq!(msg.id, 2208);
    assert!(msg.is_complex());
    assert_eq!(memory_object::DataReturn::from_message(&msg).unwrap(), req);
    let wrong = memory_object::DataRequest::from_message(&msg).unwrap_err();
    assert!(
        matches!(
            wrong,
            mach::Error::Argument {
                id: 2208,
                index: 2,
                ..
            }
        ),
        "{wrong}"
    );
    let lock = control::LockRequest {
        offset: 0,
        size: 8192,
        should_return: 1,
        should_flush: true,
        lock_value: 2,
        reply_to: Right::new(3, mt::MAKE_SEND_ONCE),
    };
    assert_eq!(
        control::LockRequest::from_message(&lock.to_message(1, mt::COPY_SEND, 0, 0)).unwrap(),
        lock
    );
    assert_eq!(
        routine_name(2044),
        Some(("mach", "memory_object_lock_request", false))
    );
    assert_eq!(
        routine_name(2140),
        Some(("mach", "memory_object_get_attributes", true))
    );
    assert_eq!(
        routine_name(72),
        Some(("notify", "mach_notify_dead_name", false))
    );
    assert_eq!(routine_name(2144), None, "simpleroutines have no reply");
    assert_eq!(
        MsgReturn::from_code(0x1000_4004),
        Some(MsgReturn::RcvTooLarge)
    );
}
