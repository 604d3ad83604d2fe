//! The classic `SIOC*IF*` interface ioctls (netdevice(7), linux/ipv6.h), which no
//! well-kept crate wraps: the crate's only `unsafe` code. Each call reads or writes one
//! `struct ifreq` (or `struct in6_ifreq`) that lives on the caller's stack for the
//! duration of the call. Errors are the kernel's, unwrapped; `runtime::ifconfig` adds
//! what to do about them.

use std::ffi::c_int;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// A datagram socket of one address family, used only as the handle the interface
/// ioctls are issued on (in the network namespace it was created in).
pub(crate) struct ControlSocket {
    fd: OwnedFd,
}

impl ControlSocket {
    pub(crate) fn inet() -> io::Result<ControlSocket> {
        ControlSocket::new(AddressFamily::INET)
    }

    pub(crate) fn inet6() -> io::Result<ControlSocket> {
        ControlSocket::new(AddressFamily::INET6)
    }

    fn new(family: AddressFamily) -> io::Result<ControlSocket> {
        let fd = rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
        Ok(ControlSocket { fd })
    }
}

/// The name field of an `ifreq`; the caller has checked the length (at most
/// [`MAX_IFNAME_LEN`] bytes, so the terminating NUL fits).
pub(crate) type IfName = [libc::c_char; libc::IFNAMSIZ];

pub(crate) fn ifname(name: &str) -> IfName {
    debug_assert!(name.len() <= MAX_IFNAME_LEN);
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, &b) in out.iter_mut().zip(name.as_bytes().iter().take(MAX_IFNAME_LEN)) {
        *dst = b as libc::c_char;
    }
    out
}

fn ifreq(name: &IfName) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name and a union of integers/sockaddrs);
    // all-zero is a valid value for it.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    req.ifr_name = *name;
    req
}

/// Run one `SIOC*` request that reads and/or writes a single `struct ifreq`.
fn ioctl(sock: &ControlSocket, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (the SIOC[GS]IF* family below) reads/writes at
    // most one `struct ifreq`, which `req` points to for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIOCSIFMTU`.
pub(crate) fn set_mtu(sock: &ControlSocket, name: &IfName, mtu: c_int) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_mtu = mtu;
    ioctl(sock, libc::SIOCSIFMTU as _, &mut req)
}

/// `SIOCGIFMTU`.
pub(crate) fn mtu(sock: &ControlSocket, name: &IfName) -> io::Result<c_int> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFMTU as _, &mut req)?;
    // SAFETY: the kernel filled the `ifru_mtu` member for SIOCGIFMTU.
    Ok(unsafe { req.ifr_ifru.ifru_mtu })
}

/// `SIOCGIFFLAGS` (the 16 bits of `ifr_flags`).
pub(crate) fn flags(sock: &ControlSocket, name: &IfName) -> io::Result<u16> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req)?;
    // SAFETY: the kernel filled the `ifru_flags` member for SIOCGIFFLAGS.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16)
}

/// `SIOCSIFFLAGS`.
pub(crate) fn set_flags(sock: &ControlSocket, name: &IfName, flags: u16) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS as _, &mut req)
}

/// `IFF_UP` of `ifr_flags`.
pub(crate) const IFF_UP: u16 = libc::IFF_UP as u16;

/// `SIOCGIFINDEX`.
pub(crate) fn index(sock: &ControlSocket, name: &IfName) -> io::Result<u32> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFINDEX as _, &mut req)?;
    // SAFETY: the kernel filled the `ifru_ifindex` member for SIOCGIFINDEX.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// `SIOCSIFADDR` with an IPv4 address (on an `AF_INET` socket).
pub(crate) fn set_addr_v4(sock: &ControlSocket, name: &IfName, addr: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
    ioctl(sock, libc::SIOCSIFADDR as _, &mut req)
}

/// `SIOCSIFNETMASK`.
pub(crate) fn set_netmask_v4(sock: &ControlSocket, name: &IfName, mask: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_netmask = sockaddr_v4(mask);
    ioctl(sock, libc::SIOCSIFNETMASK as _, &mut req)
}

/// `SIOCGIFADDR`: the primary IPv4 address.
pub(crate) fn addr_v4(sock: &ControlSocket, name: &IfName) -> io::Result<Ipv4Addr> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFADDR as _, &mut req)?;
    // SAFETY: the kernel filled `ifru_addr` with a sockaddr_in for SIOCGIFADDR.
    Ok(from_sockaddr_v4(unsafe { &req.ifr_ifru.ifru_addr }))
}

/// `SIOCGIFNETMASK`: the netmask of the primary IPv4 address.
pub(crate) fn netmask_v4(sock: &ControlSocket, name: &IfName) -> io::Result<Ipv4Addr> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFNETMASK as _, &mut req)?;
    // SAFETY: the kernel filled `ifru_netmask` with a sockaddr_in for SIOCGIFNETMASK.
    Ok(from_sockaddr_v4(unsafe { &req.ifr_ifru.ifru_netmask }))
}

/// `SIOCSIFADDR` on an `AF_INET6` socket with a `struct in6_ifreq`: *adds* an IPv6
/// address with its prefix (and the prefix route) to interface `index`.
pub(crate) fn add_addr_v6(sock: &ControlSocket, index: u32, addr: Ipv6Addr, prefix: u8) -> io::Result<()> {
    let mut req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr { s6_addr: addr.octets() },
        ifr6_prefixlen: u32::from(prefix),
        ifr6_ifindex: index as c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads one `struct in6_ifreq`, which
    // `req` points to for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.fd.as_raw_fd(), libc::SIOCSIFADDR as _, &mut req as *mut libc::in6_ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and sockaddr is
    // plain bytes; this is the reinterpretation the ioctl interface expects.
    unsafe { mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn from_sockaddr_v4(sa: &libc::sockaddr) -> Ipv4Addr {
    // SAFETY: same size and both plain data; the kernel wrote a sockaddr_in here.
    let sin: libc::sockaddr_in = unsafe { mem::transmute::<libc::sockaddr, libc::sockaddr_in>(*sa) };
    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        let sa = sockaddr_v4(a);
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(from_sockaddr_v4(&sa), a);
    }

    #[test]
    fn names_are_nul_terminated() {
        let n = ifname("abcdefghijklmno");
        assert_eq!(n[14], b'o' as libc::c_char);
        assert_eq!(n[15], 0);
    }
}
