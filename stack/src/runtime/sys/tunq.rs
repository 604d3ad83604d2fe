//! Opening a TUN device ourselves (linux/if_tun.h), for what tun-tap does not offer:
//! the virtio-net header (`IFF_VNET_HDR`) that carries segmentation and checksum
//! offload information with every packet, and offload negotiation (`TUNSETOFFLOAD`).

use std::ffi::c_int;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::netdev::{ifname, MAX_IFNAME_LEN};
use crate::runtime::device::offload::VNET_HDR_LEN;

/// Open TUN interface `name` (created by the first open, removed when its last
/// descriptor closes), non-blocking, without packet information; with `vnet`, with the
/// virtio-net header; with `multi_queue`, as one queue of a multi-queue device
/// (`IFF_MULTI_QUEUE`: each open of the same name attaches one more queue, and the
/// kernel spreads flows over the queues). Returns the descriptor and the interface's
/// name (the kernel's choice for `%d`).
pub(crate) fn open(name: &str, vnet: bool, multi_queue: bool) -> io::Result<(OwnedFd, String)> {
    if name.len() > MAX_IFNAME_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {name:?} is too long")));
    }
    let fd = rustix::fs::open("/dev/net/tun", OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    req.ifr_name = ifname(name);
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is and which
    // lives on this stack frame for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = req.ifr_name;
    let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let actual: String = raw[..len].iter().map(|&c| c as u8 as char).collect();
    if vnet {
        let size: c_int = VNET_HDR_LEN as c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points to
        // `size` on this stack frame.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &size as *const c_int) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((fd, actual))
}

/// `queues` descriptors of one multi-queue TUN interface (see [`open`]): the first
/// creates it, the others attach to it by its actual name.
pub(crate) fn open_queues(name: &str, vnet: bool, queues: usize) -> io::Result<Vec<(OwnedFd, String)>> {
    let mut out: Vec<(OwnedFd, String)> = Vec::with_capacity(queues);
    for _ in 0..queues {
        let name = out.first().map_or(name, |(_, n)| n.as_str());
        out.push(open(name, vnet, true)?);
    }
    Ok(out)
}

/// `TUNSETOFFLOAD`: which offloads the kernel may use towards us (it then hands us
/// super-segments and partial checksums; it accepts them from us regardless).
/// `EINVAL` when the kernel does not know a flag.
pub(crate) fn set_offload(fd: &OwnedFd, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long) and
    // touches no memory of ours.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD as _, flags as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
