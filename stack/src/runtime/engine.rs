//! The engine: one sans-IO [`Stack`] behind a lock, a device, and the readiness
//! plumbing that every API shape shares.
//!
//! ```text
//!   blocking net calls ─┐                         ┌─ driver: a thread (poll(2)) or a
//!   async polls ────────┼─lock─> Core { Stack,    │  tokio task (AsyncFd); reads the
//!                       │        out queue,  <────┘  device, feeds the core, runs timers
//!                       │        waiters }
//!        after the lock: wake the waiters whose sockets changed, write the core's
//!        packets to the device (one writer at a time, in the core's order)
//! ```
//!
//! Every operation of an API runs the same way: take the lock, call the core, "settle"
//! (queue the packets it produced for the device, take the waiters of the sockets whose
//! readiness changed, kick the driver if the next deadline moved earlier), release the
//! lock, then wake and write. A blocking call that got `WouldBlock` registers its
//! thread under the socket before releasing the lock and parks ([`Engine::block`]); an
//! async poll registers its task's waker instead ([`Engine::poll_op`]). So the blocking
//! and the async API are two thin consumers of the core's `poll_readiness`, and on a
//! single-threaded tokio runtime a packet is read, processed, answered and written on
//! one thread without any hand-off.
//!
//! Under the tokio driver, the async calls leave their packets in the core (unless a
//! full-sized segment is ready) and kick the driver, whose next turn takes them after
//! the tasks that were ready with it have run: what several calls and tasks produced
//! leaves together (a response with the FIN of a close, or with the ACK of data that
//! arrived in between). The core decides what to send and when (delayed ACKs, Nagle,
//! timers); deferring only moves the device write to the end of the current burst of
//! tasks, and every turn of the driver sends everything the core has.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use super::device::{Device, ImpairHandle, OffloadCounters};
use super::shards::{Inboxes, PacketQueue};
use super::sys::EventFd;
use super::tx::{Batch, Role, Tx, Written};
use super::wait::{LocalUnparks, Unparks, WaitMode, Waiter, Waiters};
use super::{DeviceHandles, RuntimeCounters};
use crate::shard::Input;
use crate::socket::{Readiness, SocketHandle};
use crate::stack::Stack;
use crate::time::Instant;
use crate::RxChecksum;

/// Packets read from the device per turn before the core is locked and fed.
pub(crate) const RX_BATCH: usize = 64;

/// How an API call tells the driver that the core's next deadline moved earlier than
/// the one it sleeps towards (and another shard that it handed it packets).
#[derive(Clone)]
pub(crate) enum Kick {
    /// The driver thread polls this eventfd beside the device.
    EventFd(Arc<EventFd>),
    /// The tokio driver task awaits this (no system call on the same runtime).
    #[cfg(feature = "tokio")]
    Notify(Arc<tokio::sync::Notify>),
}

impl Kick {
    pub(crate) fn kick(&self) {
        match self {
            Kick::EventFd(e) => e.kick(),
            #[cfg(feature = "tokio")]
            Kick::Notify(n) => n.notify_one(),
        }
    }
}

/// State shared by the driver and every handle.
pub(crate) struct Engine {
    core: Mutex<Core>,
    /// The device's write side (its own lock, taken after `core`'s). It drops its
    /// reference to the device on stop; the driver owns the other one, so the device
    /// (a TUN interface) goes away when the driver ends, however long handles live.
    tx: Tx,
    /// What the device is, for logs and `RuntimeHandle::device_description`.
    pub(crate) description: String,
    pub(crate) kick: Kick,
    /// API calls leave their packets in the core for the driver's next turn instead of
    /// writing them (the tokio driver; see `settle`).
    defer_tx: bool,
    /// When the driver will wake up by itself (microseconds of the engine's clock;
    /// `u64::MAX`: only for packets or a kick). A writer whose device now holds a
    /// packet due earlier (impairment middleware) kicks it.
    driver_wake: AtomicU64,
    stopped: AtomicBool,
    /// `tunstack::Instant::ZERO` of this engine.
    pub(crate) epoch: std::time::Instant,
    pub(crate) name: String,
    pub(crate) impair: Option<ImpairHandle>,
    /// The offload device's counters, when the runtime drives one.
    pub(crate) offload: Option<Arc<OffloadCounters>>,
    /// The device steers flows to their shards (a multi-queue TUN with our program).
    pub(crate) steering: bool,
    /// As one shard of a multi-queue runtime: this shard's index and every shard's
    /// inbox (see `runtime/shards.rs`).
    shard: Option<(usize, Arc<Inboxes>)>,
}

/// Everything that is only touched under the lock.
pub(crate) struct Core {
    pub(crate) stack: Stack,
    /// Packets taken from the stack, handed to `Engine::tx` before the lock is released.
    out: Batch,
    /// Room for one packet (the device's MTU).
    mtu: usize,
    /// The deadline the driver is sleeping towards; a call that moves the core's
    /// deadline earlier must kick it.
    driver_deadline: Option<Instant>,
    stopped: bool,
    /// An API call left packets in the core and kicked the driver to send them; the
    /// driver's next turn does, and clears this.
    flush_requested: bool,
    /// Threads and tasks waiting for a socket.
    waiters: Waiters,
    pub(crate) counters: RuntimeCounters,
    /// As a shard: packets for each other shard, staged during a turn and handed over
    /// at its end; and the buffer this shard's inbox is taken into.
    handoff: Vec<PacketQueue>,
    inbox: PacketQueue,
}

impl Core {
    /// Take every packet the core has ready into `out`.
    fn flush(&mut self, now: Instant) {
        let (stack, out) = (&mut self.stack, &mut self.out);
        while out.push_with(self.mtu, |buf| stack.poll_transmit(now, buf)).is_some() {}
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

pub(crate) fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "runtime shut down")
}

fn poisoned_error() -> io::Error {
    io::Error::other("runtime stopped: the stack panicked")
}

impl Engine {
    pub(crate) fn new(
        stack: Stack,
        device: &Arc<dyn Device>,
        kick: Kick,
        name: String,
        handles: DeviceHandles,
        shard: Option<(usize, Arc<Inboxes>)>,
    ) -> Engine {
        let mtu = device.mtu();
        #[cfg(feature = "tokio")]
        let defer_tx = matches!(kick, Kick::Notify(_));
        #[cfg(not(feature = "tokio"))]
        let defer_tx = false;
        Engine {
            core: Mutex::new(Core {
                stack,
                out: Batch::default(),
                mtu,
                driver_deadline: None,
                stopped: false,
                flush_requested: false,
                waiters: Waiters::default(),
                counters: RuntimeCounters::default(),
                handoff: (0..shard.as_ref().map_or(0, |(_, b)| b.len())).map(|_| PacketQueue::default()).collect(),
                inbox: PacketQueue::default(),
            }),
            tx: Tx::new(Arc::clone(device)),
            description: device.describe(),
            kick,
            defer_tx,
            driver_wake: AtomicU64::new(u64::MAX),
            stopped: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
            name,
            impair: handles.impair,
            offload: handles.offload,
            steering: handles.steering,
            shard,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(micros.min(u64::MAX as u128) as u64)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Lock the core for an API call: `NotConnected` once the runtime stopped.
    fn lock(&self) -> io::Result<MutexGuard<'_, Core>> {
        if self.is_stopped() {
            return Err(stopped_error());
        }
        let core = self.core.lock().map_err(|_| poisoned_error())?;
        if core.stopped {
            return Err(stopped_error());
        }
        Ok(core)
    }

    /// Lock for a read-only snapshot, which is fine even after shutdown.
    pub(crate) fn lock_any(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After the core ran (an API call or the driver's turn): queue what it produced for
    /// the device, collect the waiters of the sockets whose readiness changed into
    /// `unparks`, and for API calls make sure the driver does not sleep past a deadline
    /// that moved earlier. Once the lock is released, the caller wakes the waiters and,
    /// when told [`Role::Write`], writes the queued packets.
    ///
    /// With `defer` (an API call under the tokio driver, see [`Engine::defers`]) the
    /// packets stay in the core and the driver is kicked to take them at its next turn:
    /// that turn runs after the tasks that were ready with it (a woken task is queued
    /// behind them), so what a burst of tasks produced goes out in one batch, the
    /// response and the FIN of a closing connection leave as one segment, and no task
    /// is preempted in the middle of its work by the peer its device write woke.
    fn settle(&self, core: &mut Core, now: Instant, from_api: bool, defer: bool, unparks: &mut Unparks) -> Role {
        let mut kick = false;
        let role = if defer {
            if !core.flush_requested && core.stack.may_transmit() {
                core.flush_requested = true;
                core.counters.flush_kicks += 1;
                kick = true;
            }
            Role::Done
        } else {
            core.flush(now);
            self.tx.enqueue(&mut core.out)
        };
        let before = unparks.len();
        while let Some((h, ready)) = core.stack.poll_readiness() {
            core.waiters.wake(h, ready, unparks);
        }
        core.counters.wakeups += (unparks.len() - before) as u64;
        if from_api {
            if let Some(d) = core.stack.poll_timeout() {
                if core.driver_deadline.is_none_or(|t| d < t) {
                    core.driver_deadline = Some(d);
                    core.counters.kicks += 1;
                    kick = true;
                }
            }
        }
        if kick {
            self.kick.kick();
        }
        role
    }

    /// Run one core call under the lock and send whatever it produced.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut Stack, Instant) -> io::Result<T>) -> io::Result<T> {
        // Dropped after `core`: woken threads are unparked and packets written once the
        // lock is released.
        let mut after = AfterLock::new(self);
        let _wake = WakeOnUnwind(self);
        let mut core = self.lock()?;
        let now = self.now();
        let result = f(&mut core.stack, now);
        after.role = self.settle(&mut core, now, true, self.defer_tx, &mut after.unparks);
        result
    }

    /// Whether an async call on socket `h` leaves its output to the driver: under the
    /// tokio driver, unless a full-sized segment of data is ready. A full segment gains
    /// nothing from waiting (no FIN or later write can join it), and bulk writers keep
    /// the pace they had when every call sent its own output: a task that fills its
    /// whole send buffer before yielding would otherwise have none of it on the wire
    /// until then.
    fn defers(&self, core: &Core, h: SocketHandle) -> bool {
        self.defer_tx && !core.stack.tcp_full_segment_unsent(h)
    }

    /// The async shape of a call: run `f`; if it says `WouldBlock`, register the task
    /// under socket `h` for `interest` (before the lock is released, so no readiness
    /// change can slip between the attempt and the registration) and return `Pending`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_op<T>(
        &self,
        h: SocketHandle,
        interest: Readiness,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Stack, Instant) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let mut after = AfterLock::new(self);
        let _wake = WakeOnUnwind(self);
        let mut core = match self.lock() {
            Ok(core) => core,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let now = self.now();
        let result = f(&mut core.stack, now);
        let defer = self.defers(&core, h);
        after.role = self.settle(&mut core, now, true, defer, &mut after.unparks);
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                core.waiters.register_task(h, interest, cx.waker());
                core.counters.waits += 1;
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }

    /// One attempt of a blocking wait on several engines (an accept on every shard's
    /// listener): run `f`; on `WouldBlock`, register `waiter` under `h` (without
    /// clearing its flag, see `Waiters::register_among`) unless it is `None` (a
    /// non-blocking call) and return `None`. The caller parks until the waiter is
    /// notified by any engine, then [`unregister`](Self::unregister)s it everywhere.
    pub(crate) fn attempt_or_register<T>(
        &self,
        h: SocketHandle,
        interest: Readiness,
        waiter: Option<&Arc<Waiter>>,
        f: impl FnOnce(&mut Stack, Instant) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let mut after = AfterLock::new(self);
        let _wake = WakeOnUnwind(self);
        let mut core = self.lock()?;
        let now = self.now();
        let result = f(&mut core.stack, now);
        after.role = self.settle(&mut core, now, true, false, &mut after.unparks);
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(w) = waiter {
                    core.waiters.register_among(h, interest, w);
                    core.counters.waits += 1;
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Take `waiter` out of `h`'s waiters if it is still there.
    pub(crate) fn unregister(&self, h: SocketHandle, waiter: &Arc<Waiter>) {
        self.lock_any().waiters.unregister(h, waiter);
    }

    /// Run `f` until it returns something other than `WouldBlock`, waiting for socket
    /// `h`'s readiness to change between attempts. With `nonblocking`, `WouldBlock` is
    /// returned at once; with a `timeout`, `WouldBlock` is returned once it has elapsed
    /// (what std's sockets do on Linux when SO_RCVTIMEO/SO_SNDTIMEO expire). Shutdown
    /// ends the wait with `NotConnected`. `interest` is the readiness that can end the
    /// wait; `mode` says whether it wakes this call together with the socket's other
    /// waiters or alone (accept).
    pub(crate) fn block<T>(
        &self,
        h: SocketHandle,
        mode: WaitMode,
        interest: Readiness,
        nonblocking: bool,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut Stack, Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        // Dropped after `core` (declared before it): unparks and writes happen without
        // the lock.
        let mut after = AfterLock::new(self);
        let _wake = WakeOnUnwind(self);
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut me: Option<Arc<Waiter>> = None;
        let mut core = self.lock()?;
        loop {
            let now = self.now();
            let result = f(&mut core.stack, now);
            // Blocked threads run beside the driver and write their own output.
            after.role = self.settle(&mut core, now, true, false, &mut after.unparks);
            let expired = match &result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                    deadline.is_some_and(|d| std::time::Instant::now() >= d)
                }
                _ => true,
            };
            if expired {
                if mode == WaitMode::Exclusive && me.is_some() {
                    // This call was (or may have been) woken alone for a readiness
                    // that can cover more than it used: give the next one its turn.
                    core.waiters.pass_on(h, &mut after.unparks);
                }
                return match result {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                        Err(io::Error::new(io::ErrorKind::WouldBlock, "operation timed out"))
                    }
                    other => other,
                };
            }
            // Registered while the lock is still held: a readiness change can only be
            // reported after this point, and then it finds us.
            let waiter = me.get_or_insert_with(Waiter::current);
            core.waiters.register(h, mode, interest, waiter);
            core.counters.waits += 1;
            drop(core);
            after.run();
            while !waiter.is_notified() {
                match deadline {
                    None => thread::park(),
                    Some(d) => {
                        let left = d.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        thread::park_timeout(left);
                    }
                }
            }
            core = self.lock()?;
            if !waiter.is_notified() {
                // Timed out: nobody took us out of the registry.
                core.waiters.unregister(h, waiter);
            }
        }
    }

    /// One turn of the driver: `packets` were read from `device` at `now`; feed them
    /// to the core, run the timers that are due, queue the output, collect the waiters
    /// to wake. Returns the next time the driver must run (the core's deadline or a
    /// packet the device holds back, whichever comes first) and whether the caller
    /// must write the device's queue once it woke `unparks`. `None` once stopped.
    pub(crate) fn turn<'a>(
        &self,
        device: &dyn Device,
        now: Instant,
        packets: impl Iterator<Item = (&'a [u8], RxChecksum)>,
        kicked: bool,
        unparks: &mut Unparks,
    ) -> Option<(Option<Instant>, Role)> {
        let Ok(mut guard) = self.core.lock() else { return None };
        let core = &mut *guard;
        if core.stopped {
            return None;
        }
        core.counters.turns += 1;
        core.counters.kicked_turns += u64::from(kicked);
        if let Some((me, inboxes)) = &self.shard {
            // What other shards read for us goes first (it was read earlier).
            inboxes.take(*me, &mut core.inbox);
            for pkt in core.inbox.iter() {
                core.counters.handoffs_in += 1;
                if let Input::Elsewhere(to) = core.stack.input(now, pkt) {
                    // Not ours either (a rule every shard computes alike says otherwise
                    // only for a reassembled datagram, which comes back through
                    // `poll_foreign`): pass it on rather than lose it.
                    stage(&mut core.handoff, &mut core.counters, to, pkt);
                }
            }
            core.inbox.clear();
        }
        for (pkt, check) in packets {
            core.counters.packets_read += 1;
            if let Input::Elsewhere(to) = core.stack.input_with(now, pkt, check) {
                stage(&mut core.handoff, &mut core.counters, to, pkt);
            }
        }
        while let Some((to, datagram)) = core.stack.poll_foreign() {
            stage(&mut core.handoff, &mut core.counters, to, &datagram);
        }
        if let Some((_, inboxes)) = &self.shard {
            for (to, q) in core.handoff.iter_mut().enumerate() {
                if !q.is_empty() {
                    core.counters.handoff_drops += inboxes.hand(to, q) as u64;
                }
            }
        }
        if core.stack.poll_timeout().is_some_and(|d| d <= now) {
            core.stack.handle_timeout(now);
        }
        // This turn sends whatever the API calls left in the core.
        core.flush_requested = false;
        let role = self.settle(core, now, false, false, unparks);
        let deadline = core.stack.poll_timeout();
        core.driver_deadline = deadline;
        Some((earliest(deadline, device.poll_at()), role))
    }

    /// As the writer (after [`Role::Write`]), write the device's queue without limit.
    pub(crate) fn write_all(&self) {
        self.tx.write_out(self.now(), usize::MAX);
    }

    /// The driver goes to sleep until `at` (or until packets or a kick come).
    pub(crate) fn driver_sleeps_until(&self, at: Option<Instant>) {
        self.driver_wake.store(at.map_or(u64::MAX, Instant::total_micros), Ordering::Release);
    }

    /// After an application's write: if the device now holds a packet back (a delayed
    /// link) that is due before the driver wakes, wake the driver so it releases it.
    fn wake_driver_for_device(&self) {
        if let Some(t) = self.tx.device_poll_at() {
            let t = t.total_micros();
            if t < self.driver_wake.fetch_min(t, Ordering::AcqRel) {
                self.kick.kick();
            }
        }
    }

    /// Stop everything: no more calls, waiters woken, driver told to exit, device
    /// released by the write side (the driver drops its own reference when it exits).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let mut unparks = Unparks::default();
        {
            let mut core = self.lock_any();
            core.stopped = true;
            core.waiters.wake_all(&mut unparks);
            core.counters.wakeups += unparks.len() as u64;
        }
        unparks.unpark_all();
        self.kick.kick();
        self.tx.close();
    }
}

/// Stage a packet for shard `to` (handed over at the end of the turn).
fn stage(handoff: &mut [PacketQueue], counters: &mut RuntimeCounters, to: u16, pkt: &[u8]) {
    counters.handoffs_out += 1;
    match handoff.get_mut(usize::from(to)) {
        Some(q) => q.push(pkt),
        None => counters.handoff_drops += 1,
    }
}

/// What an application call does once it released the core's lock: wake the threads
/// and tasks it collected, and write the device's queue if it became the writer. Runs
/// on drop too, so that every return path does it; declare it before the lock guard.
struct AfterLock<'a> {
    engine: &'a Engine,
    unparks: LocalUnparks,
    role: Role,
}

impl<'a> AfterLock<'a> {
    fn new(engine: &'a Engine) -> AfterLock<'a> {
        AfterLock { engine, unparks: LocalUnparks::new(), role: Role::Done }
    }

    fn run(&mut self) {
        self.unparks.unpark_all();
        if std::mem::replace(&mut self.role, Role::Done) == Role::Write {
            let now = self.engine.now();
            if let (_, Written::Left) = self.engine.tx.write_out(now, super::tx::APP_WRITER_ROUNDS) {
                // The driver writes the rest on its next turn.
                self.engine.kick.kick();
            }
            self.engine.wake_driver_for_device();
        }
    }
}

impl Drop for AfterLock<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

/// Wakes everybody if a core call panics on an application thread, so that nobody
/// stays parked waiting for a wakeup that will never come (woken threads, and the
/// driver, then find the lock poisoned and stop).
struct WakeOnUnwind<'a>(&'a Engine);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut unparks = Unparks::default();
            self.0.lock_any().waiters.wake_all(&mut unparks);
            unparks.unpark_all();
            self.0.kick.kick();
        }
    }
}
