//! The tokio driver: blocking, timeouts and deaths as a task sees them.

use std::time::Duration;

use mach::runtime::Host;
use mach::types::{msg_type as mt, PortRight};
use mach::{Item, Message, MsgReturn, Name, RecvOptions, TaskId};

fn two_tasks(host: &Host) -> (TaskId, TaskId, Name, Name) {
    host.with(|k| {
        let a = k.create_task();
        let b = k.create_task();
        let port = k.port_allocate(a, PortRight::Receive).unwrap();
        let send = k.port_extract_right(a, port, mt::MAKE_SEND, b).unwrap().0;
        (a, b, port, send)
    })
}

#[tokio::test(start_paused = true)]
async fn receive_timeout_and_zero_timeout() {
    let host = Host::default();
    let (a, _, port, _) = two_tasks(&host);
    let err = host
        .receive(a, port, RecvOptions::default(), Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.code, MsgReturn::RcvTimedOut);
    let err = host
        .receive(
            a,
            port,
            RecvOptions::default(),
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, MsgReturn::RcvTimedOut);
    let err = host
        .receive(a, 0x999, RecvOptions::default(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, MsgReturn::RcvInvalidName);
}

#[tokio::test(start_paused = true)]
async fn blocked_send_completes_when_the_receiver_drains() {
    let host = Host::default();
    let (a, b, port, send) = two_tasks(&host);
    for i in 0..5 {
        host.send(b, Message::simple(send, mt::COPY_SEND, i, vec![]), None)
            .await
            .unwrap();
    }
    let sender = {
        let host = host.clone();
        tokio::spawn(async move {
            host.send(b, Message::simple(send, mt::COPY_SEND, 5, vec![]), None)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!sender.is_finished(), "the queue is full: the sender waits");
    let first = host
        .receive(a, port, RecvOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(first.id, 0);
    sender.await.unwrap().unwrap();
    let ids: Vec<i32> = futures_ids(&host, a, port, 5).await;
    assert_eq!(ids, [1, 2, 3, 4, 5]);
}

async fn futures_ids(host: &Host, t: TaskId, port: Name, n: usize) -> Vec<i32> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            host.receive(t, port, RecvOptions::default(), Some(Duration::ZERO))
                .await
                .unwrap()
                .id,
        );
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn send_timeout_returns_the_rights_to_the_sender() {
    let host = Host::default();
    let (_, b, _, send) = two_tasks(&host);
    for i in 0..5 {
        host.send(b, Message::simple(send, mt::COPY_SEND, i, vec![]), None)
            .await
            .unwrap();
    }
    let mine = host.with(|k| k.port_allocate(b, PortRight::Receive).unwrap());
    let msg = Message::simple(
        send,
        mt::COPY_SEND,
        9,
        vec![Item::port(mt::MOVE_RECEIVE, mine)],
    );
    let err = host
        .send(b, msg, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(err.code, MsgReturn::SendTimedOut);
    let back = err.message.body[0].names_payload().unwrap()[0];
    assert_eq!(
        host.with(|k| k.port_type(b, back)),
        Ok(mach::types::port_type::RECEIVE),
        "the receive right came back"
    );
    host.with(|k| k.check_invariants()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiting_receiver_learns_the_port_died_or_moved() {
    let host = Host::default();
    let (a, _, port, _) = two_tasks(&host);
    let waiter = {
        let host = host.clone();
        tokio::spawn(async move { host.receive(a, port, RecvOptions::default(), None).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    host.with(|k| k.port_destroy(a, port)).unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap_err().code,
        MsgReturn::RcvPortDied
    );

    let (a, _, port, _) = two_tasks(&host);
    let set = host
        .with(|k| k.port_allocate(a, PortRight::PortSet))
        .unwrap();
    let waiter = {
        let host = host.clone();
        tokio::spawn(async move { host.receive(a, port, RecvOptions::default(), None).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    host.with(|k| k.port_move_member(a, port, set)).unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap_err().code,
        MsgReturn::RcvPortChanged
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocked_sender_to_a_dying_port_succeeds_and_its_rights_are_destroyed() {
    let host = Host::default();
    let (a, b, port, send) = two_tasks(&host);
    for i in 0..5 {
        host.send(b, Message::simple(send, mt::COPY_SEND, i, vec![]), None)
            .await
            .unwrap();
    }
    let reply = host
        .with(|k| k.port_allocate(b, PortRight::Receive))
        .unwrap();
    let sender = {
        let host = host.clone();
        tokio::spawn(async move {
            host.send(
                b,
                Message::new(send, mt::COPY_SEND, reply, mt::MAKE_SEND_ONCE, 5, vec![]),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    host.with(|k| k.port_destroy(a, port)).unwrap();
    sender.await.unwrap().unwrap();
    // The waiting message's send-once reply right was destroyed: b is told.
    let n = host
        .receive(b, reply, RecvOptions::default(), Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(n.id, mach::types::notify_id::SEND_ONCE);
}

/// A send that makes the hooked port readable runs the hook in the sending
/// task, after the send and with no lock held (the hook takes the message
/// itself), and wakes no waiter; a message the kernel queues otherwise (a
/// notification) still wakes the waiter.
#[tokio::test(start_paused = true)]
async fn a_send_hook_takes_the_message_in_the_senders_turn() {
    let host = Host::default();
    let (a, b, port, send) = two_tasks(&host);
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook_host = host.clone();
    let hook_taken = taken.clone();
    host.set_send_hook(
        a,
        port,
        std::sync::Arc::new(move || {
            let opts = RecvOptions::default();
            while let Ok(Some(m)) = hook_host.with(|k| k.receive(a, port, opts)) {
                hook_taken.lock().unwrap().push(m.id);
            }
        }),
    )
    .unwrap();
    let waiter = {
        let host = host.clone();
        tokio::spawn(async move { host.readable(a, port).await })
    };
    tokio::task::yield_now().await;
    host.send(b, Message::simple(send, mt::COPY_SEND, 7, vec![]), None)
        .await
        .unwrap();
    assert_eq!(
        *taken.lock().unwrap(),
        vec![7],
        "taken in the sender's turn"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!waiter.is_finished(), "the waiter was not woken for it");
    // A dead-name notification to the port, queued by the kernel.
    host.with(|k| {
        let other = k.port_allocate(b, PortRight::Receive).unwrap();
        let (right, _) = k.port_extract_right(b, other, mt::MAKE_SEND, a).unwrap();
        let (notify, _) = k
            .port_extract_right(a, port, mt::MAKE_SEND_ONCE, a)
            .unwrap();
        k.port_request_notification(
            a,
            right,
            mach::types::notify_id::DEAD_NAME,
            0,
            notify,
            mt::MOVE_SEND_ONCE,
        )
        .unwrap();
        k.port_mod_refs(b, other, PortRight::Receive as u32, -1)
            .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the notification wakes the waiter")
        .unwrap()
        .unwrap();
    assert_eq!(*taken.lock().unwrap(), vec![7]);
}

/// A message or a death racing a receiver (or a `readable` waiter) on another
/// worker is never lost, whenever it lands between the kernel's answer and
/// the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_racing_the_wait_is_never_lost() {
    let host = Host::default();
    for round in 0..2000u32 {
        let (a, b, port, send) = two_tasks(&host);
        let readable = round % 4 >= 2;
        let waiter = {
            let host = host.clone();
            tokio::spawn(async move {
                if readable {
                    host.readable(a, port).await.map(|()| None)
                } else {
                    host.receive(a, port, RecvOptions::default(), None)
                        .await
                        .map(|m| Some(m.id))
                }
            })
        };
        // (Spins a varying while, so the wake lands anywhere in the wait.)
        for _ in 0..round % 97 {
            std::hint::spin_loop();
        }
        let dies = round % 2 == 1;
        if dies {
            host.with(|k| k.port_destroy(a, port)).unwrap();
        } else {
            let m = Message::simple(send, mt::COPY_SEND, 7, Vec::new());
            host.send(b, m, None).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the waiter missed its wake-up"))
            .unwrap();
        match (dies, readable, got) {
            // (Destroyed before the first look, the name is simply gone.)
            (true, _, Err(e)) => assert!(
                matches!(e.code, MsgReturn::RcvPortDied | MsgReturn::RcvInvalidName),
                "round {round}: {e:?}"
            ),
            (false, false, Ok(Some(id))) => assert_eq!(id, 7, "round {round}"),
            (false, true, Ok(None)) => {}
            (_, _, other) => panic!("round {round}: {other:?}"),
        }
    }
}

/// Any number of tasks may wait for one blocked send: each is woken when it
/// is done, whether it began waiting before or after.
#[tokio::test(start_paused = true)]
async fn every_waiter_of_a_blocked_send_is_woken() {
    let host = Host::default();
    let (a, b, port, send) = two_tasks(&host);
    host.with(|k| k.port_set_qlimit(a, port, 1)).unwrap();
    host.send(b, Message::simple(send, mt::COPY_SEND, 0, vec![]), None)
        .await
        .unwrap();
    let ticket = host.with(|k| {
        match k
            .send(b, Message::simple(send, mt::COPY_SEND, 1, vec![]), true)
            .unwrap()
        {
            mach::SendStatus::Pending(ticket) => ticket,
            mach::SendStatus::Sent => panic!("the queue is full"),
        }
    });
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.send_done(ticket).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(waiters.iter().all(|w| !w.is_finished()), "the send waits");
    let first = host
        .receive(a, port, RecvOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(first.id, 0);
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(1), w)
            .await
            .expect("woken")
            .unwrap();
    }
    // A waiter that comes after returns at once.
    host.send_done(ticket).await;
    assert!(host.with(|k| k.send_completed(ticket)));
}
