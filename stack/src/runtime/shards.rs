//! Multi-queue runtimes: one engine (stack, driver, device queue) per queue, nothing
//! shared but the hand-off inboxes below. Which shard owns a packet is the core's rule
//! (`crate::shard`); a driver that reads a packet another shard owns stages it and, at
//! the end of its turn, appends it to the owner's inbox and kicks the owner's driver,
//! whose next turn feeds it to its stack before the packets it read itself.
//!
//! ```text
//!   queue 0 -> driver 0 -> stack 0 --Elsewhere(1)--> inbox 1 -> driver 1 -> stack 1
//!   queue 1 -> driver 1 -> stack 1 --Elsewhere(0)--> inbox 0 -> driver 0 -> stack 0
//! ```
//!
//! The kernel keeps a flow on the queue that last wrote one of its packets, and only
//! the owner writes a connection's packets, so hand-offs are the exception: the first
//! SYN of a connection when the kernel's hash disagrees with ours, a flow idle for more
//! than the kernel's 3 s, flows beyond its 4096-entry table, fragments and UDP (shard
//! 0's). Lock order: a driver holds its own core's lock while it appends to another
//! shard's inbox; inbox locks are never held while taking any other lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::engine::{Engine, Kick};
use crate::shard::Shard;

/// Most packets an inbox holds; a full inbox drops what is handed to it (counted as
/// `RuntimeCounters::handoff_drops`), like a full device queue.
pub(crate) const INBOX_PACKETS: usize = 4096;
/// Most bytes an inbox holds (reassembled datagrams can be up to 64 KiB each).
pub(crate) const INBOX_BYTES: usize = 8 << 20;

/// Packets in one flat buffer (no allocation per packet once it has grown).
#[derive(Default)]
pub(crate) struct PacketQueue {
    bytes: Vec<u8>,
    lens: Vec<u32>,
}

impl PacketQueue {
    pub(crate) fn push(&mut self, packet: &[u8]) {
        self.bytes.extend_from_slice(packet);
        self.lens.push(packet.len() as u32);
    }

    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut at = 0;
        self.lens.iter().map(move |&n| {
            let p = &self.bytes[at..at + n as usize];
            at += n as usize;
            p
        })
    }

    /// Move `from`'s packets to the end of this queue, as many as the inbox bounds
    /// allow; returns how many did not fit. `from` is left empty.
    fn append_bounded(&mut self, from: &mut PacketQueue) -> usize {
        if self.is_empty() && from.len() <= INBOX_PACKETS && from.bytes.len() <= INBOX_BYTES {
            // The common case: swap the buffers, no copy.
            std::mem::swap(self, from);
            return 0;
        }
        let mut dropped = 0;
        for p in from.iter() {
            if self.len() < INBOX_PACKETS && self.bytes.len() + p.len() <= INBOX_BYTES {
                self.bytes.extend_from_slice(p);
                self.lens.push(p.len() as u32);
            } else {
                dropped += 1;
            }
        }
        from.clear();
        dropped
    }
}

/// One shard's inbox and how to wake its driver.
struct Inbox {
    queue: Mutex<PacketQueue>,
    kick: Kick,
}

/// The inboxes of every shard of one runtime (each engine holds this and its index).
pub(crate) struct Inboxes {
    boxes: Vec<Inbox>,
}

impl Inboxes {
    /// One inbox per shard, woken through the shard driver's kick.
    pub(crate) fn new(kicks: Vec<Kick>) -> Inboxes {
        Inboxes { boxes: kicks.into_iter().map(|kick| Inbox { queue: Mutex::default(), kick }).collect() }
    }

    pub(crate) fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Hand `packets` to shard `to` and wake its driver. Returns how many were dropped
    /// for a full inbox. `packets` is left empty (with its capacity, or the inbox's old
    /// buffer).
    pub(crate) fn hand(&self, to: usize, packets: &mut PacketQueue) -> usize {
        let Some(inbox) = self.boxes.get(to) else {
            let n = packets.len();
            packets.clear();
            return n;
        };
        let dropped = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner).append_bounded(packets);
        inbox.kick.kick();
        dropped
    }

    /// Take what was handed to shard `me` into `into` (which must be empty).
    pub(crate) fn take(&self, me: usize, into: &mut PacketQueue) {
        debug_assert!(into.is_empty());
        if let Some(inbox) = self.boxes.get(me) {
            std::mem::swap(&mut *inbox.queue.lock().unwrap_or_else(PoisonError::into_inner), into);
        }
    }
}

/// Every engine of one runtime, for the handles: snapshots merge over them, listeners
/// bind in each, new connections go round robin.
pub(crate) struct ShardSet {
    pub(crate) engines: Vec<Arc<Engine>>,
    /// The ownership rule (any shard's `Shard`: the owner does not depend on the index);
    /// `None` with one shard.
    pub(crate) rule: Option<Shard>,
    next: AtomicUsize,
}

impl ShardSet {
    pub(crate) fn new(engines: Vec<Arc<Engine>>, rule: Option<Shard>) -> ShardSet {
        ShardSet { engines, rule, next: AtomicUsize::new(0) }
    }

    /// The next shard, round robin (where a connection without a chosen local port is
    /// opened).
    pub(crate) fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.engines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_keep_packets_in_order_and_bounds() {
        let mut q = PacketQueue::default();
        q.push(b"one");
        q.push(b"");
        q.push(b"three");
        assert_eq!(q.iter().collect::<Vec<_>>(), [&b"one"[..], b"", b"three"]);
        let mut inbox = PacketQueue::default();
        assert_eq!(inbox.append_bounded(&mut q), 0);
        assert!(q.is_empty());
        let mut more = PacketQueue::default();
        more.push(b"four");
        assert_eq!(inbox.append_bounded(&mut more), 0);
        assert_eq!(inbox.iter().collect::<Vec<_>>(), [&b"one"[..], b"", b"three", b"four"]);
        // Over the packet bound: the rest is dropped and counted.
        let mut flood = PacketQueue::default();
        for _ in 0..INBOX_PACKETS {
            flood.push(b"x");
        }
        assert_eq!(inbox.append_bounded(&mut flood), 4);
        assert_eq!(inbox.len(), INBOX_PACKETS);
        // Over the byte bound.
        let mut big = PacketQueue::default();
        big.push(&vec![0u8; INBOX_BYTES + 1]);
        let mut empty = PacketQueue::default();
        assert_eq!(empty.append_bounded(&mut big), 1);
        assert!(empty.is_empty());
    }
}
