//! A capture middleware: [`Pcap`] wraps a device and writes every packet it reads or
//! writes to a classic pcap file (the libpcap format that tcpdump, tshark and Wireshark
//! read), link type LINKTYPE_RAW (101: each record is a bare IPv4 or IPv6 packet, as
//! on a TUN device). Timestamps are the wall clock, in microseconds.
//!
//! The file is written through a buffer that is flushed at least once a second while
//! packets flow and when the device is dropped.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Device;
use crate::time::Instant;

/// LINKTYPE_RAW from the tcpdump.org link-type registry: raw IPv4/IPv6, no link header.
pub const LINKTYPE_RAW: u32 = 101;

/// The classic pcap magic number (microsecond timestamps), written in our byte order.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;

/// How long captured packets may wait in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Writes pcap records to any `Write` (a file for [`Pcap`], a `Vec` in tests).
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    last_flush: SystemTime,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header (version 2.4, LINKTYPE_RAW, `snaplen` bytes per record at most).
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&PCAP_MAGIC.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen, last_flush: SystemTime::now(), records: 0 })
    }

    /// Append one packet captured at `at`.
    pub fn record(&mut self, at: SystemTime, packet: &[u8]) -> io::Result<()> {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let caplen = packet.len().min(self.snaplen as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_ne_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(packet.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&packet[..caplen])?;
        self.records += 1;
        if at.duration_since(self.last_flush).unwrap_or_default() >= FLUSH_INTERVAL {
            self.last_flush = at;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A device whose traffic, both ways, is also written to a pcap file.
pub struct Pcap<D> {
    inner: D,
    writer: Mutex<PcapWriter<BufWriter<File>>>,
    path: String,
}

impl<D: Device> Pcap<D> {
    /// Capture `inner`'s packets to a new file at `path` (truncated if it exists).
    pub fn create(inner: D, path: impl AsRef<Path>) -> io::Result<Pcap<D>> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let snaplen = inner.mtu().clamp(1, u32::MAX as usize) as u32;
        let writer = PcapWriter::new(BufWriter::with_capacity(256 * 1024, file), snaplen.max(65535))?;
        Ok(Pcap { inner, writer: Mutex::new(writer), path: path.display().to_string() })
    }

    fn capture(&self, packet: &[u8]) {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = w.record(SystemTime::now(), packet) {
            tracing::warn!(path = %self.path, error = %e, "pcap write failed");
        }
    }

    /// Packets captured so far.
    pub fn records(&self) -> u64 {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner).records()
    }
}

impl<D: Device> Device for Pcap<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn recv(&self, now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.recv(now, buf)?;
        self.capture(&buf[..n]);
        Ok(n)
    }

    fn send(&self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.capture(packet);
        self.inner.send(now, packet)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn poll(&self, now: Instant) {
        self.inner.poll(now)
    }

    fn describe(&self) -> String {
        format!("{} (capture to {})", self.inner.describe(), self.path)
    }
}

impl<D> Drop for Pcap<D> {
    fn drop(&mut self) {
        let w = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = w.flush() {
            tracing::warn!(path = %self.path, error = %e, "pcap flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_follow_the_pcap_format() {
        let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        w.record(t, &[0x45, 0, 0, 20]).unwrap();
        w.record(t, &[0x60; 70000]).unwrap();
        assert_eq!(w.records(), 2);
        let b = w.into_inner();
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(u32_at(0), PCAP_MAGIC);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 2);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 4);
        assert_eq!(u32_at(16), 65535);
        assert_eq!(u32_at(20), LINKTYPE_RAW);
        // First record: seconds, microseconds, caplen, len, data.
        assert_eq!((u32_at(24), u32_at(28), u32_at(32), u32_at(36)), (1_700_000_000, 123_456, 4, 4));
        assert_eq!(&b[40..44], &[0x45, 0, 0, 20]);
        // Second: truncated to the snap length, original length kept.
        assert_eq!((u32_at(52), u32_at(56)), (65535, 70000));
        assert_eq!(b.len(), 24 + 16 + 4 + 16 + 65535);
    }
}
