//! The pager as a Mach task: kernels are tasks on the Mach model that speak
//! memory_object and memory_object_control messages (built and parsed with the
//! project's interface definitions), as GNU Mach's VM does.

use std::collections::BTreeMap;
use std::time::Duration;

use libpager::{BackingStore, Config, PageIndex, Pager};
use mach::interfaces::{memory_object as mo, memory_object_control as ctl};
use mach::rpc::{Dispatch, Region, Right};
use mach::types::{msg_type as mt, vm_prot, PortRight};
use mach::{Kernel, Message, Name, RecvOptions, TaskId, NAME_NULL};

const PS: u64 = 64;

#[derive(Default)]
struct Store {
    pages: BTreeMap<PageIndex, Vec<u8>>,
    writes: u32,
}

impl BackingStore for Store {
    fn read_page(&mut self, page: PageIndex) -> Result<Vec<u8>, i32> {
        Ok(self
            .pages
            .get(&page)
            .cloned()
            .unwrap_or_else(|| vec![0; PS as usize]))
    }
    fn write_page(&mut self, page: PageIndex, data: &[u8]) -> Result<(), i32> {
        self.writes += 1;
        self.pages.insert(page, data.to_vec());
        Ok(())
    }
    fn unlock_page(&mut self, _: PageIndex) -> Result<(), i32> {
        Ok(())
    }
}

/// A kernel's side of one mapping: its control port, the object's send right,
/// and the resident pages with their access.
struct Vm {
    task: TaskId,
    control: Name,
    name_port: Name,
    object: Name,
    pages: BTreeMap<u64, (Vec<u8>, i32, bool)>,
    ready: bool,
    errors: Vec<i32>,
    outgoing: Vec<Message>,
}

impl ctl::Server for Vm {
    fn memory_object_data_unavailable(&mut self, _: &Message, _: ctl::DataUnavailable) {}
    fn memory_object_get_attributes(
        &mut self,
        _: &Message,
        _: ctl::GetAttributes,
    ) -> Result<ctl::GetAttributesReply, i32> {
        Err(-1)
    }
    fn memory_object_lock_request(&mut self, _: &Message, a: ctl::LockRequest) {
        for page in (a.offset / PS)..(a.offset + a.size) / PS {
            let Some((data, lock, dirty)) = self.pages.get(&page).cloned() else {
                continue;
            };
            if a.should_return == 2 || (a.should_return == 1 && dirty) {
                let r = mo::DataReturn {
                    control: Right::new(self.control, mt::MAKE_SEND),
                    offset: page * PS,
                    data: Region {
                        bytes: data.clone(),
                        deallocate: true,
                    },
                    dirty,
                    kernel_copy: !a.should_flush,
                };
                self.outgoing
                    .push(r.to_message(self.object, mt::COPY_SEND, NAME_NULL, 0));
            }
            if a.should_flush {
                self.pages.remove(&page);
            } else {
                let new_lock = if a.lock_value == vm_prot::NO_CHANGE {
                    lock
                } else {
                    a.lock_value
                };
                let still_dirty = dirty && a.should_return == 0;
                self.pages.insert(page, (data, new_lock, still_dirty));
            }
        }
        if a.reply_to.name != NAME_NULL {
            let done = mo::LockCompleted {
                control: Right::new(self.control, mt::MAKE_SEND),
                offset: a.offset,
                length: a.size,
            };
            self.outgoing
                .push(done.to_message(a.reply_to.name, mt::MOVE_SEND_ONCE, NAME_NULL, 0));
        }
    }
    fn memory_object_data_error(&mut self, _: &Message, a: ctl::DataError) {
        self.errors.push(a.error_value);
    }
    fn memory_object_destroy(&mut self, _: &Message, _: ctl::Destroy) {}
    fn memory_object_data_supply(&mut self, _: &Message, a: ctl::DataSupply) {
        for (i, chunk) in a.data.bytes.chunks(PS as usize).enumerate() {
            self.pages.insert(
                a.offset / PS + i as u64,
                (chunk.to_vec(), a.lock_value, false),
            );
        }
    }
    fn memory_object_ready(&mut self, _: &Message, _: ctl::Ready) {
        self.ready = true;
    }
    fn memory_object_change_attributes(&mut self, _: &Message, _: ctl::ChangeAttributes) {}
}

struct World {
    k: Kernel,
    pager_task: TaskId,
    pager: Pager<Store>,
    vms: Vec<Vm>,
    now: Duration,
}

impl World {
    fn new(kernels: usize) -> World {
        let mut k = Kernel::default();
        let pager_task = k.create_task();
        let pager = Pager::create(
            &mut k,
            pager_task,
            Store::default(),
            Config {
                page_size: PS,
                hold: Duration::ZERO,
                lease: Duration::from_secs(5),
            },
        )
        .unwrap();
        let mut vms = Vec::new();
        for _ in 0..kernels {
            let task = k.create_task();
            let control = k.port_allocate(task, PortRight::Receive).unwrap();
            let name_port = k.port_allocate(task, PortRight::Receive).unwrap();
            let object = k
                .port_extract_right(pager_task, pager.port(), mt::MAKE_SEND, task)
                .unwrap()
                .0;
            vms.push(Vm {
                task,
                control,
                name_port,
                object,
                pages: BTreeMap::new(),
                ready: false,
                errors: Vec::new(),
                outgoing: Vec::new(),
            });
        }
        let mut w = World {
            k,
            pager_task,
            pager,
            vms,
            now: Duration::ZERO,
        };
        for i in 0..kernels {
            let vm = &w.vms[i];
            let init = mo::Init {
                control: Right::new(vm.control, mt::MAKE_SEND),
                name: Right::new(vm.name_port, mt::MAKE_SEND),
                page_size: PS,
            };
            let m = init.to_message(vm.object, mt::COPY_SEND, NAME_NULL, 0);
            w.k.send(vm.task, m, false).unwrap();
        }
        w.pump();
        assert!(
            w.vms.iter().all(|v| v.ready),
            "memory_object_ready reached every kernel"
        );
        w
    }

    fn request(&mut self, i: usize, page: u64, write: bool) {
        let vm = &self.vms[i];
        let access = if write {
            vm_prot::READ | vm_prot::WRITE
        } else {
            vm_prot::READ
        };
        let m = mo::DataRequest {
            control: Right::new(vm.control, mt::MAKE_SEND),
            offset: page * PS,
            length: PS,
            desired_access: access,
        }
        .to_message(vm.object, mt::COPY_SEND, NAME_NULL, 0);
        self.k.send(vm.task, m, false).unwrap();
    }

    /// Delivers messages both ways until nothing moves.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(msg) = self
                .k
                .receive(self.pager_task, self.pager.port(), RecvOptions::default())
                .unwrap()
            {
                self.pager
                    .handle_message(&mut self.k, &msg, self.now)
                    .unwrap();
                moved = true;
            }
            for vm in &mut self.vms {
                if self.k.port_type(vm.task, vm.control).is_err() {
                    continue;
                }
                while let Ok(Some(msg)) =
                    self.k.receive(vm.task, vm.control, RecvOptions::default())
                {
                    assert!(
                        !matches!(ctl::dispatch(vm, &msg), Dispatch::NotMine),
                        "unknown message {}",
                        msg.id
                    );
                    moved = true;
                }
                for m in vm.outgoing.drain(..) {
                    self.k.send(vm.task, m, false).unwrap();
                    moved = true;
                }
            }
            self.now += Duration::from_millis(1);
            self.pager.tick(&mut self.k, self.now).unwrap();
            if !moved {
                return;
            }
        }
        panic!("no quiescence");
    }
}

#[test]
fn two_kernels_share_a_page_coherently_through_messages() {
    let mut w = World::new(2);
    w.request(0, 3, true);
    w.pump();
    let (data, lock, _) = w.vms[0].pages[&3].clone();
    assert_eq!(lock, vm_prot::NONE, "writable");
    // Kernel 0 writes; kernel 1 reads.
    let mut written = data;
    written[0] = 42;
    w.vms[0]
        .pages
        .insert(3, (written.clone(), vm_prot::NONE, true));
    w.request(1, 3, false);
    w.pump();
    assert_eq!(
        w.vms[1].pages[&3],
        (written.clone(), vm_prot::WRITE, false),
        "the reader sees the write"
    );
    assert_eq!(
        w.vms[0].pages[&3].1,
        vm_prot::WRITE,
        "the writer keeps a read-only copy"
    );
    assert_eq!(
        w.pager.store().pages[&3],
        written,
        "and it reached the backing store"
    );
    // Kernel 1 wants to write: kernel 0 is flushed.
    w.request(1, 3, true);
    w.pump();
    assert!(!w.vms[0].pages.contains_key(&3));
    assert_eq!(w.vms[1].pages[&3].1, vm_prot::NONE);
}

#[test]
fn a_dead_kernel_is_dropped_by_its_dead_name_notification() {
    let mut w = World::new(2);
    w.request(0, 0, true);
    w.pump();
    w.request(1, 0, false);
    // Kernel 0 dies before answering the revocation.
    let t = w.vms[0].task;
    w.k.destroy_task(t).unwrap();
    w.pump();
    assert_eq!(
        w.vms[1].pages[&0].1,
        vm_prot::WRITE,
        "kernel 1 was served without kernel 0"
    );
    assert_eq!(w.pager.engine().holders(0), (vec![2], None));
}

#[test]
fn sync_and_shutdown_through_the_external_api() {
    let mut w = World::new(1);
    w.request(0, 1, true);
    w.pump();
    let mut d = w.vms[0].pages[&1].0.clone();
    d[5] = 7;
    w.vms[0].pages.insert(1, (d.clone(), vm_prot::NONE, true));
    let now = w.now;
    let id = w.pager.sync(&mut w.k, 0, 4 * PS, true, now).unwrap();
    w.pump();
    assert_eq!(w.pager.take_completed(), [id]);
    assert_eq!(w.pager.store().pages[&1], d);
    assert!(
        w.vms[0].pages.contains_key(&1),
        "sync leaves the page mapped"
    );
    let now = w.now;
    let id = w.pager.shut_down(&mut w.k, now).unwrap();
    w.pump();
    assert_eq!(w.pager.take_completed(), [id]);
    assert!(w.vms[0].pages.is_empty(), "shutdown takes everything back");
    assert_eq!(w.pager.engine().active_pages(), 0);
    // After shutdown, requests are not served.
    w.request(0, 1, false);
    w.pump();
    assert!(w.vms[0].pages.is_empty());
}

#[test]
fn malformed_and_unknown_messages_are_ignored_safely() {
    let mut w = World::new(1);
    let vm = &w.vms[0];
    // data_request with its arguments missing, and an unknown routine.
    let bad = Message::simple(vm.object, mt::COPY_SEND, 2203, vec![mach::Item::int32(1)]);
    w.k.send(vm.task, bad, false).unwrap();
    let unknown = Message::simple(vm.object, mt::COPY_SEND, 2999, vec![]);
    w.k.send(vm.task, unknown, false).unwrap();
    // A request naming a control port the pager never saw.
    let stranger = w.k.port_allocate(vm.task, PortRight::Receive).unwrap();
    let m = mo::DataRequest {
        control: Right::new(stranger, mt::MAKE_SEND),
        offset: 0,
        length: PS,
        desired_access: vm_prot::READ,
    }
    .to_message(vm.object, mt::COPY_SEND, NAME_NULL, 0);
    w.k.send(vm.task, m, false).unwrap();
    w.pump();
    assert_eq!(w.pager.engine().active_pages(), 0);
    // The pager still works.
    w.request(0, 0, false);
    w.pump();
    assert!(w.vms[0].pages.contains_key(&0));
}
