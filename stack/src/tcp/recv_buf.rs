//! The receive buffer: in-order bytes waiting for the application, plus out-of-order
//! segments held in place inside the window until the holes before them fill
//! (RFC 9293 3.10.7.4, "segments with higher beginning sequence numbers may be held
//! for later processing").
//!
//! One ring of storage serves both: the readable bytes start at `head`; the byte with
//! sequence number `rcv_nxt + k` lives `k` bytes after the readable ones. A list of
//! present ranges above RCV.NXT records what has arrived out of order; it is bounded by
//! the window (each range holds at least one byte), not by a fixed number of holes.
//! Storage grows on demand up to the buffer's capacity and is released by housekeeping
//! once drained (`release_if_empty`), so an idle connection holds no receive memory.

use crate::seq::SeqNum;
use crate::wire::SackBlocks;

/// Storage starts this small and doubles as needed.
const MIN_ALLOC: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: SeqNum,
    end: SeqNum,
    /// When this range last grew, for SACK block order (RFC 2018 4: the first block
    /// reports the most recently received segment).
    stamp: u64,
}

#[derive(Debug)]
pub(crate) struct RecvBuffer {
    ring: Vec<u8>,
    head: usize,
    len: usize,
    cap: usize,
    ooo: Vec<Range>,
    /// Distance from RCV.NXT to the end of the furthest out-of-order range.
    ooo_span: usize,
    clock: u64,
    /// How many more bytes of storage it may allocate (the stack's remaining buffer
    /// memory budget; `usize::MAX`: no limit).
    grow_limit: usize,
    /// The storage it may have: `cap`, or less within the budget (kept up to date by
    /// `update_limit`, so that `window`, asked several times per segment, is one
    /// subtraction).
    limit: usize,
}

impl RecvBuffer {
    pub fn new(cap: usize) -> RecvBuffer {
        RecvBuffer {
            ring: Vec::new(),
            head: 0,
            len: 0,
            cap: cap.max(1),
            ooo: Vec::new(),
            ooo_span: 0,
            clock: 0,
            grow_limit: usize::MAX,
            limit: cap.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Change the bound (buffer auto-tuning, `autotune.rs`): the caller never sets it
    /// below the readable bytes plus the out-of-order span. Storage follows on demand.
    pub fn set_capacity(&mut self, cap: usize) {
        self.cap = cap.max(self.len + self.ooo_span).max(1);
        self.update_limit();
    }

    /// Distance from RCV.NXT to the end of the furthest out-of-order byte held.
    pub fn out_of_order_span(&self) -> usize {
        self.ooo_span
    }

    /// Bytes ready for the application.
    pub fn readable(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The window: room after the readable bytes (out-of-order bytes sit inside it),
    /// within the storage it may have (what it holds plus `grow_limit`, at least
    /// `MIN_ALLOC`).
    #[inline]
    pub fn window(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    fn update_limit(&mut self) {
        self.limit = self.cap.min(self.ring.len().saturating_add(self.grow_limit).max(MIN_ALLOC));
    }

    /// At most `bytes` more storage may be allocated (the stack's memory budget).
    #[inline]
    pub fn set_growth(&mut self, bytes: usize) {
        if bytes != self.grow_limit {
            self.grow_limit = bytes;
            self.update_limit();
        }
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// The end of the furthest out-of-order range, if any is held.
    pub fn out_of_order_end(&self) -> Option<SeqNum> {
        self.ooo.last().map(|r| r.end)
    }

    /// Bytes held out of order.
    pub fn out_of_order_bytes(&self) -> usize {
        self.ooo.iter().map(|r| r.end - r.start).sum()
    }

    fn reserve(&mut self, upto: usize) {
        // `upto`: offset from `head` that must be addressable.
        if upto <= self.ring.len() {
            return;
        }
        let mut size = self.ring.len().max(MIN_ALLOC);
        while size < upto {
            size *= 2;
        }
        let size = size.min(self.limit.max(upto));
        let mut fresh = vec![0u8; size];
        let old = self.ring.len();
        // What it took comes off what it may still take.
        self.grow_limit = self.grow_limit.saturating_sub(size - old);
        if old > 0 {
            // Keep everything from head to the furthest byte held, in order.
            let used = (self.len + self.ooo_span).min(old);
            let first = used.min(old - self.head);
            fresh[..first].copy_from_slice(&self.ring[self.head..self.head + first]);
            if first < used {
                fresh[first..used].copy_from_slice(&self.ring[..used - first]);
            }
        }
        self.ring = fresh;
        self.head = 0;
        self.update_limit();
    }

    /// Store `data` with sequence number `seq`, where `rcv_nxt` is the current RCV.NXT.
    /// The caller has trimmed the segment to the window: `rcv_nxt <= seq` and
    /// `seq + data.len() <= rcv_nxt + window()`. Returns how far RCV.NXT advances
    /// (0 for a segment above a hole).
    pub fn write(&mut self, rcv_nxt: SeqNum, seq: SeqNum, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let off = seq - rcv_nxt;
        // Never beyond the buffer, whatever the caller's window arithmetic says.
        let data = &data[..data.len().min(self.window().saturating_sub(off))];
        if data.is_empty() {
            return 0;
        }
        let end_off = self.len + off + data.len();
        self.reserve(end_off);
        let n = self.ring.len();
        let start = (self.head + self.len + off) % n;
        let first = data.len().min(n - start);
        self.ring[start..start + first].copy_from_slice(&data[..first]);
        if first < data.len() {
            self.ring[..data.len() - first].copy_from_slice(&data[first..]);
        }
        self.clock += 1;
        let end = seq + data.len();
        if off > 0 {
            self.insert_range(seq, end);
            self.ooo_span = self.ooo_span.max(end - rcv_nxt);
            return 0;
        }
        // In order: advance over this segment and every range it now touches.
        let mut new_nxt = end;
        while let Some(r) = self.ooo.first() {
            if r.start > new_nxt {
                break;
            }
            new_nxt = new_nxt.max(r.end);
            self.ooo.remove(0);
        }
        let advance = new_nxt - rcv_nxt;
        self.len += advance;
        self.ooo_span = match self.ooo.last() {
            Some(r) => r.end - new_nxt,
            None => 0,
        };
        advance
    }

    fn insert_range(&mut self, start: SeqNum, end: SeqNum) {
        let stamp = self.clock;
        // Find the first range that ends at or after `start` (could merge).
        let mut i = 0;
        while i < self.ooo.len() && self.ooo[i].end < start {
            i += 1;
        }
        let mut new = Range { start, end, stamp };
        while i < self.ooo.len() && self.ooo[i].start <= new.end {
            let r = self.ooo.remove(i);
            new.start = new.start.min(r.start);
            new.end = new.end.max(r.end);
        }
        self.ooo.insert(i, new);
    }

    /// Copy readable bytes out.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        if n == 0 {
            return 0;
        }
        let size = self.ring.len();
        let first = n.min(size - self.head);
        out[..first].copy_from_slice(&self.ring[self.head..self.head + first]);
        if first < n {
            out[first..n].copy_from_slice(&self.ring[..n - first]);
        }
        self.head = (self.head + n) % size;
        self.len -= n;
        if self.len == 0 && self.ooo.is_empty() {
            self.head = 0;
        }
        n
    }

    /// Give the storage back if nothing is held. Called from housekeeping rather than
    /// on every drain, so a busy connection does not free and reallocate per packet.
    pub fn release_if_empty(&mut self) {
        if self.len == 0 && self.ooo.is_empty() && !self.ring.is_empty() {
            self.ring = Vec::new();
            self.head = 0;
            self.update_limit();
        }
    }

    /// Bytes of storage held.
    pub fn allocated(&self) -> usize {
        self.ring.capacity()
    }

    /// Discard everything (shutdown(Read), reset).
    pub fn clear(&mut self) {
        self.len = 0;
        self.head = 0;
        self.ooo.clear();
        self.ooo_span = 0;
    }

    /// SACK blocks for the out-of-order ranges, most recent first (RFC 2018 4).
    pub fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut blocks = SackBlocks::default();
        let mut below = u64::MAX;
        for _ in 0..max.min(4) {
            match self.ooo.iter().filter(|r| r.stamp < below).max_by_key(|r| r.stamp) {
                Some(r) => {
                    blocks.push(r.start, r.end);
                    below = r.stamp;
                }
                None => break,
            }
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0u8; b.readable()];
        let n = b.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn in_order_and_holes() {
        let mut b = RecvBuffer::new(100);
        let mut nxt = SeqNum(u32::MAX - 5);
        assert_eq!(b.write(nxt, nxt + 10, b"KLMNO"), 0);
        assert_eq!(b.write(nxt, nxt + 20, b"UV"), 0);
        assert_eq!(b.sack_blocks(4).as_slice(), &[(nxt + 20, nxt + 22), (nxt + 10, nxt + 15)]);
        let adv = b.write(nxt, nxt, b"ABCDEFGHIJ");
        assert_eq!(adv, 15);
        nxt += adv;
        assert_eq!(b.sack_blocks(4).as_slice(), &[(nxt + 5, nxt + 7)]);
        assert_eq!(drain(&mut b), b"ABCDEFGHIJKLMNO");
        assert_eq!(b.write(nxt, nxt, b"PQRST"), 7);
        assert_eq!(drain(&mut b), b"PQRSTUV");
        assert!(!b.has_out_of_order());
    }

    proptest! {
        /// Chunks of a stream written in any order, with overlaps and duplicates, come
        /// out in order and intact; the window is never exceeded.
        #[test]
        fn reassembles_any_order(
            len in 1usize..3000,
            cap in 64usize..4096,
            start: u32,
            cuts in proptest::collection::vec((0usize..3000, 1usize..400), 1..60),
            seed: u64,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut b = RecvBuffer::new(cap);
            let mut nxt = SeqNum(start);
            let base = SeqNum(start);
            let mut out = Vec::new();
            let mut chunks: Vec<(usize, usize)> = cuts.iter().map(|&(o, l)| (o % len, l)).collect();
            // Always also offer full coverage so the stream can complete.
            let mut o = 0;
            while o < len { chunks.push((o, 97)); o += 97; }
            let mut rng = crate::rand::Rng::new(seed);
            for _round in 0..50 {
                // shuffle
                for i in (1..chunks.len()).rev() {
                    let j = rng.below(i as u32 + 1) as usize;
                    chunks.swap(i, j);
                }
                for &(off, l) in &chunks {
                    let end = (off + l).min(len);
                    // Trim to [nxt, nxt + window) like the connection does.
                    let done = nxt - base;
                    let lo = off.max(done);
                    let hi = end.min(done + b.window());
                    if lo >= hi { continue; }
                    let adv = b.write(nxt, base + lo, &data[lo..hi]);
                    nxt += adv;
                    prop_assert!(b.readable() <= cap);
                }
                out.extend(drain(&mut b));
                if out.len() == len { break; }
            }
            prop_assert_eq!(out.len(), len);
            prop_assert!(out == data);
        }
    }
}
