//! Setting up a TUN device for the runtime: checking the configuration before
//! anything is created, then MTU, addresses and link state (through `ifconfig`), and
//! waiting until the kernel can use the IPv6 addresses.

use std::io;
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use ipnet::IpNet;

use super::ifconfig::{self, Ifconfig};

/// Check the configuration before anything is created.
pub(crate) fn validate(name: &str, mtu: usize, host_addrs: &[IpNet], stack_addrs: &[IpAddr]) -> io::Result<()> {
    let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    ifconfig::validate_ifname(name)?;
    // RFC 791: every IPv4 host must handle 68-byte datagrams; the IPv4 total length
    // field bounds the MTU at 65535.
    if !(68..=65535).contains(&mtu) {
        return invalid(format!("MTU {mtu} is out of range (68..=65535)"));
    }
    let any_v6 = host_addrs.iter().map(|n| n.addr()).chain(stack_addrs.iter().copied()).any(|a| a.is_ipv6());
    // RFC 8200 5: IPv6 requires a link MTU of at least 1280.
    if any_v6 && mtu < 1280 {
        return invalid(format!("MTU {mtu} is below 1280, the minimum for IPv6 (RFC 8200 5)"));
    }
    if stack_addrs.is_empty() {
        return invalid("the stack has no addresses (config.stack.addrs is empty)".into());
    }
    for a in stack_addrs {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return invalid(format!("{a} cannot be a stack address (unspecified, multicast or loopback)"));
        }
    }
    let mut v4 = 0;
    for (i, net) in host_addrs.iter().enumerate() {
        let (addr, prefix) = (net.addr(), net.prefix_len());
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return invalid(format!("host address {addr}/{prefix}: prefix length is greater than {max}"));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return invalid(format!("{addr} cannot be a host address (unspecified, multicast or loopback)"));
        }
        if let IpAddr::V4(a) = addr {
            if a.is_broadcast() {
                return invalid(format!("{addr} cannot be a host address (broadcast)"));
            }
        }
        if stack_addrs.contains(&addr) {
            return invalid(format!(
                "host address {addr} is also one of the stack's addresses; the two ends of the \
                 TUN link need different addresses"
            ));
        }
        if host_addrs[..i].iter().any(|b| b.addr() == addr) {
            return invalid(format!("host address {addr} is listed twice"));
        }
        if addr.is_ipv4() {
            v4 += 1;
            if v4 > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("host address {addr}: only one IPv4 host address is supported (ioctl configuration)"),
                ));
            }
        }
    }
    for &a in stack_addrs {
        let routed = host_addrs.iter().any(|net| net.contains(&a));
        if !routed && !host_addrs.is_empty() {
            tracing::warn!(%a, "stack address is outside every host prefix: the kernel will not route to it without an extra route");
        }
    }
    Ok(())
}

/// MTU, the IPv4 address, link up, then IPv6 addresses (added once the device is up,
/// when the kernel has its IPv6 state ready).
pub(crate) fn configure(name: &str, mtu: usize, host_addrs: &[IpNet]) -> io::Result<()> {
    let ifc = Ifconfig::new(name)?;
    ifc.set_mtu(mtu)?;
    for net in host_addrs {
        if let IpNet::V4(n) = net {
            ifc.set_ipv4(n.addr(), n.prefix_len())?;
        }
    }
    ifc.set_up()?;
    let mut v6 = Vec::new();
    for net in host_addrs {
        if let IpNet::V6(n) = net {
            ifc.add_ipv6(n.addr(), n.prefix_len())?;
            v6.push(n.addr());
        }
    }
    if !v6.is_empty() {
        wait_ipv6_usable(name, &v6);
    }
    Ok(())
}

/// The kernel finishes duplicate address detection from a work queue even on a NOARP
/// link like TUN (where it is skipped), so for a moment after `SIOCSIFADDR` the
/// addresses are tentative (RFC 4862 5.4) and cannot be used as source addresses. Wait
/// (bounded, 2 s) until /proc shows them settled so that the host can talk to the stack
/// as soon as `Runtime::new` returns.
fn wait_ipv6_usable(name: &str, addrs: &[std::net::Ipv6Addr]) {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let hex: Vec<String> = addrs.iter().map(|a| a.octets().iter().map(|b| format!("{b:02x}")).collect()).collect();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/if_inet6") else { return };
        let settled = hex.iter().all(|h| {
            table.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() == 6
                    && f[0] == h
                    && f[5] == name
                    && u32::from_str_radix(f[4], 16).is_ok_and(|flags| flags & IFA_F_TENTATIVE == 0)
            })
        });
        if settled {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    tracing::warn!(tun = name, "IPv6 host addresses still tentative after 2 s");
}
