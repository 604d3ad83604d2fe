//! Descriptors and namespaces: the two places where a safe wrapper needs one
//! `unsafe` call.

#[cfg(test)]
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use tun_tap::Iface;

/// The device's descriptor, borrowed for as long as the `Iface` lives
/// (`tun_tap::Iface` exposes only the raw number, `AsRawFd`, not `AsFd`).
pub(crate) fn tun_fd(dev: &Iface) -> BorrowedFd<'_> {
    // SAFETY: `Iface` owns its descriptor and closes it only when dropped, so the
    // descriptor stays open for the lifetime of the borrow of `dev`.
    unsafe { BorrowedFd::borrow_raw(dev.as_raw_fd()) }
}

/// Move the calling thread into a new, anonymous network namespace
/// (`unshare(CLONE_NEWNET)`); it disappears when its last thread and descriptor go.
#[cfg(test)]
pub(crate) fn unshare_netns() -> io::Result<()> {
    // SAFETY: rustix marks unshare unsafe because of CLONE_FILES (another thread could
    // observe descriptors from an unshared table); CLONE_NEWNET changes only the
    // thread's network namespace and touches no descriptor table.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }?;
    Ok(())
}
