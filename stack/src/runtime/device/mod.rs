//! The device layer: anything that reads and writes IP packets.
//!
//! The runtime drives a [`Device`]: the TUN device ([`TunDevice`]; or
//! [`TunOffloadDevice`], with the virtio-net header and TCP segmentation offload, whose
//! super-segments are cut and coalesced at this edge, see [`offload`]), one end of an
//! in-memory link ([`MemDevice::pair`], so the runtime and every API run in tests
//! without root), or a middleware that wraps another device and is a device itself:
//!
//! ```text
//!   Pcap<Impaired<TunDevice>>      capture what the stack saw, behind an impaired link
//!   Impaired<MemDevice>            a lossy in-memory link between two stacks
//! ```
//!
//! - [`Impaired`] applies the link model of [`crate::link`] (loss,
//!   reordering, duplication, corruption, delay, rate) to each direction;
//! - [`Pcap`] writes every packet to a capture file (LINKTYPE_RAW) that tshark and
//!   Wireshark read.
//!
//! A device is shared by the runtime's driver (which reads) and whichever thread or
//! task writes the core's output (one at a time, in the core's order), so its methods
//! take `&self`. Reads are non-blocking: the driver waits on [`Device::fd`] (poll(2) or
//! tokio's reactor) and on [`Device::poll_at`], the time at which a middleware that
//! holds packets back needs [`Device::poll`].

mod impair;
mod mem;
pub mod offload;
mod pcap;
mod tun;
mod tun_offload;

use std::io;
use std::os::fd::BorrowedFd;

use crate::time::Instant;

pub use self::impair::{ImpairHandle, Impaired, ImpairmentStats};
pub use self::mem::{MemDevice, MemStats, MEM_QUEUE_PACKETS};
pub use self::pcap::{Pcap, PcapWriter, LINKTYPE_RAW};
#[cfg(test)]
pub(crate) use self::tun::open_error;
pub use self::tun::TunDevice;
pub use self::tun_offload::{OffloadCounters, OffloadStats, TunOffloadDevice};

/// One end of an IP packet link. See the module documentation.
pub trait Device: Send + Sync + 'static {
    /// The largest packet this device carries (its MTU); the runtime reads into buffers
    /// of this size and the stack sends nothing larger.
    fn mtu(&self) -> usize;

    /// Read one packet into `buf` (at least [`Device::mtu`] bytes) and return its
    /// length; `WouldBlock` when none is ready. `now` is the runtime's clock, for
    /// middleware that times packets.
    fn recv(&self, now: Instant, buf: &mut [u8]) -> io::Result<usize>;

    /// [`recv`](Device::recv), also saying whether the device vouches for the packet's
    /// TCP or UDP checksum, which the stack then does not verify again (the offload
    /// device, for the kernel's own segments; see [`crate::RxChecksum`]). The default
    /// is `recv` and `Unverified`, which middleware that changes packets (impairment's
    /// corruption) must keep.
    fn recv_checked(&self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, crate::RxChecksum)> {
        self.recv(now, buf).map(|n| (n, crate::RxChecksum::Unverified))
    }

    /// Write one packet. A device that cannot take it now drops it (a link is lossy;
    /// TCP recovers) and may say so with an error, which the runtime counts and logs.
    fn send(&self, now: Instant, packet: &[u8]) -> io::Result<()>;

    /// Write packets the core emitted together, in order. The default writes them one
    /// by one with [`Device::send`] (logging errors); a device that can coalesce them
    /// ([`TunOffloadDevice`]: TCP segmentation offload) overrides it.
    fn send_batch(&self, now: Instant, packets: &mut dyn Iterator<Item = &[u8]>) {
        for pkt in packets {
            if let Err(e) = self.send(now, pkt) {
                log_send_error(pkt.len(), &e);
            }
        }
    }

    /// A descriptor that is readable whenever `recv` may have a packet.
    fn fd(&self) -> BorrowedFd<'_>;

    /// When the device next needs [`Device::poll`] (a packet held back by middleware
    /// falls due); `None` when it holds nothing.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// Let held packets whose time has come move on: those towards the stack become
    /// readable by `recv`, those from the stack are written to the device below.
    fn poll(&self, _now: Instant) {}

    /// A short description for logs (`tun0`, `memory`, `impaired(loss 5%) tun0`...).
    fn describe(&self) -> String;
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn recv(&self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(now, buf)
    }
    fn recv_checked(&self, now: Instant, buf: &mut [u8]) -> io::Result<(usize, crate::RxChecksum)> {
        (**self).recv_checked(now, buf)
    }
    fn send(&self, now: Instant, packet: &[u8]) -> io::Result<()> {
        (**self).send(now, packet)
    }
    fn send_batch(&self, now: Instant, packets: &mut dyn Iterator<Item = &[u8]>) {
        (**self).send_batch(now, packets)
    }
    fn fd(&self) -> BorrowedFd<'_> {
        (**self).fd()
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
    fn poll(&self, now: Instant) {
        (**self).poll(now)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A failed device write: a device is a lossy link like any other, the peer's
/// retransmission logic (or ours) recovers. On TUN, EIO means someone set the link
/// down.
pub(crate) fn log_send_error(len: usize, e: &io::Error) {
    tracing::debug!(len, error = %e, "device write failed, packet dropped");
}
