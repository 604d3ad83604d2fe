//! An impairment middleware: [`Impaired`] puts the link model of [`crate::link`]
//! (rate with a bounded queue, loss, delay, reordering, duplication, corruption)
//! between a device and the stack, one [`Impairer`] per direction, each with its own
//! random sequence from the one seed:
//!
//! ```text
//!   inner.recv ──> Impairer (rx) ──> recv (to the stack)
//!   send (from the stack) ──> Impairer (tx) ──> inner.send
//! ```
//!
//! Held packets come out when their time has come: towards the stack through `recv`
//! (the runtime wakes up at [`Device::poll_at`] and reads), towards the device below
//! through `send` and [`Device::poll`].

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Device;
use crate::link::{ImpairCounters, Impairer, Impairment};
use crate::time::Instant;

/// Both directions' counters ([`crate::runtime::RuntimeHandle::impairment_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImpairmentStats {
    /// Packets read from the device, on their way to the core.
    pub rx: ImpairCounters,
    /// Packets from the core, on their way to the device.
    pub tx: ImpairCounters,
}

impl fmt::Display for ImpairmentStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device->stack: {}; stack->device: {}", self.rx, self.tx)
    }
}

/// A device behind an impaired link; see the module documentation.
pub struct Impaired<D> {
    inner: D,
    dirs: Arc<Dirs>,
}

/// Both directions, shared with [`ImpairHandle`]s for their counters.
struct Dirs {
    /// Device -> stack.
    rx: Mutex<Impairer>,
    /// Stack -> device.
    tx: Mutex<Impairer>,
    cfg: Impairment,
}

fn lock(m: &Mutex<Impairer>) -> MutexGuard<'_, Impairer> {
    // An impairer is consistent between calls; a panic elsewhere does not break it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads an [`Impaired`] device's counters from anywhere (the device itself usually
/// lives inside the runtime).
#[derive(Clone)]
pub struct ImpairHandle {
    dirs: Arc<Dirs>,
}

impl ImpairHandle {
    /// What each direction did so far.
    pub fn stats(&self) -> ImpairmentStats {
        ImpairmentStats { rx: lock(&self.dirs.rx).counters(), tx: lock(&self.dirs.tx).counters() }
    }

    /// The configuration (with its seed).
    pub fn config(&self) -> &Impairment {
        &self.dirs.cfg
    }
}

impl<D: Device> Impaired<D> {
    /// Impair `inner`'s link in both directions as `cfg` says (validated first: an
    /// invalid configuration is `InvalidInput`).
    pub fn new(inner: D, cfg: Impairment) -> io::Result<Impaired<D>> {
        cfg.validate()?;
        let mtu = inner.mtu();
        let dirs = Dirs { rx: Mutex::new(cfg.rx(mtu)), tx: Mutex::new(cfg.tx(mtu)), cfg };
        Ok(Impaired { inner, dirs: Arc::new(dirs) })
    }

    /// A handle to the counters.
    pub fn handle(&self) -> ImpairHandle {
        ImpairHandle { dirs: Arc::clone(&self.dirs) }
    }

    /// Write the tx packets due at `now` to the device below.
    fn release_tx(&self, now: Instant) {
        let mut tx = lock(&self.dirs.tx);
        tx.release(now, |pkt, _| {
            if let Err(e) = self.inner.send(now, pkt) {
                tracing::debug!(len = pkt.len(), error = %e, "device write failed, packet dropped");
            }
        });
    }
}

impl<D: Device> Device for Impaired<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn recv(&self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        let mut rx = lock(&self.dirs.rx);
        loop {
            if let Some(n) = rx.pop_due(now, buf) {
                return Ok(n);
            }
            // Nothing due: take the next packet from below into the link model (it may
            // be due at once, or later, or never).
            let n = self.inner.recv(now, buf)?;
            rx.push(now, &buf[..n]);
        }
    }

    fn send(&self, now: Instant, packet: &[u8]) -> io::Result<()> {
        lock(&self.dirs.tx).push(now, packet);
        self.release_tx(now);
        Ok(())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn poll_at(&self) -> Option<Instant> {
        let mine = [lock(&self.dirs.rx).next_release(), lock(&self.dirs.tx).next_release()];
        mine.into_iter().chain([self.inner.poll_at()]).flatten().min()
    }

    fn poll(&self, now: Instant) {
        self.release_tx(now);
        self.inner.poll(now);
    }

    fn describe(&self) -> String {
        format!("{} behind an impaired link ({})", self.inner.describe(), self.dirs.cfg)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::device::MemDevice;

    #[test]
    fn delay_holds_packets_both_ways_until_their_time() {
        let (a, b) = MemDevice::pair(1500).unwrap();
        let cfg = Impairment { delay: Duration::from_millis(10), seed: 1, ..Impairment::default() };
        let a = Impaired::new(a, cfg).unwrap();
        let t0 = Instant::from_secs(1);
        let mut buf = [0u8; 1500];
        // Stack -> device: held 10 ms.
        a.send(t0, b"out").unwrap();
        assert_eq!(b.recv(t0, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(a.poll_at(), Some(t0 + Duration::from_millis(10)));
        a.poll(t0 + Duration::from_millis(10));
        {
            let n = b.recv(t0, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"out");
        }
        // Device -> stack: read from below at once, handed up 10 ms later.
        b.send(t0, b"in").unwrap();
        assert_eq!(a.recv(t0, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let due = a.poll_at().unwrap();
        assert_eq!(due, t0 + Duration::from_millis(10));
        {
            let n = a.recv(due, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"in");
        }
        let stats = a.handle().stats();
        assert_eq!((stats.rx.delivered, stats.tx.delivered), (1, 1));
    }

    #[test]
    fn total_loss_passes_nothing_and_counts_it() {
        let (a, b) = MemDevice::pair(1500).unwrap();
        let a = Impaired::new(a, Impairment { loss: 1.0, seed: 7, ..Impairment::default() }).unwrap();
        let now = Instant::ZERO;
        let mut buf = [0u8; 1500];
        for _ in 0..10 {
            a.send(now, b"x").unwrap();
            b.send(now, b"y").unwrap();
        }
        assert_eq!(b.recv(now, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(a.recv(now, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let stats = a.handle().stats();
        assert_eq!((stats.rx.lost, stats.tx.lost), (10, 10));
        assert!(Impaired::new(b, Impairment { loss: 2.0, ..Impairment::default() }).is_err());
    }
}
