//! The TUN device: creation with errors that say how to fix them, non-blocking mode.
//!
//! The device is created in the network namespace of the calling thread (the
//! `/dev/net/tun` file is bound to the namespace it was opened in). It is not
//! persistent: closing the descriptor removes the interface.

use std::io;

use tun_tap::{Iface, Mode};

use super::ifconfig::validate_ifname;

/// Create the TUN interface `name` (layer 3, no packet-info header) and put its
/// descriptor in non-blocking mode.
pub(crate) fn open_tun(name: &str) -> io::Result<Iface> {
    // tun-tap silently truncates long names; reject them (and other names the kernel
    // would refuse) with a clear message first.
    validate_ifname(name)?;
    let iface = Iface::without_packet_info(name, Mode::Tun).map_err(|e| open_error(name, e))?;
    super::sys::set_nonblocking(super::sys::tun_fd(&iface))?;
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
