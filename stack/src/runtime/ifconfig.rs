//! Interface configuration with the classic `SIOC*IF*` ioctls, so the runtime does not
//! need to run `ip(8)`: MTU, one IPv4 address with its netmask, IPv6 addresses, and the
//! `IFF_UP` flag, each on the named interface in the network namespace of the calling
//! thread (the control sockets are created in that namespace).
//!
//! IPv4 (netdevice(7)): `SIOCSIFADDR` sets the address; on a point-to-point device such as
//! TUN the kernel starts with a /32 mask, so `SIOCSIFNETMASK` follows and the kernel then
//! installs the prefix route through the device. IPv6 (linux/ipv6.h): `SIOCSIFADDR` on an
//! `AF_INET6` socket takes a `struct in6_ifreq` and *adds* the address (with its prefix
//! route) instead of replacing one.

use std::ffi::c_int;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Check an interface name the way the kernel's `dev_valid_name` does, so that a bad
/// name gives a clear `InvalidInput` here instead of a truncated or rejected name later.
/// An empty name (the kernel picks one) and `%d` templates are accepted.
pub fn validate_ifname(name: &str) -> io::Result<()> {
    let bad =
        |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid interface name {name:?}: {why}")));
    if name.len() > MAX_IFNAME_LEN {
        return bad(&format!("{} bytes long, at most {MAX_IFNAME_LEN} are allowed", name.len()));
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are reserved");
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        return bad(&format!("contains {c:?} ('/', ':', NUL and whitespace are not allowed)"));
    }
    Ok(())
}

/// The IPv4 netmask for a prefix length (at most 32).
pub fn ipv4_netmask(prefix: u8) -> Ipv4Addr {
    debug_assert!(prefix <= 32);
    let bits = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    Ipv4Addr::from(bits)
}

/// Control sockets bound to one interface name.
pub struct Ifconfig {
    name: String,
    ifr_name: [libc::c_char; libc::IFNAMSIZ],
    inet: OwnedFd,
}

impl Ifconfig {
    /// Prepare to configure `name`. Opens an `AF_INET` datagram socket in the calling
    /// thread's network namespace; the interface itself is looked up by each call.
    pub fn new(name: &str) -> io::Result<Ifconfig> {
        validate_ifname(name)?;
        if name.is_empty() || name.contains('%') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} is a template, not an existing interface"),
            ));
        }
        let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, &b) in ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = b as libc::c_char;
        }
        let inet = control_socket(libc::AF_INET)?;
        Ok(Ifconfig { name: name.to_owned(), ifr_name, inet })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn ifreq(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain old data (a name and a union of integers/sockaddrs);
        // all-zero is a valid value for it.
        let mut req: libc::ifreq = unsafe { mem::zeroed() };
        req.ifr_name = self.ifr_name;
        req
    }

    /// Run one `SIOC*` ioctl on the `AF_INET` control socket.
    fn ioctl(&self, what: &'static str, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every request used here reads/writes at most one `struct ifreq`, which
        // `req` points to for the duration of the call.
        let rc = unsafe { libc::ioctl(self.inet.as_raw_fd(), request as _, req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(self.error(what, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Wrap an OS error with the request and interface name, and a hint when it is
    /// about privileges or a missing interface.
    fn error(&self, what: &str, err: io::Error) -> io::Error {
        let name = &self.name;
        match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{what} on {name}: {err}; configuring an interface needs CAP_NET_ADMIN \
                     (run as root or `setcap cap_net_admin+ep <binary>`)"
                ),
            ),
            Some(libc::ENODEV) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what} on {name}: no such interface in this network namespace"),
            ),
            _ => io::Error::new(err.kind(), format!("{what} on {name}: {err}")),
        }
    }

    /// `SIOCSIFMTU`.
    pub fn set_mtu(&self, mtu: usize) -> io::Result<()> {
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_mtu = c_int::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu} is out of range")))?;
        self.ioctl("SIOCSIFMTU", libc::SIOCSIFMTU as _, &mut req)
    }

    /// `SIOCGIFMTU`.
    pub fn mtu(&self) -> io::Result<usize> {
        let mut req = self.ifreq();
        self.ioctl("SIOCGIFMTU", libc::SIOCGIFMTU as _, &mut req)?;
        // SAFETY: the kernel filled the `ifru_mtu` member for SIOCGIFMTU.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        Ok(mtu.max(0) as usize)
    }

    /// `SIOCGIFFLAGS`.
    pub fn flags(&self) -> io::Result<c_int> {
        let mut req = self.ifreq();
        self.ioctl("SIOCGIFFLAGS", libc::SIOCGIFFLAGS as _, &mut req)?;
        // SAFETY: the kernel filled the `ifru_flags` member for SIOCGIFFLAGS.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        Ok(c_int::from(flags as u16))
    }

    /// Bring the link up: read the flags, add `IFF_UP`, write them back (`SIOCSIFFLAGS`).
    pub fn set_up(&self) -> io::Result<()> {
        let flags = self.flags()?;
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_flags = (flags | libc::IFF_UP) as libc::c_short;
        self.ioctl("SIOCSIFFLAGS", libc::SIOCSIFFLAGS as _, &mut req)
    }

    /// The interface index (`SIOCGIFINDEX`).
    pub fn index(&self) -> io::Result<u32> {
        let mut req = self.ifreq();
        self.ioctl("SIOCGIFINDEX", libc::SIOCGIFINDEX as _, &mut req)?;
        // SAFETY: the kernel filled the `ifru_ifindex` member for SIOCGIFINDEX.
        let idx = unsafe { req.ifr_ifru.ifru_ifindex };
        Ok(idx as u32)
    }

    /// Set the interface's (primary) IPv4 address and its prefix: `SIOCSIFADDR`, then
    /// `SIOCSIFNETMASK`. Replaces the primary address if there already is one.
    pub fn set_ipv4(&self, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        if prefix > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IPv4 prefix length {prefix} is greater than 32"),
            ));
        }
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
        self.ioctl("SIOCSIFADDR", libc::SIOCSIFADDR as _, &mut req)?;
        let mut req = self.ifreq();
        req.ifr_ifru.ifru_netmask = sockaddr_v4(ipv4_netmask(prefix));
        self.ioctl("SIOCSIFNETMASK", libc::SIOCSIFNETMASK as _, &mut req)
    }

    /// `SIOCGIFADDR`: the primary IPv4 address.
    pub fn ipv4_addr(&self) -> io::Result<Ipv4Addr> {
        let mut req = self.ifreq();
        self.ioctl("SIOCGIFADDR", libc::SIOCGIFADDR as _, &mut req)?;
        // SAFETY: the kernel filled `ifru_addr` with a sockaddr_in for SIOCGIFADDR.
        Ok(from_sockaddr_v4(unsafe { &req.ifr_ifru.ifru_addr }))
    }

    /// `SIOCGIFNETMASK`: the netmask of the primary IPv4 address.
    pub fn ipv4_netmask(&self) -> io::Result<Ipv4Addr> {
        let mut req = self.ifreq();
        self.ioctl("SIOCGIFNETMASK", libc::SIOCGIFNETMASK as _, &mut req)?;
        // SAFETY: the kernel filled `ifru_netmask` with a sockaddr_in for SIOCGIFNETMASK.
        Ok(from_sockaddr_v4(unsafe { &req.ifr_ifru.ifru_netmask }))
    }

    /// Add an IPv6 address with its prefix length (`SIOCSIFADDR` on an `AF_INET6` socket
    /// with `struct in6_ifreq`). The kernel adds the prefix route through the device.
    pub fn add_ipv6(&self, addr: Ipv6Addr, prefix: u8) -> io::Result<()> {
        if prefix > 128 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IPv6 prefix length {prefix} is greater than 128"),
            ));
        }
        let index = self.index()?;
        let inet6 = control_socket(libc::AF_INET6).map_err(|e| {
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "cannot add an IPv6 address: IPv6 is not available in this kernel/namespace",
                )
            } else {
                e
            }
        })?;
        let mut req = libc::in6_ifreq {
            ifr6_addr: libc::in6_addr { s6_addr: addr.octets() },
            ifr6_prefixlen: u32::from(prefix),
            ifr6_ifindex: index as c_int,
        };
        // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads one `struct in6_ifreq`.
        let rc = unsafe { libc::ioctl(inet6.as_raw_fd(), libc::SIOCSIFADDR as _, &mut req as *mut libc::in6_ifreq) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EACCES) || err.raw_os_error() == Some(libc::EPERM) {
                return Err(self.error("SIOCSIFADDR (IPv6)", err));
            }
            let hint = match err.raw_os_error() {
                // addrconf refuses addresses on a device without IPv6 state, which is
                // what happens when its MTU is below IPv6's minimum of 1280 (RFC 8200 5)
                // or IPv6 is disabled on it via sysctl.
                Some(libc::ENODEV) | Some(libc::ENOBUFS) => {
                    "; IPv6 may be disabled on the interface (MTU below 1280 or disable_ipv6 set)"
                }
                Some(libc::EEXIST) => "; the address is already assigned",
                _ => "",
            };
            return Err(io::Error::new(
                err.kind(),
                format!("SIOCSIFADDR {addr}/{prefix} on {}: {err}{hint}", self.name),
            ));
        }
        Ok(())
    }
}

fn control_socket(family: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; on success we take ownership of the new descriptor.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    fn netmask_from_prefix() {
        assert_eq!(ipv4_netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(ipv4_netmask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(ipv4_netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(ipv4_netmask(31), Ipv4Addr::new(255, 255, 255, 254));
        assert_eq!(ipv4_netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("tun0").is_ok());
        assert!(validate_ifname("").is_ok());
        assert!(validate_ifname("tun%d").is_ok());
        assert!(validate_ifname("abcdefghijklmno").is_ok()); // 15 bytes
        for bad in ["abcdefghijklmnop", ".", "..", "a/b", "a:b", "a b", "a\0b", "tab\t"] {
            let err = validate_ifname(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let msg = validate_ifname("abcdefghijklmnop").unwrap_err().to_string();
        assert!(msg.contains("at most 15"), "{msg}");
    }

    #[test]
    fn sockaddr_round_trip() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        let sa = sockaddr_v4(a);
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(from_sockaddr_v4(&sa), a);
    }

    #[test]
    fn template_names_are_not_interfaces() {
        assert_eq!(Ifconfig::new("").err().unwrap().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(Ifconfig::new("tun%d").err().unwrap().kind(), io::ErrorKind::InvalidInput);
    }
}
