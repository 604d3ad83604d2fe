//! Per-socket waiters: which blocked threads (the blocking `net` API) and which
//! pending tasks (the async API) wait for which socket.
//!
//! A blocked call registers its thread, a pending poll its task's `Waker`, under the
//! socket's handle while it still holds the core's lock, right after the core answered
//! `WouldBlock`, with what it waits for (readable, writable, acceptable). Whoever drains
//! `Stack::poll_readiness` (the driver, or an application call after its own work)
//! wakes only what is registered under the handles it got back for the readiness that
//! rose: the two API shapes are two thin consumers of the same readiness events.
//!
//! ```text
//!   blocked call, lock held:   f() -> WouldBlock, register(h), unlock, park
//!   waker, lock held:          poll_readiness() -> (h, r), take h's waiters for r, mark them
//!   waker, lock released:      unpark each taken thread
//! ```
//!
//! No wakeup can be lost: a readiness change is only reported under the lock, so it
//! happens either before the call's attempt (which then sees it) or after the
//! registration (which the waker then finds). `notified` is only written under the
//! lock; the unpark itself happens after the lock is released, so the woken thread does
//! not run straight into a held lock. A late or stray unpark is harmless: the parked
//! thread looks at its `notified` flag and parks again.
//!
//! Accepting threads wait *exclusively*, like Linux's exclusive wait queues: a new
//! connection wakes one of them, not all. The woken thread passes the turn on when it
//! leaves (see [`Waiters::pass_on`]), so connections that arrived together are all
//! picked up.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::thread::{self, Thread};

use crate::socket::{Readiness, SocketHandle};

/// How a blocked call wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Woken with every other waiter of the socket (reads, writes, connects).
    Shared,
    /// Woken alone (FIFO among the exclusive waiters of the socket): accept.
    Exclusive,
}

/// One thread's wait slot. Each thread has exactly one (see [`Waiter::current`]): a
/// thread blocks in at most one call at a time.
#[derive(Debug)]
pub(crate) struct Waiter {
    thread: Thread,
    /// Set (under the core's lock) when a waker took this waiter out of the registry.
    notified: AtomicBool,
}

thread_local! {
    static CURRENT: Arc<Waiter> = Arc::new(Waiter {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
}

impl Waiter {
    /// The calling thread's waiter (created on first use, then reused).
    pub(crate) fn current() -> Arc<Waiter> {
        CURRENT.with(Arc::clone)
    }

    /// Start a wait made of several registrations (see [`Waiters::register_among`]).
    pub(crate) fn reset(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Whether a waker took this waiter out of the registry since it registered.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }
}

/// Who waits: a parked thread or a pending task.
enum Who {
    Thread(Arc<Waiter>),
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Task(Waker),
}

impl Who {
    /// Take it out of the registry: a thread is marked notified (it checks the flag
    /// when it wakes up).
    fn notify(self) -> Who {
        if let Who::Thread(w) = &self {
            w.notified.store(true, Ordering::Release);
        }
        self
    }
}

struct Entry {
    h: SocketHandle,
    mode: WaitMode,
    /// What it waits for (a socket that closed wakes everybody).
    interest: Readiness,
    who: Who,
}

/// The registry. Lives in the core's lock.
#[derive(Default)]
pub(crate) struct Waiters {
    /// Indexed by `SocketHandle::index()`; one list per socket slot, in registration
    /// order. The lists keep their capacity, so registering allocates only the first
    /// time a slot gets more waiters than it ever had.
    by_slot: Vec<Vec<Entry>>,
    /// Entries in all lists.
    len: usize,
}

impl Waiters {
    /// Register `waiter` (of the calling thread) under `h`. Clears its `notified` flag.
    pub(crate) fn register(&mut self, h: SocketHandle, mode: WaitMode, interest: Readiness, waiter: &Arc<Waiter>) {
        let idx = h.index() as usize;
        if idx >= self.by_slot.len() {
            self.by_slot.resize_with(idx + 1, Vec::new);
        }
        waiter.notified.store(false, Ordering::Relaxed);
        self.by_slot[idx].push(Entry { h, mode, interest, who: Who::Thread(Arc::clone(waiter)) });
        self.len += 1;
    }

    /// Register `waiter` under `h` as one of several registrations of the same wait
    /// (an accept on every shard's listener): unlike [`register`](Self::register) this
    /// leaves its `notified` flag alone, which the caller cleared (with
    /// [`Waiter::reset`]) before the first; a flag already set by an earlier
    /// registration's wakeup must survive the later ones.
    pub(crate) fn register_among(&mut self, h: SocketHandle, interest: Readiness, waiter: &Arc<Waiter>) {
        let idx = h.index() as usize;
        if idx >= self.by_slot.len() {
            self.by_slot.resize_with(idx + 1, Vec::new);
        }
        self.by_slot[idx].push(Entry { h, mode: WaitMode::Shared, interest, who: Who::Thread(Arc::clone(waiter)) });
        self.len += 1;
    }

    /// Register a pending task's waker under `h`. A task that polls again without
    /// having been woken does not pile up entries: a waker that would wake the same
    /// task replaces nothing and adds nothing.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn register_task(&mut self, h: SocketHandle, interest: Readiness, waker: &Waker) {
        let idx = h.index() as usize;
        if idx >= self.by_slot.len() {
            self.by_slot.resize_with(idx + 1, Vec::new);
        }
        let list = &mut self.by_slot[idx];
        match list.iter_mut().find(|e| e.h == h && matches!(&e.who, Who::Task(w) if w.will_wake(waker))) {
            Some(e) => e.interest |= interest,
            None => {
                list.push(Entry { h, mode: WaitMode::Shared, interest, who: Who::Task(waker.clone()) });
                self.len += 1;
            }
        }
    }

    /// Remove `waiter` from `h`'s list if it is still there (a wait that timed out).
    pub(crate) fn unregister(&mut self, h: SocketHandle, waiter: &Arc<Waiter>) {
        let Some(list) = self.by_slot.get_mut(h.index() as usize) else { return };
        if let Some(i) = list.iter().position(|e| matches!(&e.who, Who::Thread(w) if Arc::ptr_eq(w, waiter))) {
            list.remove(i);
            self.len -= 1;
        }
    }

    /// `h` became `ready`: take every shared waiter of `h` that waits for it and the
    /// first such exclusive one, mark them notified and add them to `out` for waking.
    /// A socket that closed wakes every waiter.
    pub(crate) fn wake(&mut self, h: SocketHandle, ready: Readiness, out: &mut Unparks) {
        let Some(list) = self.by_slot.get_mut(h.index() as usize) else { return };
        if list.is_empty() {
            return;
        }
        let mut exclusive_taken = false;
        let mut i = 0;
        while i < list.len() {
            let e = &list[i];
            // Entries of an older socket in the same slot cannot exist (a waiter leaves
            // before its handle is released), but a generation mismatch is no reason
            // to keep anybody asleep: wake them too.
            let wanted = e.h != h || ready.contains(Readiness::CLOSED) || e.interest.intersects(ready);
            let take = wanted
                && match e.mode {
                    WaitMode::Shared => true,
                    WaitMode::Exclusive => !exclusive_taken || e.h != h,
                };
            if take {
                if e.mode == WaitMode::Exclusive && e.h == h {
                    exclusive_taken = true;
                }
                let e = list.remove(i);
                self.len -= 1;
                out.push(e.who.notify());
            } else {
                i += 1;
            }
        }
    }

    /// An exclusive waiter of `h` leaves (it got its result, or gave up): the readiness
    /// it was woken for may cover more than it used (two connections in the queue), so
    /// wake the next exclusive waiter, if any. Shared waiters were woken already.
    pub(crate) fn pass_on(&mut self, h: SocketHandle, out: &mut Unparks) {
        let Some(list) = self.by_slot.get_mut(h.index() as usize) else { return };
        if let Some(i) = list.iter().position(|e| e.mode == WaitMode::Exclusive) {
            let e = list.remove(i);
            self.len -= 1;
            out.push(e.who.notify());
        }
    }

    /// Take everybody (shutdown).
    pub(crate) fn wake_all(&mut self, out: &mut Unparks) {
        if self.len == 0 {
            return;
        }
        for list in &mut self.by_slot {
            for e in list.drain(..) {
                out.push(e.who.notify());
            }
        }
        self.len = 0;
    }

    /// Registered waiters, all sockets together.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Threads to unpark and tasks to wake once the core's lock is released. The buffer
/// is reused, so collecting wakeups allocates only when more are woken at once than
/// ever before.
#[derive(Default)]
pub(crate) struct Unparks {
    waiters: Vec<Who>,
}

impl Unparks {
    fn push(&mut self, w: Who) {
        self.waiters.push(w);
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Unpark every collected thread and wake every collected task (call without the
    /// core's lock held).
    pub(crate) fn unpark_all(&mut self) {
        for w in self.waiters.drain(..) {
            match w {
                Who::Thread(w) => w.thread.unpark(),
                Who::Task(waker) => waker.wake(),
            }
        }
    }
}

thread_local! {
    /// The spare buffer of [`LocalUnparks`] on this thread.
    static SPARE: Cell<Vec<Who>> = const { Cell::new(Vec::new()) };
}

/// An [`Unparks`] for an API call on an application thread: borrows the thread's spare
/// buffer and, when dropped, unparks what it collected and gives the buffer back.
/// Declare it before the core's lock guard so that it drops after it: the threads are
/// then unparked with the lock released, on every return path.
pub(crate) struct LocalUnparks(Unparks);

impl LocalUnparks {
    pub(crate) fn new() -> LocalUnparks {
        let waiters = SPARE.try_with(Cell::take).unwrap_or_default();
        LocalUnparks(Unparks { waiters })
    }
}

impl std::ops::Deref for LocalUnparks {
    type Target = Unparks;
    fn deref(&self) -> &Unparks {
        &self.0
    }
}

impl std::ops::DerefMut for LocalUnparks {
    fn deref_mut(&mut self) -> &mut Unparks {
        &mut self.0
    }
}

impl Drop for LocalUnparks {
    fn drop(&mut self) {
        self.0.unpark_all();
        let buf = std::mem::take(&mut self.0.waiters);
        let _ = SPARE.try_with(|c| c.set(buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> Arc<Waiter> {
        Arc::new(Waiter { thread: thread::current(), notified: AtomicBool::new(false) })
    }

    fn h(idx: u32) -> SocketHandle {
        SocketHandle::from_raw(idx, 0)
    }

    #[test]
    fn wake_takes_only_the_waiters_of_that_socket() {
        let mut reg = Waiters::default();
        let (a, b, c) = (waiter(), waiter(), waiter());
        reg.register(h(1), WaitMode::Shared, Readiness::READABLE, &a);
        reg.register(h(1), WaitMode::Shared, Readiness::READABLE, &b);
        reg.register(h(7), WaitMode::Shared, Readiness::READABLE, &c);
        assert_eq!(reg.len(), 3);
        let mut out = Unparks::default();
        reg.wake(h(7), Readiness::READABLE, &mut out);
        assert_eq!(out.len(), 1);
        assert!(c.is_notified() && !a.is_notified() && !b.is_notified());
        out.unpark_all();
        reg.wake(h(3), Readiness::READABLE, &mut out);
        reg.wake(h(100), Readiness::READABLE, &mut out);
        assert!(out.is_empty());
        reg.wake(h(1), Readiness::READABLE, &mut out);
        assert_eq!(out.len(), 2);
        assert!(a.is_notified() && b.is_notified());
        assert_eq!(reg.len(), 0);
        out.unpark_all();
        // A second wake finds nobody: each registration is woken once.
        reg.wake(h(1), Readiness::READABLE, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn registering_again_clears_the_flag_and_unregister_removes() {
        let mut reg = Waiters::default();
        let a = waiter();
        let mut out = Unparks::default();
        reg.register(h(2), WaitMode::Shared, Readiness::READABLE, &a);
        reg.wake(h(2), Readiness::READABLE, &mut out);
        assert!(a.is_notified());
        reg.register(h(2), WaitMode::Shared, Readiness::READABLE, &a);
        assert!(!a.is_notified());
        reg.unregister(h(2), &a);
        assert_eq!(reg.len(), 0);
        reg.unregister(h(2), &a); // not there any more: nothing happens
        reg.unregister(h(50), &a);
        reg.wake(h(2), Readiness::READABLE, &mut out);
        assert_eq!(out.len(), 1); // only the first registration's wake
        assert!(!a.is_notified());
    }

    #[test]
    fn exclusive_waiters_are_woken_one_at_a_time_in_order() {
        let mut reg = Waiters::default();
        let (x, y, z, s) = (waiter(), waiter(), waiter(), waiter());
        reg.register(h(4), WaitMode::Exclusive, Readiness::READABLE, &x);
        reg.register(h(4), WaitMode::Exclusive, Readiness::READABLE, &y);
        reg.register(h(4), WaitMode::Shared, Readiness::READABLE, &s);
        reg.register(h(4), WaitMode::Exclusive, Readiness::READABLE, &z);
        let mut out = Unparks::default();
        reg.wake(h(4), Readiness::READABLE, &mut out);
        // The first exclusive waiter and every shared one.
        assert_eq!(out.len(), 2);
        assert!(x.is_notified() && s.is_notified());
        assert!(!y.is_notified() && !z.is_notified());
        out.unpark_all();
        reg.pass_on(h(4), &mut out);
        assert!(y.is_notified() && !z.is_notified());
        reg.wake(h(4), Readiness::READABLE, &mut out);
        assert!(z.is_notified());
        assert_eq!(reg.len(), 0);
        reg.pass_on(h(4), &mut out); // nobody left
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn wake_all_takes_everybody() {
        let mut reg = Waiters::default();
        let ws: Vec<_> = (0..5).map(|_| waiter()).collect();
        for (i, w) in ws.iter().enumerate() {
            let mode = if i % 2 == 0 { WaitMode::Exclusive } else { WaitMode::Shared };
            reg.register(h(i as u32 % 2), mode, Readiness::READABLE, w);
        }
        let mut out = Unparks::default();
        reg.wake_all(&mut out);
        assert_eq!(out.len(), 5);
        assert!(ws.iter().all(|w| w.is_notified()));
        assert_eq!(reg.len(), 0);
        out.unpark_all();
        assert!(out.is_empty());
    }

    #[test]
    fn only_the_interested_are_woken_and_closing_wakes_all() {
        let mut reg = Waiters::default();
        let (reader, writer, acceptor) = (waiter(), waiter(), waiter());
        reg.register(h(3), WaitMode::Shared, Readiness::READABLE, &reader);
        reg.register(h(3), WaitMode::Shared, Readiness::WRITABLE, &writer);
        let mut out = Unparks::default();
        reg.wake(h(3), Readiness::WRITABLE, &mut out);
        assert!(writer.is_notified() && !reader.is_notified());
        reg.wake(h(3), Readiness::ACCEPTABLE, &mut out);
        assert!(!reader.is_notified());
        reg.register(h(3), WaitMode::Exclusive, Readiness::ACCEPTABLE, &acceptor);
        reg.wake(h(3), Readiness::CLOSED, &mut out);
        assert!(reader.is_notified() && acceptor.is_notified());
        assert_eq!(reg.len(), 0);
        out.unpark_all();
    }

    /// A waker that counts its wakes.
    struct CountWake(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn tasks_are_woken_once_and_do_not_pile_up() {
        let mut reg = Waiters::default();
        let count = Arc::new(CountWake(Default::default()));
        let waker = Waker::from(Arc::clone(&count));
        // The same task polling three times registers once.
        for _ in 0..3 {
            reg.register_task(h(5), Readiness::READABLE, &waker);
        }
        let other = Arc::new(CountWake(Default::default()));
        reg.register_task(h(5), Readiness::READABLE, &Waker::from(Arc::clone(&other)));
        let thread_waiter = waiter();
        reg.register(h(5), WaitMode::Shared, Readiness::READABLE, &thread_waiter);
        assert_eq!(reg.len(), 3);
        let mut out = Unparks::default();
        reg.wake(h(5), Readiness::READABLE, &mut out);
        assert_eq!(out.len(), 3);
        assert!(thread_waiter.is_notified());
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "woken only once the lock is released");
        out.unpark_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(other.0.load(Ordering::Relaxed), 1);
        assert_eq!(reg.len(), 0);
    }

    #[test]
    fn a_parked_thread_is_woken_by_unpark_after_notification() {
        let mut reg = Waiters::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = thread::spawn(move || {
            let me = Waiter::current();
            tx.send(Arc::clone(&me)).unwrap();
            // Bounded: gives up after 10 s so a broken wake fails instead of hanging.
            let start = std::time::Instant::now();
            while !me.is_notified() && start.elapsed() < std::time::Duration::from_secs(10) {
                thread::park_timeout(std::time::Duration::from_millis(100));
            }
            me.is_notified()
        });
        let w = rx.recv().unwrap();
        reg.register(h(9), WaitMode::Shared, Readiness::READABLE, &w);
        let mut out = Unparks::default();
        reg.wake(h(9), Readiness::READABLE, &mut out);
        out.unpark_all();
        assert!(t.join().unwrap());
    }
}
