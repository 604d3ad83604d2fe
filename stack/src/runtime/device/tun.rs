//! The TUN device: creation with errors that say how to fix them, non-blocking mode.
//!
//! The device is created in the network namespace of the calling thread (the
//! `/dev/net/tun` file is bound to the namespace it was opened in). It is not
//! persistent: closing the descriptor removes the interface. Reads and writes are one
//! packet per system call (IFF_TUN | IFF_NO_PI: no link header, no packet info).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tun_tap::{Iface, Mode};

use super::Device;
use crate::runtime::ifconfig::validate_ifname;
use crate::runtime::sys;
use crate::time::Instant;

/// A layer-3 TUN device in non-blocking mode (or one queue of a multi-queue one).
#[derive(Debug)]
pub struct TunDevice {
    inner: Inner,
    mtu: usize,
}

#[derive(Debug)]
enum Inner {
    /// A single-queue device, opened by tun-tap.
    Iface(Iface),
    /// One queue of a multi-queue device, opened by `sys::tunq` (tun-tap has no
    /// `IFF_MULTI_QUEUE`).
    Queue { fd: OwnedFd, name: String },
}

impl TunDevice {
    /// Create the TUN interface `name` in the calling thread's network namespace. The
    /// caller configures it (MTU, addresses, link up; see `runtime::ifconfig`); `mtu`
    /// is what the runtime reads and writes.
    pub fn create(name: &str, mtu: usize) -> io::Result<TunDevice> {
        Ok(TunDevice { inner: Inner::Iface(open_tun(name)?), mtu })
    }

    /// Create TUN interface `name` with `queues` queues (`IFF_MULTI_QUEUE`): one device
    /// per queue, each read and written on its own; the kernel keeps a flow on one
    /// queue. The interface goes away when the last queue is dropped.
    pub fn create_queues(name: &str, mtu: usize, queues: usize) -> io::Result<Vec<TunDevice>> {
        validate_ifname(name)?;
        let fds = sys::tunq::open_queues(name, false, queues).map_err(|e| open_error(name, e))?;
        Ok(fds.into_iter().map(|(fd, name)| TunDevice { inner: Inner::Queue { fd, name }, mtu }).collect())
    }

    /// The interface's name (the kernel's choice for a `%d` template).
    pub fn name(&self) -> &str {
        match &self.inner {
            Inner::Iface(i) => i.name(),
            Inner::Queue { name, .. } => name,
        }
    }
}

impl Device for TunDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn recv(&self, _now: Instant, buf: &mut [u8]) -> io::Result<usize> {
        match &self.inner {
            Inner::Iface(i) => i.recv(buf),
            Inner::Queue { fd, .. } => Ok(rustix::io::read(fd, buf)?),
        }
    }

    fn send(&self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        match &self.inner {
            Inner::Iface(i) => i.send(packet).map(drop),
            Inner::Queue { fd, .. } => rustix::io::write(fd, packet).map(drop).map_err(io::Error::from),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Iface(i) => sys::tun_fd(i),
            Inner::Queue { fd, .. } => fd.as_fd(),
        }
    }

    fn describe(&self) -> String {
        self.name().to_owned()
    }
}

/// Create the TUN interface `name` (layer 3, no packet-info header) and put its
/// descriptor in non-blocking mode.
fn open_tun(name: &str) -> io::Result<Iface> {
    // tun-tap silently truncates long names; reject them (and other names the kernel
    // would refuse) with a clear message first.
    validate_ifname(name)?;
    let iface = Iface::without_packet_info(name, Mode::Tun).map_err(|e| open_error(name, e))?;
    sys::set_nonblocking(sys::tun_fd(&iface))?;
    Ok(iface)
}

/// Turn the OS error of opening `/dev/net/tun` or of `TUNSETIFF` into one whose kind is
/// std's and whose message says what to do.
pub(crate) fn open_error(name: &str, err: io::Error) -> io::Error {
    use io::ErrorKind::*;
    let (kind, msg) = match err.raw_os_error() {
        Some(libc::ENOENT) => (
            NotFound,
            "/dev/net/tun does not exist: load the driver (`modprobe tun`) or create the node \
             (`mknod /dev/net/tun c 10 200`)"
                .to_string(),
        ),
        Some(libc::ENODEV) | Some(libc::ENXIO) => {
            (NotFound, "/dev/net/tun has no driver behind it: load the tun module (`modprobe tun`)".to_string())
        }
        Some(libc::EPERM) | Some(libc::EACCES) => (
            PermissionDenied,
            format!(
                "creating TUN device {name:?} needs CAP_NET_ADMIN (and access to /dev/net/tun): \
                 run as root or `setcap cap_net_admin+ep <binary>`"
            ),
        ),
        Some(libc::EBUSY) => (AddrInUse, format!("TUN device {name} is in use by another process")),
        Some(libc::EINVAL) => (
            InvalidInput,
            format!(
                "the kernel refused TUN device name {name:?}: it is invalid, or an interface of \
                 another kind (or a TAP device) already has this name"
            ),
        ),
        _ => (err.kind(), format!("creating TUN device {name:?}")),
    };
    io::Error::new(kind, format!("{msg} ({err})"))
}
