//! Registering a descriptor with tokio's reactor, which (since tokio 1.54) is an
//! `unsafe` call: the caller vouches that the descriptor stays open for as long as the
//! registration.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Register a duplicate of `fd` for read readiness. The duplicate refers to the same
/// open file description, so its readiness is the original's.
pub(crate) fn register_readable(fd: impl AsFd) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
    // SAFETY: `dup` is an OwnedFd moved into the AsyncFd, which owns it from here on:
    // it stays open and refers to the same file description for the AsyncFd's whole
    // life, and `as_raw_fd` always returns that same number.
    unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }.map_err(io::Error::from)
}
