//! An in-memory link: two [`MemDevice`]s, each reading what the other writes. It lets
//! the runtime, the blocking API and the async API run in tests without root, without a
//! TUN device and without touching any network namespace: two stacks (or a stack and a
//! test that plays the peer with raw packets) talk through it.
//!
//! Each direction is a bounded FIFO of packets (tail drop, counted) with an eventfd
//! that is readable while the FIFO holds packets, so the runtime waits on it exactly as
//! on a TUN descriptor. Packet buffers are recycled, so the steady state allocates
//! nothing.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Device;
use crate::runtime::sys::EventFd;
use crate::time::Instant;

/// Packets one direction holds before it drops new ones (like a TUN device's
/// `txqueuelen` of 500).
pub const MEM_QUEUE_PACKETS: usize = 1024;

/// What one direction of a [`MemDevice`] link did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Packets written into this direction.
    pub sent: u64,
    /// Packets read out of it.
    pub received: u64,
    /// Packets dropped because the direction held [`MEM_QUEUE_PACKETS`] already.
    pub dropped: u64,
}

/// One direction of the link.
struct Pipe {
    state: Mutex<PipeState>,
    /// Readable while `state.queue` is not empty.
    ready: EventFd,
}

#[derive(Default)]
struct PipeState {
    queue: VecDeque<(Vec<u8>, usize)>,
    pool: Vec<Vec<u8>>,
    stats: MemStats,
}

impl Pipe {
    fn new() -> io::Result<Arc<Pipe>> {
        Ok(Arc::new(Pipe { state: Mutex::new(PipeState::default()), ready: EventFd::new()? }))
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, packet: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        st.stats.sent += 1;
        if st.queue.len() >= MEM_QUEUE_PACKETS {
            st.stats.dropped += 1;
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "in-memory link full: packet dropped"));
        }
        let mut buf = st.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        let was_empty = st.queue.is_empty();
        st.queue.push_back((buf, packet.len()));
        if was_empty {
            self.ready.kick();
        }
        Ok(())
    }

    fn pop(&self, out: &mut [u8]) -> io::Result<usize> {
        let mut st = self.lock();
        let Some((buf, len)) = st.queue.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if st.queue.is_empty() {
            // Under the lock: a push that follows kicks again.
            self.ready.drain();
        }
        st.stats.received += 1;
        // Like a read(2) of a datagram into a short buffer: the rest is lost.
        let n = len.min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        st.pool.push(buf);
        Ok(n)
    }
}

/// One end of an in-memory link; see the module documentation.
pub struct MemDevice {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    mtu: usize,
    name: String,
}

impl MemDevice {
    /// Two connected ends: what `a` sends, `b` receives, and the other way round.
    pub fn pair(mtu: usize) -> io::Result<(MemDevice, MemDevice)> {
        let ab = Pipe::new()?;
        let ba = Pipe::new()?;
        let a = MemDevice { rx: Arc::clone(&ba), tx: Arc::clone(&ab), mtu, name: "memory-a".into() };
        let b = MemDevice { rx: ab, tx: ba, mtu, name: "memory-b".into() };
        Ok((a, b))
    }

    /// Counters of the direction this end reads.
    pub fn rx_stats(&self) -> MemStats {
        self.rx.lock().stats
    }

    /// Counters of the direction this end writes.
    pub fn tx_stats(&self) -> MemStats {
        self.tx.lock().stats
    }
}

impl Device for MemDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn recv(&self, _now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.pop(buf)
    }

    fn send(&self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        if packet.len() > self.mtu {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "packet larger than the link MTU: dropped"));
        }
        self.tx.push(packet)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.rx.ready.as_fd()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sys;

    #[test]
    fn each_end_reads_what_the_other_writes_in_order() {
        let (a, b) = MemDevice::pair(1500).unwrap();
        let now = Instant::ZERO;
        let mut buf = [0u8; 1500];
        assert_eq!(b.recv(now, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(!sys::poll2(Some(b.fd()), None, 0).unwrap().a);
        a.send(now, b"one").unwrap();
        a.send(now, b"two").unwrap();
        assert!(sys::poll2(Some(b.fd()), None, 0).unwrap().a);
        assert!(!sys::poll2(Some(a.fd()), None, 0).unwrap().a);
        {
            let n = b.recv(now, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
        }
        assert!(sys::poll2(Some(b.fd()), None, 0).unwrap().a, "still one queued");
        {
            let n = b.recv(now, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"two");
        }
        assert!(!sys::poll2(Some(b.fd()), None, 0).unwrap().a, "drained");
        b.send(now, b"back").unwrap();
        {
            let n = a.recv(now, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"back");
        }
        assert_eq!(a.tx_stats(), MemStats { sent: 2, received: 2, dropped: 0 });
        assert_eq!(a.rx_stats(), MemStats { sent: 1, received: 1, dropped: 0 });
    }

    #[test]
    fn a_full_direction_drops_and_counts() {
        let (a, b) = MemDevice::pair(100).unwrap();
        let now = Instant::ZERO;
        for _ in 0..MEM_QUEUE_PACKETS {
            a.send(now, b"x").unwrap();
        }
        assert_eq!(a.send(now, b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(b.rx_stats().dropped, 1);
        assert_eq!(a.send(now, &[0u8; 101]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
