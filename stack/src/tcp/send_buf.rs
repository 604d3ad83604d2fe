//! The send buffer: every byte the application wrote that the peer has not yet
//! acknowledged, sent or not (RFC 9293 3.3.1: from SND.UNA, past SND.NXT, to the end of
//! the queued data).
//!
//! Byte 0 of the buffer has the sequence number SND.UNA (ISS + 1 before the SYN is
//! acknowledged); the connection addresses the buffer by offsets from there. Output
//! copies a segment's payload out at an offset into the caller's scratch buffer (the
//! bytes stay until acknowledged: a retransmission copies them again); an acknowledgment
//! drains them from the front. The buffer is bounded by the configured size
//! (`Config::tcp_tx_buffer`); its storage grows on demand and is given back by
//! housekeeping once the buffer is empty, so an idle connection holds no send memory.

use std::collections::VecDeque;

/// Bounded FIFO of unacknowledged bytes (see the module documentation).
#[derive(Debug)]
pub(crate) struct SendBuffer {
    bytes: VecDeque<u8>,
    cap: usize,
    /// How many more bytes of storage it may allocate (the stack's remaining buffer
    /// memory budget; `usize::MAX`: no limit).
    grow_limit: usize,
    /// The storage it may have: `cap`, or less within the budget (kept up to date by
    /// `update_limit`; `free` runs for every readiness check).
    limit: usize,
}

/// Whatever the budget, a send buffer may hold this much (it may allocate it).
const MIN_ALLOC: usize = 2048;

impl SendBuffer {
    /// An empty buffer that holds at most `cap` bytes (at least one).
    pub fn new(cap: usize) -> SendBuffer {
        SendBuffer { bytes: VecDeque::new(), cap: cap.max(1), grow_limit: usize::MAX, limit: cap.max(1) }
    }

    /// The bound: the most bytes the buffer may hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Change the bound (buffer auto-tuning, `autotune.rs`); never below what is held.
    pub fn set_capacity(&mut self, cap: usize) {
        self.cap = cap.max(self.bytes.len()).max(1);
        self.update_limit();
    }

    /// Bytes held (unacknowledged, sent or not).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Room for more application data: up to the bound, within the storage it may
    /// have (what it holds plus `grow_limit`, at least `MIN_ALLOC`).
    #[inline]
    pub fn free(&self) -> usize {
        self.limit.saturating_sub(self.bytes.len())
    }

    fn update_limit(&mut self) {
        self.limit = self.cap.min(self.bytes.capacity().saturating_add(self.grow_limit).max(MIN_ALLOC));
    }

    /// At most `bytes` more storage may be allocated (the stack's memory budget).
    #[inline]
    pub fn set_growth(&mut self, bytes: usize) {
        if bytes != self.grow_limit {
            self.grow_limit = bytes;
            self.update_limit();
        }
    }

    /// Append as much of `data` as fits; returns how much did.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        let need = self.bytes.len() + n;
        if need > self.bytes.capacity() {
            // Grow by doubling, within the bound and the storage allowed, exactly (so
            // the allocation stays what the budget allows).
            let old = self.bytes.capacity();
            let target = (old * 2).clamp(need, self.limit.max(need));
            self.bytes.reserve_exact(target - self.bytes.len());
            // What it took comes off what it may still take.
            self.grow_limit = self.grow_limit.saturating_sub(self.bytes.capacity() - old);
            self.update_limit();
        }
        self.bytes.extend(&data[..n]);
        n
    }

    /// Copy `len` bytes starting `off` bytes from the front into `scratch[..len]`.
    /// The caller keeps `off + len <= self.len()` and `len <= scratch.len()`.
    pub fn copy_out(&self, off: usize, len: usize, scratch: &mut [u8]) {
        let (a, b) = self.bytes.as_slices();
        let mut done = 0;
        if off < a.len() {
            let n = len.min(a.len() - off);
            scratch[..n].copy_from_slice(&a[off..off + n]);
            done = n;
        }
        if done < len {
            let boff = off + done - a.len();
            scratch[done..len].copy_from_slice(&b[boff..boff + len - done]);
        }
    }

    /// The first `n` bytes were acknowledged: drop them (at most what is held).
    pub fn drain_acked(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        self.bytes.drain(..n);
    }

    /// Drop everything (the connection was reset or timed out).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Give the storage back if nothing is held (housekeeping of idle connections).
    pub fn release_if_empty(&mut self) {
        if self.bytes.is_empty() && self.bytes.capacity() > 0 {
            self.bytes = VecDeque::new();
            self.update_limit();
        }
    }

    /// Bytes of storage allocated.
    pub fn allocated(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounded_write_copy_and_drain() {
        let mut b = SendBuffer::new(10);
        assert_eq!((b.capacity(), b.len(), b.free()), (10, 0, 10));
        assert_eq!(b.write(b"hello"), 5);
        assert_eq!(b.write(b"world, more"), 5, "only what fits");
        assert_eq!((b.len(), b.free()), (10, 0));
        assert_eq!(b.write(b"x"), 0);
        let mut out = [0u8; 4];
        b.copy_out(3, 4, &mut out);
        assert_eq!(&out, b"lowo");
        b.drain_acked(6);
        assert_eq!(b.len(), 4);
        b.copy_out(0, 4, &mut out);
        assert_eq!(&out, b"orld");
        b.drain_acked(100);
        assert!(b.is_empty());
        assert_eq!(SendBuffer::new(0).capacity(), 1, "never a zero bound");
    }

    #[test]
    fn storage_is_released_only_when_empty() {
        let mut b = SendBuffer::new(1 << 16);
        assert_eq!(b.allocated(), 0, "nothing allocated up front");
        b.write(&[7u8; 3000]);
        assert!(b.allocated() >= 3000);
        b.release_if_empty();
        assert!(b.allocated() >= 3000, "holds data: keeps its storage");
        b.drain_acked(3000);
        b.release_if_empty();
        assert_eq!(b.allocated(), 0);
        b.write(b"ab");
        b.clear();
        assert!(b.is_empty());
    }

    proptest! {
        /// Against a plain Vec model: writes, partial drains and copies at any offset,
        /// across the ring's wrap-around.
        #[test]
        fn matches_a_vec_model(ops in proptest::collection::vec((0usize..700, 0usize..700, 0usize..700), 1..60)) {
            let mut b = SendBuffer::new(1000);
            let mut model: Vec<u8> = Vec::new();
            let mut next = 0u8;
            for (w, d, off) in ops {
                let data: Vec<u8> = (0..w).map(|_| { next = next.wrapping_add(1); next }).collect();
                let n = b.write(&data);
                prop_assert_eq!(n, w.min(1000 - model.len()));
                model.extend_from_slice(&data[..n]);
                prop_assert_eq!(b.len(), model.len());
                if !model.is_empty() {
                    let off = off % model.len();
                    let len = (model.len() - off).min(300);
                    let mut out = vec![0u8; len];
                    b.copy_out(off, len, &mut out);
                    prop_assert_eq!(&out[..], &model[off..off + len]);
                }
                b.drain_acked(d);
                model.drain(..d.min(model.len()));
                prop_assert_eq!(b.len(), model.len());
            }
        }
    }
}
