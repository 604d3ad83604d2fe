//! The TUN device with the virtio-net header and TCP segmentation offload
//! (`IFF_VNET_HDR` + `TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`).
//!
//! The kernel then hands the device TCP super-segments of up to 64 KiB (one read
//! instead of some forty) and packets whose checksum it left to the device, and takes
//! super-segments that it cuts itself (one write instead of some forty). Both are
//! converted at this edge (see [`super::offload`]): what is read is cut into the
//! segments the core expects and checksums are completed, so the core's sequence
//! space, ACK counting, SACK and congestion control see ordinary segments; what the
//! core emits in one batch is coalesced per flow ([`Device::send_batch`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::offload::{complete_checksum, ingest, Coalescer, RxError, VnetHdr, MAX_SUPER_PACKET, VNET_HDR_LEN};
use super::Device;
use crate::runtime::ifconfig::validate_ifname;
use crate::runtime::sys::tunq;
use crate::time::Instant;
use crate::RxChecksum;

/// What the offload device did, since it was created. Every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Super-segments read from the kernel and cut.
    pub rx_super_segments: u64,
    /// Segments those were cut into.
    pub rx_split_segments: u64,
    /// Packets whose partial checksum was completed.
    pub rx_csum_completed: u64,
    /// Packets read that were dropped: malformed virtio-net header, checksum offsets
    /// outside the packet, unsupported GSO type, malformed super-segment.
    pub rx_dropped: u64,
    /// Super-segments written (each several of the core's segments).
    pub tx_super_segments: u64,
    /// The core's segments inside them.
    pub tx_merged_segments: u64,
    /// Packets written as they were.
    pub tx_plain: u64,
    /// Writes the kernel refused (each a super-segment or a plain packet, dropped).
    pub tx_errors: u64,
}

impl std::fmt::Display for OffloadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx: {} super-segments cut into {} segments, {} checksums completed, {} dropped; \
             tx: {} super-segments of {} segments, {} plain, {} write errors",
            self.rx_super_segments,
            self.rx_split_segments,
            self.rx_csum_completed,
            self.rx_dropped,
            self.tx_super_segments,
            self.tx_merged_segments,
            self.tx_plain,
            self.tx_errors
        )
    }
}

/// The live counters behind [`OffloadStats`], shared with the runtime's handle.
#[derive(Debug, Default)]
pub struct OffloadCounters {
    rx_super_segments: AtomicU64,
    rx_split_segments: AtomicU64,
    rx_csum_completed: AtomicU64,
    rx_dropped: AtomicU64,
    tx_super_segments: AtomicU64,
    tx_merged_segments: AtomicU64,
    tx_plain: AtomicU64,
    tx_errors: AtomicU64,
}

impl OffloadCounters {
    pub fn snapshot(&self) -> OffloadStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OffloadStats {
            rx_super_segments: l(&self.rx_super_segments),
            rx_split_segments: l(&self.rx_split_segments),
            rx_csum_completed: l(&self.rx_csum_completed),
            rx_dropped: l(&self.rx_dropped),
            tx_super_segments: l(&self.tx_super_segments),
            tx_merged_segments: l(&self.tx_merged_segments),
            tx_plain: l(&self.tx_plain),
            tx_errors: l(&self.tx_errors),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Segments cut from the last super-segment, waiting to be read one by one.
#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    /// (offset, length) of each segment in `data`.
    segs: Vec<(usize, usize)>,
    next: usize,
    /// What `ingest` said about them: vouched for by the kernel, and where their
    /// partial checksums are (completed on the way out for `recv`, left for
    /// `recv_checked`, whose caller does not verify them).
    verified: bool,
    partial: Option<(usize, usize)>,
}

impl Pending {
    fn clear(&mut self) {
        self.data.clear();
        self.segs.clear();
        self.next = 0;
        self.verified = false;
        self.partial = None;
    }

    fn push(&mut self, seg: &[u8]) {
        self.segs.push((self.data.len(), seg.len()));
        self.data.extend_from_slice(seg);
    }

    fn is_empty(&self) -> bool {
        self.next >= self.segs.len()
    }
}

struct Rx {
    /// One read: virtio-net header and packet.
    buf: Vec<u8>,
    scratch: Vec<u8>,
    pending: Pending,
}

/// Packets `recv` drops in a row before it returns (an empty packet).
const RX_DROPS_PER_CALL: usize = 64;

/// A layer-3 TUN device with the virtio-net header and TSO, non-blocking.
pub struct TunOffloadDevice {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    rx: Mutex<Rx>,
    tx: Mutex<Coalescer>,
    counters: Arc<OffloadCounters>,
    /// The kernel took UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`).
    uso: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TunOffloadDevice {
    /// Create TUN interface `name` with the virtio-net header and negotiate checksum
    /// and TCP segmentation offload (IPv4 and IPv6). An error when the kernel refuses
    /// any of it; the interface is removed again then (the descriptor is closed).
    pub fn create(name: &str, mtu: usize) -> io::Result<TunOffloadDevice> {
        validate_ifname(name)?;
        let (fd, name) = tunq::open(name, true, false).map_err(|e| super::tun::open_error(name, e))?;
        TunOffloadDevice::negotiate(fd, name, mtu, Arc::default())
    }

    /// Create TUN interface `name` with `queues` queues (`IFF_MULTI_QUEUE`), each
    /// with the offloads of [`create`](Self::create); the queues share one set of
    /// counters.
    pub fn create_queues(name: &str, mtu: usize, queues: usize) -> io::Result<Vec<TunOffloadDevice>> {
        validate_ifname(name)?;
        let counters = Arc::<OffloadCounters>::default();
        let fds = tunq::open_queues(name, true, queues).map_err(|e| super::tun::open_error(name, e))?;
        fds.into_iter().map(|(fd, name)| TunOffloadDevice::negotiate(fd, name, mtu, Arc::clone(&counters))).collect()
    }

    fn negotiate(
        fd: OwnedFd,
        name: String,
        mtu: usize,
        counters: Arc<OffloadCounters>,
    ) -> io::Result<TunOffloadDevice> {
        let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // UDP segmentation offload where the kernel has it (6.2+): it may then hand us
        // UDP super-datagrams too, which the device cuts (`offload::ingest`).
        let uso = match tunq::set_offload(&fd, tcp | libc::TUN_F_USO4 | libc::TUN_F_USO6) {
            Ok(()) => true,
            Err(_) => {
                tunq::set_offload(&fd, tcp).map_err(|e| {
                    io::Error::new(e.kind(), format!("TUNSETOFFLOAD (checksum, TSO4, TSO6) on {name}: {e}"))
                })?;
                false
            }
        };
        Ok(TunOffloadDevice {
            fd,
            name,
            mtu,
            uso,
            rx: Mutex::new(Rx {
                buf: vec![0; VNET_HDR_LEN + MAX_SUPER_PACKET],
                scratch: Vec::new(),
                pending: Pending::default(),
            }),
            tx: Mutex::new(if uso { Coalescer::with_udp() } else { Coalescer::new() }),
            counters,
        })
    }

    /// The interface's name (the kernel's choice for a `%d` template).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's counters (also after it is moved into a runtime).
    pub fn counters(&self) -> Arc<OffloadCounters> {
        Arc::clone(&self.counters)
    }

    /// Write one buffer (virtio-net header and packet).
    fn write(&self, buf: &[u8]) -> io::Result<()> {
        rustix::io::write(&self.fd, buf)?;
        Ok(())
    }
}

impl Device for TunOffloadDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn recv(&self, _now: Instant, out: &mut [u8]) -> io::Result<usize> {
        self.read_packet(out, true).map(|(n, _)| n)
    }

    fn recv_checked(&self, _now: Instant, out: &mut [u8]) -> io::Result<(usize, RxChecksum)> {
        self.read_packet(out, false)
    }

    fn send(&self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.send_one(packet)
    }

    fn send_batch(&self, _now: Instant, packets: &mut dyn Iterator<Item = &[u8]>) {
        self.send_many(packets)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Segments cut from a super-segment wait here even when the descriptor is no
    /// longer readable: ask the driver to read again at once.
    fn poll_at(&self) -> Option<Instant> {
        self.pending_at()
    }

    fn describe(&self) -> String {
        self.description()
    }
}

impl TunOffloadDevice {
    /// The next packet: a pending segment, or what the next read brings. With
    /// `complete`, a packet whose checksum the kernel left partial gets it completed;
    /// without, it goes up as is, marked `Verified` (the kernel's own segments).
    fn read_packet(&self, out: &mut [u8], complete: bool) -> io::Result<(usize, RxChecksum)> {
        let mut guard = lock(&self.rx);
        let rx = &mut *guard;
        let max_len = out.len().min(self.mtu);
        // Dropped packets are skipped, but not forever: after this many in a row (or an
        // empty read) an empty packet goes up (the core counts it as truncated), so that
        // the driver's turn, with its timers, comes round.
        let mut dropped_in_a_row = 0;
        loop {
            let p = &mut rx.pending;
            if !p.is_empty() {
                let (off, len) = p.segs[p.next];
                p.next += 1;
                out[..len].copy_from_slice(&p.data[off..off + len]);
                if let (true, Some((start, offset))) = (complete, p.partial) {
                    // The offsets were checked when the packet was read.
                    let _ = complete_checksum(&mut out[..len], start, offset);
                }
                let check = if p.verified { RxChecksum::Verified } else { RxChecksum::Unverified };
                return Ok((len, check));
            }
            p.clear();
            if dropped_in_a_row == RX_DROPS_PER_CALL {
                return Ok((0, RxChecksum::Unverified));
            }
            let n = rustix::io::read(&self.fd, &mut rx.buf[..])?;
            if n == 0 {
                return Ok((0, RxChecksum::Unverified));
            }
            let c = &self.counters;
            let Some(hdr) = VnetHdr::parse(&rx.buf[..n]) else {
                add(&c.rx_dropped, 1);
                dropped_in_a_row += 1;
                continue;
            };
            match ingest(&hdr, &mut rx.buf[VNET_HDR_LEN..n], max_len, &mut rx.scratch, false, |s| p.push(s)) {
                Ok(done) => {
                    p.verified = done.verified;
                    p.partial = done.partial;
                    if done.split {
                        add(&c.rx_super_segments, 1);
                        add(&c.rx_split_segments, done.segments as u64);
                    }
                    if done.csum_completed {
                        add(&c.rx_csum_completed, 1);
                    }
                }
                Err(e) => {
                    add(&c.rx_dropped, 1);
                    dropped_in_a_row += 1;
                    log_rx_drop(&hdr, n - VNET_HDR_LEN, e);
                }
            }
        }
    }

    fn send_one(&self, packet: &[u8]) -> io::Result<()> {
        let hdr = [0u8; VNET_HDR_LEN];
        if let Err(e) = rustix::io::writev(&self.fd, &[io::IoSlice::new(&hdr), io::IoSlice::new(packet)]) {
            add(&self.counters.tx_errors, 1);
            return Err(e.into());
        }
        add(&self.counters.tx_plain, 1);
        Ok(())
    }

    fn send_many(&self, packets: &mut dyn Iterator<Item = &[u8]>) {
        let mut co = lock(&self.tx);
        let c = &self.counters;
        let mut emit = |b: &[u8]| {
            let merged = VnetHdr::parse(b).is_some_and(|h| h.gso_type != 0);
            if !merged {
                add(&c.tx_plain, 1);
            }
            if let Err(e) = self.write(b) {
                add(&c.tx_errors, 1);
                super::log_send_error(b.len() - VNET_HDR_LEN, &e);
            }
        };
        let before = (co.merged_packets, co.merged_segments);
        for pkt in packets {
            co.push(pkt, &mut emit);
        }
        co.flush(&mut emit);
        add(&c.tx_super_segments, co.merged_packets - before.0);
        add(&c.tx_merged_segments, co.merged_segments - before.1);
    }

    fn pending_at(&self) -> Option<Instant> {
        if lock(&self.rx).pending.is_empty() {
            None
        } else {
            Some(Instant::ZERO)
        }
    }

    fn description(&self) -> String {
        if self.uso {
            format!("{} (TSO/USO/checksum offload)", self.name)
        } else {
            format!("{} (TSO/checksum offload)", self.name)
        }
    }
}

fn log_rx_drop(hdr: &VnetHdr, len: usize, e: RxError) {
    tracing::debug!(len, ?hdr, error = %e, "offload device: packet dropped");
}
