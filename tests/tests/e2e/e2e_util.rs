//! Helpers shared by the TUN end-to-end tests (the modules of this binary). Every function here is
//! meant to be called from inside `NetNs::run`, i.e. on a thread in the test's
//! network namespace.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tunstack::runtime::{Runtime, RuntimeConfig};
use tunstack_tests::netns;

/// The defaults of `RuntimeConfig`: the stack is 10.0.0.2 / fd00::2, the kernel side
/// of the device 10.0.0.1/24 / fd00::1/64.
pub const STACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
pub const STACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
pub const HOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
pub const HOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));

/// Limit on any single blocking socket operation in these tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Create the runtime (device `tun0` in the current namespace) with the default
/// configuration, and wait until the kernel's IPv6 address is usable.
pub fn start_runtime() -> Runtime {
    let rt = Runtime::new(RuntimeConfig::default()).expect("Runtime::new in the test namespace");
    netns::wait_ipv6_ready(Duration::from_secs(10));
    rt
}

/// Deterministic, seed-dependent bytes (the core's PRNG), so that data of different
/// connections differs.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    tunstack_tests::sim::payload(seed, len)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A kernel TCP connection with generous timeouts on everything.
pub fn kernel_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Send `data` through an echo connection while reading the echo on this thread, then
/// half-close and read until the server closes. Returns what came back (at most one
/// byte more than was sent, so a misbehaving server cannot make this grow unbounded).
pub fn echo_through(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("try_clone");
    let to_send = data.to_vec();
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::with_capacity(data.len());
    let read = (&mut &*stream).take(data.len() as u64 + 1).read_to_end(&mut got);
    sender.join().expect("sender thread").expect("sending to the echo server");
    read.expect("reading the echo");
    got
}

/// Assert two byte strings are equal by length and SHA-256 (no megabyte dumps).
#[track_caller]
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(sha256(got), sha256(want), "{what}: SHA-256 of the data");
}

// ------------------------------------------------------------------ checksums, for
// packets the tests build by hand

/// One's-complement sum of 16-bit big-endian words (RFC 1071), not yet folded.
pub fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folded into 16 bits and complemented: the Internet checksum.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header part of the TCP/UDP/ICMPv6 checksum (RFC 9293 3.1, RFC 768, RFC
/// 8200 8.1).
pub fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = sum16(sum16(0, &s.octets()), &d.octets());
            sum16(sum, &[0, proto]) + len as u32
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let sum = sum16(sum16(0, &s.octets()), &d.octets());
            sum16(sum16(sum, &(len as u32).to_be_bytes()), &[0, 0, 0, proto])
        }
        _ => panic!("mixed families"),
    }
}

// ------------------------------------------------------------------ AF_PACKET

/// The AF_PACKET socket of packet(7) on the TUN interface: what is sent on it is what
/// the stack reads from the device; what it receives (with protocol ETH_P_ALL) is every
/// packet through the interface, among them what the stack writes.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    pub fn open(ifname: &str, listen: bool) -> io::Result<PacketSocket> {
        let name = CString::new(ifname).unwrap();
        let proto: u16 = if listen { libc::ETH_P_ALL as u16 } else { 0 };
        // SAFETY: plain syscalls on plain data; the fd is owned right away.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto.to_be()));
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            if listen {
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = proto.to_be();
                addr.sll_ifindex = ifindex as i32;
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                );
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
            Ok(PacketSocket { fd, ifindex: ifindex as i32 })
        }
    }

    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let ethertype: u16 = if packet[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
        // SAFETY: sockaddr_ll is plain data; sendto reads `packet` and `addr` only.
        let n = unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ethertype.to_be();
            addr.sll_ifindex = self.ifindex;
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr() as *const libc::c_void,
                packet.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        assert_eq!(n as usize, packet.len(), "short AF_PACKET send");
        Ok(())
    }

    /// Throw away what is queued now.
    pub fn discard_queued(&self) {
        let mut buf = vec![0u8; 65536];
        // SAFETY: recv writes at most buf.len() bytes into buf.
        while unsafe {
            libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT)
        } >= 0
        {}
    }

    /// One packet, or `None` after the 50 ms receive timeout.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        (n >= 0).then_some(n as usize)
    }
}
