//! The raw TUN ceiling: no stack at all. The reflector reads every packet the kernel
//! routes into the TUN device and writes it straight back with the IPv4 source and
//! destination addresses swapped.
//!
//! How the kernel ends up talking to itself: the client connects from 10.0.0.1 (the
//! kernel's side of the device) to 10.0.0.2:P, which is routed into the device. The
//! reflected SYN arrives from "10.0.0.2" for 10.0.0.1:P, where a Linux listener in the
//! same namespace (bound to 0.0.0.0:P) accepts it; its SYN-ACK goes from 10.0.0.1:P to
//! 10.0.0.2, into the device, and comes back as 10.0.0.2:P -> 10.0.0.1, which is what
//! the client's socket expects. Ports are left alone.
//!
//! No checksum changes: swapping the two 32-bit address fields leaves the one's
//! complement sums unchanged (RFC 1071: the sum is commutative), both the IPv4 header
//! checksum and the TCP pseudo-header checksum.
//!
//! So it measures: the kernel's TCP sending and receiving on both ends, plus every
//! packet crossing the TUN device twice (one read, one write: the same device work a
//! user-space stack has per packet), with zero protocol work in user space. A
//! user-space stack's throughput over TUN cannot exceed it by much (it only saves the
//! kernel-side receive/send of the other end, and pays for its own TCP instead).

use std::io;

use super::{control_loop, Control, ServeArgs};

/// Swap source and destination of an IPv4 packet from `from` to `to`; returns false
/// (leave it) for anything else: IPv6, other addresses, runts.
pub fn reflect(pkt: &mut [u8], from: [u8; 4], to: [u8; 4]) -> bool {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[12..16] != from || pkt[16..20] != to {
        return false;
    }
    for i in 0..4 {
        pkt.swap(12 + i, 16 + i);
    }
    true
}

pub fn serve(args: &ServeArgs) -> io::Result<()> {
    if let Some(imp) = args.path.impairment() {
        return crate::paths::reflect::serve_impaired(args, imp);
    }
    let dev = tun_tap::Iface::without_packet_info(&args.dev, tun_tap::Mode::Tun)?;
    let ctl = std::sync::Arc::new(Control::default());
    std::thread::Builder::new().name("control".into()).spawn(move || control_loop(ctl, || {}, || None))?;
    let from = args.host.octets();
    let to = args.addr.octets();
    let mut buf = vec![0u8; 65536];
    // Blocking reads: the process ends when the harness closes its stdin.
    loop {
        let n = match dev.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if reflect(&mut buf[..n], from, to) {
            // A full device queue drops the packet, as on any link; TCP recovers.
            let _ = dev.send(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 checksum over `data`.
    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// IPv4 + TCP packet with correct checksums.
    fn packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut tcp = vec![0x30, 0x39, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
        tcp.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6, 0, tcp.len() as u8]);
        pseudo.extend_from_slice(&tcp);
        let c = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&tcp);
        p
    }

    fn checksums_ok(p: &[u8]) -> bool {
        if checksum(&p[..20]) != 0 {
            return false;
        }
        let tcp = &p[20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, tcp.len() as u8]);
        pseudo.extend_from_slice(tcp);
        checksum(&pseudo) == 0
    }

    #[test]
    fn swapping_addresses_keeps_both_checksums_valid() {
        let a = [10, 0, 0, 1];
        let b = [10, 0, 0, 2];
        let mut p = packet(a, b, b"some payload, odd length");
        assert!(checksums_ok(&p));
        assert!(reflect(&mut p, a, b));
        assert_eq!(&p[12..16], &b);
        assert_eq!(&p[16..20], &a);
        assert!(checksums_ok(&p), "checksums still valid after the swap");
        // The reflected packet goes the other way: not reflected again.
        assert!(!reflect(&mut p, a, b));
    }

    #[test]
    fn other_packets_are_left_alone() {
        let a = [10, 0, 0, 1];
        let b = [10, 0, 0, 2];
        let mut other = packet(a, [10, 0, 0, 3], b"x");
        let copy = other.clone();
        assert!(!reflect(&mut other, a, b));
        assert_eq!(other, copy);
        let mut v6 = vec![0x60; 40];
        assert!(!reflect(&mut v6, a, b));
        assert!(!reflect(&mut [0x45; 10], a, b));
    }
}
