//! Interface configuration with the classic `SIOC*IF*` ioctls, so the runtime does not
//! need to run `ip(8)`: MTU, one IPv4 address with its netmask, IPv6 addresses, and the
//! `IFF_UP` flag, each on the named interface in the network namespace of the calling
//! thread (the control sockets are created in that namespace). The ioctls themselves
//! are in `runtime::sys::netdev`; this file turns their errors into ones that say what
//! to do.
//!
//! IPv4 (netdevice(7)): `SIOCSIFADDR` sets the address; on a point-to-point device such as
//! TUN the kernel starts with a /32 mask, so `SIOCSIFNETMASK` follows and the kernel then
//! installs the prefix route through the device. IPv6 (linux/ipv6.h): `SIOCSIFADDR` on an
//! `AF_INET6` socket takes a `struct in6_ifreq` and *adds* the address (with its prefix
//! route) instead of replacing one.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use super::sys::netdev::{self, ControlSocket, IfName};

pub use super::sys::netdev::MAX_IFNAME_LEN;

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
    Ipv4Net::new(Ipv4Addr::UNSPECIFIED, prefix.min(32)).map(|n| n.netmask()).unwrap_or(Ipv4Addr::BROADCAST)
}

/// Control sockets bound to one interface name.
pub struct Ifconfig {
    name: String,
    ifr_name: IfName,
    inet: ControlSocket,
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
        let inet = ControlSocket::inet()?;
        Ok(Ifconfig { name: name.to_owned(), ifr_name: netdev::ifname(name), inet })
    }

    pub fn name(&self) -> &str {
        &self.name
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
        let mtu = i32::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu} is out of range")))?;
        netdev::set_mtu(&self.inet, &self.ifr_name, mtu).map_err(|e| self.error("SIOCSIFMTU", e))
    }

    /// `SIOCGIFMTU`.
    pub fn mtu(&self) -> io::Result<usize> {
        let mtu = netdev::mtu(&self.inet, &self.ifr_name).map_err(|e| self.error("SIOCGIFMTU", e))?;
        Ok(mtu.max(0) as usize)
    }

    /// `SIOCGIFFLAGS`.
    pub fn flags(&self) -> io::Result<u16> {
        netdev::flags(&self.inet, &self.ifr_name).map_err(|e| self.error("SIOCGIFFLAGS", e))
    }

    /// Whether the link is up (`IFF_UP`).
    pub fn is_up(&self) -> io::Result<bool> {
        Ok(self.flags()? & netdev::IFF_UP != 0)
    }

    /// Bring the link up: read the flags, add `IFF_UP`, write them back (`SIOCSIFFLAGS`).
    pub fn set_up(&self) -> io::Result<()> {
        let flags = self.flags()?;
        netdev::set_flags(&self.inet, &self.ifr_name, flags | netdev::IFF_UP).map_err(|e| self.error("SIOCSIFFLAGS", e))
    }

    /// The interface index (`SIOCGIFINDEX`).
    pub fn index(&self) -> io::Result<u32> {
        netdev::index(&self.inet, &self.ifr_name).map_err(|e| self.error("SIOCGIFINDEX", e))
    }

    /// Set the interface's (primary) IPv4 address and its prefix: `SIOCSIFADDR`, then
    /// `SIOCSIFNETMASK`. Replaces the primary address if there already is one.
    pub fn set_ipv4(&self, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let net = Ipv4Net::new(addr, prefix).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("IPv4 prefix length {prefix} is greater than 32"))
        })?;
        netdev::set_addr_v4(&self.inet, &self.ifr_name, addr).map_err(|e| self.error("SIOCSIFADDR", e))?;
        netdev::set_netmask_v4(&self.inet, &self.ifr_name, net.netmask()).map_err(|e| self.error("SIOCSIFNETMASK", e))
    }

    /// `SIOCGIFADDR`: the primary IPv4 address.
    pub fn ipv4_addr(&self) -> io::Result<Ipv4Addr> {
        netdev::addr_v4(&self.inet, &self.ifr_name).map_err(|e| self.error("SIOCGIFADDR", e))
    }

    /// `SIOCGIFNETMASK`: the netmask of the primary IPv4 address.
    pub fn ipv4_netmask(&self) -> io::Result<Ipv4Addr> {
        netdev::netmask_v4(&self.inet, &self.ifr_name).map_err(|e| self.error("SIOCGIFNETMASK", e))
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
        let inet6 = ControlSocket::inet6().map_err(|e| {
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "cannot add an IPv6 address: IPv6 is not available in this kernel/namespace",
                )
            } else {
                e
            }
        })?;
        netdev::add_addr_v6(&inet6, index, addr, prefix).map_err(|err| {
            if err.raw_os_error() == Some(libc::EACCES) || err.raw_os_error() == Some(libc::EPERM) {
                return self.error("SIOCSIFADDR (IPv6)", err);
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
            io::Error::new(err.kind(), format!("SIOCSIFADDR {addr}/{prefix} on {}: {err}{hint}", self.name))
        })
    }
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
    fn template_names_are_not_interfaces() {
        assert_eq!(Ifconfig::new("").err().unwrap().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(Ifconfig::new("tun%d").err().unwrap().kind(), io::ErrorKind::InvalidInput);
    }
}
