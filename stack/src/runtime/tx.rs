//! Device writes outside the core's lock.
//!
//! A write to a TUN device runs the kernel's receive path for the packet inside the
//! writing thread (for TCP: the peer's ACK processing, its next segments, waking its
//! reader), which takes several microseconds. Done under the core's lock, that time
//! blocks the runtime thread's input and every other application call. So packets
//! taken from `Stack::poll_transmit` under the core's lock are only queued there, and
//! written after the lock is released:
//!
//! ```text
//!   core lock held:   poll_transmit -> Core::out (a Batch)      \
//!                     Core::out appended to Tx::queue (tx lock)  } order of the core's lock
//!                     nobody writing? this thread becomes the writer
//!   core lock free:   writer: take Tx::queue, write every packet, again until empty
//! ```
//!
//! There is at most one writer at a time and it writes the queue in order, so packets
//! reach the device in the order the core produced them, whichever thread produced
//! them. A thread that finds a writer active leaves its packets to it and does not
//! wait. An application thread writes at most [`APP_WRITER_ROUNDS`] rounds and then
//! hands what is left to the runtime thread (through its eventfd; the next
//! [`Tx::enqueue`], even of nothing, takes the role over), so that a busy runtime
//! cannot keep an application call writing forever.
//!
//! Three batches circulate (the core's, the queue, the writer's spare); they keep their
//! storage, so the steady state allocates nothing.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::device::Device;
use crate::time::Instant;

/// Rounds (queue takes) an application thread writes before it hands the rest on.
pub(crate) const APP_WRITER_ROUNDS: usize = 4;

/// Packets a batch's length list holds before it first grows (a 2 KiB allocation).
const BATCH_LENS: usize = 256;

/// Packets stored back to back, with their lengths. Storage is kept across `clear`.
#[derive(Default)]
pub(crate) struct Batch {
    data: Vec<u8>,
    lens: Vec<usize>,
    used: usize,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Let `fill` write one packet into `room` bytes of storage; it returns the
    /// packet's length, or `None` (nothing added).
    pub(crate) fn push_with(&mut self, room: usize, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<usize> {
        let end = self.used + room;
        if self.data.len() < end {
            // Grows only past the largest burst seen so far; the length is kept, so
            // later packets reuse the storage without zeroing it again.
            self.data.resize(end, 0);
        }
        let n = fill(&mut self.data[self.used..end])?.min(room);
        self.used += n;
        if self.lens.capacity() == 0 {
            // Room for a typical burst from the start: batches are swapped and appended
            // between threads, and a small one would otherwise grow again in each.
            self.lens.reserve(BATCH_LENS);
        }
        self.lens.push(n);
        Some(n)
    }

    pub(crate) fn push(&mut self, pkt: &[u8]) {
        self.push_with(pkt.len(), |room| {
            room.copy_from_slice(pkt);
            Some(pkt.len())
        });
    }

    /// Append every packet of `other` (which is left empty).
    pub(crate) fn append(&mut self, other: &mut Batch) {
        for pkt in other.iter() {
            self.push(pkt);
        }
        other.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.lens.iter().scan(0, move |off, &n| {
            let pkt = &self.data[*off..*off + n];
            *off += n;
            Some(pkt)
        })
    }

    pub(crate) fn clear(&mut self) {
        self.lens.clear();
        self.used = 0;
    }
}

/// The write side of the device: under its own small lock, taken after the core's
/// (never the other way round).
pub(crate) struct Tx {
    state: Mutex<TxState>,
}

struct TxState {
    /// `None` once the runtime stopped: queued packets are dropped.
    dev: Option<Arc<dyn Device>>,
    /// Packets waiting for the writer, in the core's order.
    queue: Batch,
    /// Storage the writer swaps with `queue`.
    spare: Batch,
    /// A writer is active; it writes `queue` until it finds it empty.
    writing: bool,
}

/// What [`Tx::enqueue`] asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Another thread is writing and takes these packets too (or there were none).
    Done,
    /// Become the writer: call [`Tx::write_out`] once the core's lock is released.
    Write,
}

/// How a writer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The queue is empty.
    All,
    /// The round limit was reached with packets left: the caller must get them
    /// written (the runtime thread takes over).
    Left,
}

impl Tx {
    pub(crate) fn new(dev: Arc<dyn Device>) -> Tx {
        Tx {
            state: Mutex::new(TxState {
                dev: Some(dev),
                queue: Batch::default(),
                spare: Batch::default(),
                writing: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TxState> {
        // Nothing under this lock can leave the state inconsistent on a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue the packets of `out` (called with the core's lock held, which fixes their
    /// order); `out` is left empty with storage to reuse.
    pub(crate) fn enqueue(&self, out: &mut Batch) -> Role {
        let mut st = self.lock();
        if !out.is_empty() {
            if st.queue.is_empty() {
                std::mem::swap(&mut st.queue, out);
            } else {
                st.queue.append(out);
            }
        }
        if st.writing || st.queue.is_empty() {
            return Role::Done;
        }
        st.writing = true;
        Role::Write
    }

    /// As the writer (after [`Role::Write`], without the core's lock): write the queue
    /// until it is empty, or for at most `max_rounds` takes. Returns the number of
    /// packets written (or dropped after shutdown) and how it ended.
    pub(crate) fn write_out(&self, now: Instant, max_rounds: usize) -> (usize, Written) {
        // Clears `writing` on every exit, also if a write panics.
        struct Release<'a>(&'a Tx, bool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.lock().writing = false;
                }
            }
        }
        let mut release = Release(self, true);
        let mut written = 0;
        let mut mine = Batch::default();
        let mut rounds = 0;
        loop {
            let dev = {
                let mut st = self.lock();
                // Give back the storage of the round before.
                if st.spare.data.capacity() < mine.data.capacity() {
                    std::mem::swap(&mut st.spare, &mut mine);
                }
                if st.queue.is_empty() {
                    st.writing = false;
                    release.1 = false;
                    return (written, Written::All);
                }
                if rounds == max_rounds {
                    st.writing = false;
                    release.1 = false;
                    return (written, Written::Left);
                }
                let spare = std::mem::take(&mut st.spare);
                mine = std::mem::replace(&mut st.queue, spare);
                st.dev.clone()
            };
            rounds += 1;
            if let Some(dev) = &dev {
                dev.send_batch(now, &mut mine.iter());
            }
            written += mine.len();
            mine.clear();
        }
    }

    /// When the device next needs `Device::poll` (middleware holding packets back).
    pub(crate) fn device_poll_at(&self) -> Option<Instant> {
        self.lock().dev.as_ref().and_then(|d| d.poll_at())
    }

    /// Shutdown: drop the device (queued and later packets are discarded) and wait until
    /// an active writer is done with its round, so that the descriptor closes when the
    /// last other reference does.
    pub(crate) fn close(&self) {
        self.lock().dev = None;
        while self.lock().writing {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pkts: &[&[u8]]) -> Batch {
        let mut b = Batch::default();
        for p in pkts {
            b.push(p);
        }
        b
    }

    fn contents(b: &Batch) -> Vec<Vec<u8>> {
        b.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn batch_keeps_packets_in_order_and_storage_across_clear() {
        let mut b = batch(&[b"one", b"", b"three"]);
        assert_eq!(b.len(), 3);
        assert_eq!(contents(&b), [b"one".to_vec(), vec![], b"three".to_vec()]);
        let cap = b.data.capacity();
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
        b.push(b"again");
        assert_eq!(contents(&b), [b"again".to_vec()]);
        assert_eq!(b.data.capacity(), cap);
    }

    #[test]
    fn push_with_takes_what_fill_reports() {
        let mut b = Batch::default();
        assert_eq!(b.push_with(10, |_| None), None);
        assert!(b.is_empty());
        assert_eq!(
            b.push_with(10, |room| {
                room[..2].copy_from_slice(b"ab");
                Some(2)
            }),
            Some(2)
        );
        // A length past the room is clamped.
        assert_eq!(
            b.push_with(4, |room| {
                room.copy_from_slice(b"wxyz");
                Some(99)
            }),
            Some(4)
        );
        assert_eq!(contents(&b), [b"ab".to_vec(), b"wxyz".to_vec()]);
    }

    #[test]
    fn append_moves_everything() {
        let mut a = batch(&[b"1", b"22"]);
        let mut b = batch(&[b"333"]);
        a.append(&mut b);
        assert!(b.is_empty());
        assert_eq!(contents(&a), [b"1".to_vec(), b"22".to_vec(), b"333".to_vec()]);
    }

    /// The writer role without a device: only the first enqueuer writes, later ones
    /// leave their packets to it, and the round limit hands the rest on.
    #[test]
    fn one_writer_at_a_time_and_the_round_limit() {
        let tx = Tx {
            state: Mutex::new(TxState { dev: None, queue: Batch::default(), spare: Batch::default(), writing: false }),
        };
        let mut out = Batch::default();
        assert_eq!(tx.enqueue(&mut out), Role::Done, "nothing to write");
        out.push(b"a");
        assert_eq!(tx.enqueue(&mut out), Role::Write);
        assert!(out.is_empty());
        out.push(b"b");
        assert_eq!(tx.enqueue(&mut out), Role::Done, "a writer is active");
        assert_eq!(contents(&tx.lock().queue), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(tx.write_out(Instant::ZERO, 4), (2, Written::All));
        assert!(!tx.lock().writing);

        out.push(b"c");
        assert_eq!(tx.enqueue(&mut out), Role::Write);
        assert_eq!(tx.write_out(Instant::ZERO, 0), (0, Written::Left));
        // Nobody writes now: the next enqueuer (even with nothing new) takes over.
        assert_eq!(tx.enqueue(&mut out), Role::Write);
        assert_eq!(tx.enqueue(&mut out), Role::Done);
        assert_eq!(tx.write_out(Instant::ZERO, 1), (1, Written::All));
        assert_eq!(tx.enqueue(&mut out), Role::Done);
        tx.close();
    }
}
