//! The driver: runs a [`Kernel`] for tokio tasks, turning its [`Wake`]s into
//! wake-ups and its `Pending`/empty answers into waiting, with timeouts.
//!
//! One lock guards the kernel and the waiters. A wait leaves its task's
//! waker with the kernel's empty answer, under that lock, so no wake-up can
//! come in between, and takes it back when it ends, however it ends; a
//! message wakes every wait on its port or set (each looks again, and those
//! that find nothing wait again), and a port's death or change moves its
//! wait cell's epoch on, which the woken wait looks at first.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::kernel::{
    Kernel, RecvError, RecvOptions, SendError, SendStatus, SendTicket, TaskId, Waitable, Wake,
};
use crate::message::Message;
use crate::types::{MsgReturn, Name};

/// A kernel shared by the tokio tasks of one node process.
#[derive(Clone, Debug)]
pub struct Host {
    state: Arc<Mutex<State>>,
}

/// Runs in a task that sent a message to the receive right or port set it
/// was set for ([`Host::set_send_hook`]), after the send, with no lock held.
pub type SendHook = Arc<dyn Fn() + Send + Sync>;

struct State {
    kernel: Kernel,
    waits: FxHashMap<Waitable, Waiting>,
    sends: FxHashMap<SendTicket, Arc<Notify>>,
    wakes: Vec<Wake>,
    send_hook: Option<(Waitable, SendHook)>,
    /// A send made the hook's source readable: the sender runs the hook.
    hook_due: bool,
    /// Numbers the waits of [`Host::wait_for`].
    waits_made: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("kernel", &self.kernel)
            .field("waits", &self.waits.len())
            .field("sends", &self.sends.len())
            .field("send_hook", &self.send_hook.as_ref().map(|(w, _)| w))
            .finish_non_exhaustive()
    }
}

/// The tasks waiting on one port or set, and its cell.
#[derive(Debug, Default)]
struct Waiting {
    cell: Arc<WaitCell>,
    /// One per wait, by its number; a wait takes its own back when it ends.
    wakers: Vec<(u64, Waker)>,
}

#[derive(Debug, Default)]
struct WaitCell {
    /// Bumped when the object dies or changes; `reason` says which. (A
    /// waiter keeps the cell it waited on: a later waiter's is a new one.)
    epoch: AtomicU64,
    reason: AtomicU32,
}

impl State {
    fn dispatch_wakes(&mut self) {
        self.dispatch(false)
    }

    /// The wake-ups a send caused: the hook's source, if it became readable,
    /// is left to the sender's hook instead of its waiter.
    fn dispatch_send_wakes(&mut self) -> Option<SendHook> {
        self.dispatch(true);
        if !std::mem::take(&mut self.hook_due) {
            return None;
        }
        self.send_hook.as_ref().map(|(_, hook)| hook.clone())
    }

    fn dispatch(&mut self, hooked: bool) {
        self.kernel.drain_wakes_into(&mut self.wakes);
        for wake in self.wakes.drain(..) {
            match wake {
                Wake::Readable(w) => {
                    if hooked && self.send_hook.as_ref().is_some_and(|(h, _)| *h == w) {
                        self.hook_due = true;
                    } else if let Some(waiting) = self.waits.get_mut(&w) {
                        waiting.wakers.drain(..).for_each(|(_, w)| w.wake());
                    }
                }
                Wake::Died(w) | Wake::Changed(w) => {
                    if let Some(waiting) = self.waits.remove(&w) {
                        let reason = if matches!(wake, Wake::Died(_)) {
                            MsgReturn::RcvPortDied
                        } else {
                            MsgReturn::RcvPortChanged
                        };
                        waiting.cell.reason.store(reason.code(), Ordering::Relaxed);
                        waiting.cell.epoch.fetch_add(1, Ordering::Release);
                        waiting.wakers.into_iter().for_each(|(_, w)| w.wake());
                    }
                }
                Wake::SendDone(ticket) => {
                    if let Some(n) = self.sends.remove(&ticket) {
                        // Every waiter `send_done` registered, and a permit
                        // for the sender, which may not wait yet.
                        n.notify_waiters();
                        n.notify_one();
                    }
                }
            }
        }
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new(Kernel::default())
    }
}

impl Host {
    pub fn new(kernel: Kernel) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                kernel,
                waits: FxHashMap::default(),
                sends: FxHashMap::default(),
                wakes: Vec::new(),
                send_hook: None,
                hook_due: false,
                waits_made: 0,
            })),
        }
    }

    /// From now on a task whose [`Host::send`] makes `task`'s receive right
    /// or port set `name` readable runs `hook` after it (its waiter is not
    /// woken for that): a receiver that takes messages under a lock of its
    /// own can take them in the sender's turn, without a task hand-off.
    /// Wake-ups from anything else ([`Host::with`], kernel notifications)
    /// still go to the waiter. Replaces an earlier hook.
    pub fn set_send_hook(&self, task: TaskId, name: Name, hook: SendHook) -> Result<(), RecvError> {
        let mut st = self.lock();
        let source = st.kernel.receive_source(task, name)?;
        st.send_hook = Some((source, hook));
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("kernel lock poisoned: a kernel call panicked")
    }

    /// Runs `f` on the kernel (port operations, task creation), then delivers the
    /// wake-ups it caused.
    pub fn with<R>(&self, f: impl FnOnce(&mut Kernel) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st.kernel);
        st.dispatch_wakes();
        r
    }

    /// `mach_msg(MACH_SEND_MSG)`, with `MACH_SEND_TIMEOUT` when `timeout` is set.
    pub async fn send(
        &self,
        task: TaskId,
        msg: Message,
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        let may_block = timeout != Some(Duration::ZERO);
        let notify = {
            let mut st = self.lock();
            let status = st.kernel.send(task, msg, may_block);
            let hook = st.dispatch_send_wakes();
            let pending = match status {
                Ok(SendStatus::Pending(ticket)) => {
                    let notify = Arc::new(Notify::new());
                    st.sends.insert(ticket, notify.clone());
                    Some((ticket, notify))
                }
                _ => None,
            };
            drop(st);
            if let Some(hook) = hook {
                hook();
            }
            match status? {
                SendStatus::Sent => return Ok(()),
                SendStatus::Pending(_) => pending.expect("registered above"),
            }
        };
        let (ticket, notify) = notify;
        let done = notify.notified();
        let woke = match timeout {
            None => {
                done.await;
                true
            }
            Some(t) => tokio::time::timeout(t, done).await.is_ok(),
        };
        let mut st = self.lock();
        let result = if woke && st.kernel.send_completed(ticket) {
            Ok(())
        } else {
            st.sends.remove(&ticket);
            st.kernel.cancel_send(ticket)
        };
        let hook = st.dispatch_send_wakes();
        drop(st);
        if let Some(hook) = hook {
            hook();
        }
        result
    }

    /// Waits until a send that returned [`SendStatus::Pending`] to a caller of
    /// [`Host::with`] is done (delivered, or destroyed with its port). Its
    /// completion stays for that caller's [`Kernel::send_completed`].
    pub async fn send_done(&self, ticket: SendTicket) {
        let notify = {
            let mut st = self.lock();
            if !st.kernel.send_pending(ticket) {
                return;
            }
            st.sends
                .entry(ticket)
                .or_insert_with(|| Arc::new(Notify::new()))
                .clone()
        };
        // Every waiter of the ticket is woken. One registered only after the
        // wake-up went out finds the send no longer pending.
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if !self.lock().kernel.send_pending(ticket) {
            return;
        }
        notified.await;
    }

    /// `mach_msg(MACH_RCV_MSG)` on a receive right or port set, with
    /// `MACH_RCV_TIMEOUT` when `timeout` is set.
    pub async fn receive(
        &self,
        task: TaskId,
        name: Name,
        options: RecvOptions,
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        let attempt = self.wait_for(
            |st| {
                let got = st.kernel.receive(task, name, options);
                st.dispatch_wakes();
                if let Some(msg) = got? {
                    return Ok(Some(msg));
                }
                if timeout == Some(Duration::ZERO) {
                    return Err(timed_out());
                }
                Ok(None)
            },
            task,
            name,
        );
        match timeout {
            None => attempt.await,
            Some(t) => tokio::time::timeout(t, attempt)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
        }
    }

    /// Waits until a receive on `name` would find a message, without taking
    /// it: for a receiver that must take messages under a lock of its own.
    pub async fn readable(&self, task: TaskId, name: Name) -> Result<(), RecvError> {
        self.wait_for(
            |st| Ok(st.kernel.has_message(task, name)?.then_some(())),
            task,
            name,
        )
        .await
    }

    /// Looks (under the lock) until `look` answers, waiting on `task`'s
    /// receive right or port set `name` in between: the waker is left in the
    /// same locked turn that found nothing, and taken back when the wait
    /// ends, however it ends.
    async fn wait_for<T>(
        &self,
        mut look: impl FnMut(&mut State) -> Result<Option<T>, RecvError>,
        task: TaskId,
        name: Name,
    ) -> Result<T, RecvError> {
        let mut wait = Wait {
            host: self,
            left: None,
        };
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if let Some(left) = &wait.left {
                if let Err(e) = ended(&left.cell, left.epoch) {
                    // (The cell went with its port's wait list.)
                    wait.left = None;
                    return Poll::Ready(Err(e));
                }
            }
            let answer = match look(&mut st) {
                Ok(None) => st.kernel.receive_source(task, name),
                Ok(Some(v)) => {
                    wait.take_back(&mut st);
                    return Poll::Ready(Ok(v));
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(source) => {
                    let id = match &wait.left {
                        Some(left) => left.id,
                        None => {
                            st.waits_made += 1;
                            st.waits_made
                        }
                    };
                    wait.left = Some(st.wait(source, id, cx.waker()));
                    Poll::Pending
                }
                Err(e) => {
                    wait.take_back(&mut st);
                    Poll::Ready(Err(e))
                }
            }
        })
        .await
    }

    /// A MIG-style call: sends `request` (whose reply port is `reply_port`, a
    /// receive right of `task`) and waits for the reply there.
    pub async fn call(
        &self,
        task: TaskId,
        request: Message,
        reply_port: Name,
    ) -> Result<Message, MsgReturn> {
        self.send(task, request, None).await.map_err(|e| e.code)?;
        self.receive(task, reply_port, RecvOptions::default(), None)
            .await
            .map_err(|e| e.code)
    }
}

fn timed_out() -> RecvError {
    RecvError {
        code: MsgReturn::RcvTimedOut,
        size: None,
        header: None,
    }
}

impl State {
    /// Leaves `waker` for wait `id` to be woken when `source` becomes
    /// readable, dies or changes (in place of what the wait left before).
    fn wait(&mut self, source: Waitable, id: u64, waker: &Waker) -> Left {
        let waiting = self.waits.entry(source).or_default();
        match waiting.wakers.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(waker),
            None => waiting.wakers.push((id, waker.clone())),
        }
        Left {
            source,
            cell: waiting.cell.clone(),
            epoch: waiting.cell.epoch.load(Ordering::Acquire),
            id,
        }
    }
}

/// A waker left for a source by wait `id`, with the source's cell and its
/// epoch then.
struct Left {
    source: Waitable,
    cell: Arc<WaitCell>,
    epoch: u64,
    id: u64,
}

/// One wait of [`Host::wait_for`]: a wait given up (a timeout, a `select!`)
/// takes its waker back, so a long-lived port keeps none of waits gone.
struct Wait<'a> {
    host: &'a Host,
    left: Option<Left>,
}

impl Wait<'_> {
    fn take_back(&mut self, st: &mut State) {
        let Some(left) = self.left.take() else {
            return;
        };
        // (Usually a wake-up took it already.)
        if let Some(waiting) = st.waits.get_mut(&left.source) {
            waiting.wakers.retain(|(i, _)| *i != left.id);
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.left.is_some() {
            let host = self.host;
            self.take_back(&mut host.lock());
        }
    }
}

/// The receive a waiter woke for ended (its port or set died) if the cell's
/// epoch moved since `epoch`.
fn ended(cell: &WaitCell, epoch: u64) -> Result<(), RecvError> {
    if cell.epoch.load(Ordering::Acquire) == epoch {
        return Ok(());
    }
    let code =
        MsgReturn::from_code(cell.reason.load(Ordering::Relaxed)).unwrap_or(MsgReturn::RcvPortDied);
    Err(RecvError {
        code,
        size: None,
        header: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{msg_type, PortRight};

    fn waker_count(host: &Host) -> usize {
        let st = host.lock();
        st.waits.values().map(|w| w.wakers.len()).sum()
    }

    /// Waits given up (as in a `select!` loop) take their wakers back.
    #[tokio::test]
    async fn a_wait_given_up_leaves_no_waker() {
        let host = Host::default();
        let (task, port) = host.with(|k| {
            let task = k.create_task();
            (task, k.port_allocate(task, PortRight::Receive).unwrap())
        });
        for _ in 0..10 {
            let receive = host.receive(task, port, RecvOptions::default(), None);
            let readable = host.readable(task, port);
            tokio::select! {
                biased;
                _ = receive => unreachable!("nothing was sent"),
                _ = readable => unreachable!("nothing was sent"),
                () = std::future::ready(()) => {}
            }
            assert_eq!(waker_count(&host), 0);
        }
    }

    /// Two waits on one port: the one given up takes back only its own
    /// waker, and the other is still woken by the next message.
    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_the_other_wait() {
        let host = Host::default();
        let (a, b, port, send) = host.with(|k| {
            let a = k.create_task();
            let b = k.create_task();
            let port = k.port_allocate(a, PortRight::Receive).unwrap();
            let send = k
                .port_extract_right(a, port, msg_type::MAKE_SEND, b)
                .unwrap()
                .0;
            (a, b, port, send)
        });
        let opts = RecvOptions::default();
        let long = {
            let host = host.clone();
            tokio::spawn(async move { host.receive(a, port, opts, None).await })
        };
        let short = {
            let host = host.clone();
            tokio::spawn(async move {
                host.receive(a, port, opts, Some(Duration::from_millis(10)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(waker_count(&host), 1, "the long wait's");
        host.send(
            b,
            Message::simple(send, msg_type::COPY_SEND, 7, vec![]),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            short.await.unwrap().unwrap_err().code,
            MsgReturn::RcvTimedOut
        );
        let long = tokio::time::timeout(Duration::from_secs(5), long)
            .await
            .expect("the long wait is woken");
        assert_eq!(long.unwrap().unwrap().id, 7);
        assert_eq!(waker_count(&host), 0);
    }
}
