//! Thin wrappers over the few system calls the runtime thread needs: an eventfd for
//! wake-ups, poll(2) on two descriptors, and the OS entropy source for the seed.

use std::ffi::c_int;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::time::Instant;

/// A non-blocking eventfd(2): `kick` makes it readable, `drain` resets it.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain eventfd(2) call; on success we own the new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is fresh and owned by nobody else.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Add one to the counter. A full counter (EAGAIN) is already readable, so errors
    /// need no handling.
    pub(crate) fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the counter to zero (EAGAIN when it already is).
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Readiness reported by [`poll2`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// The first descriptor is readable (or reports an error/hang-up; reading tells which).
    pub(crate) a: bool,
    /// The second descriptor is readable.
    pub(crate) b: bool,
}

/// poll(2) for input on two descriptors. A negative descriptor is ignored (poll(2)
/// semantics). `EINTR` is reported as nothing ready.
pub(crate) fn poll2(a: RawFd, b: RawFd, timeout_ms: c_int) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `fds` is a live array of two pollfd structures.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(Ready::default());
        }
        return Err(err);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    Ok(Ready { a: ready(&fds[0]), b: ready(&fds[1]) })
}

/// Milliseconds from `now` until `deadline`, rounded up so that the thread never wakes
/// before the deadline; -1 (wait forever) without a deadline.
pub(crate) fn timeout_ms(deadline: Option<Instant>, now: Instant) -> c_int {
    match deadline {
        None => -1,
        Some(d) => {
            let micros = d.total_micros().saturating_sub(now.total_micros());
            micros.div_ceil(1000).min(c_int::MAX as u64) as c_int
        }
    }
}

/// Eight bytes from the OS entropy source: getrandom(2), or /dev/urandom when the
/// system call is unavailable.
pub(crate) fn random_seed() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most `buf.len() - filled` bytes into the live buffer.
        let rc = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS) => {
                    std::fs::File::open("/dev/urandom")
                        .and_then(|mut f| f.read_exact(&mut buf))
                        .map_err(|e| io::Error::new(e.kind(), format!("reading /dev/urandom for the seed: {e}")))?;
                    return Ok(u64::from_ne_bytes(buf));
                }
                _ => return Err(io::Error::new(err.kind(), format!("getrandom for the seed: {err}"))),
            }
        }
        filled += rc as usize;
    }
    Ok(u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_up() {
        let now = Instant::from_micros(10_000);
        assert_eq!(timeout_ms(None, now), -1);
        assert_eq!(timeout_ms(Some(Instant::from_micros(5_000)), now), 0);
        assert_eq!(timeout_ms(Some(now), now), 0);
        assert_eq!(timeout_ms(Some(Instant::from_micros(10_001)), now), 1);
        assert_eq!(timeout_ms(Some(Instant::from_micros(11_000)), now), 1);
        assert_eq!(timeout_ms(Some(Instant::from_micros(11_001)), now), 2);
        assert_eq!(timeout_ms(Some(Instant::from_micros(u64::MAX)), now), c_int::MAX);
    }

    #[test]
    fn eventfd_kick_and_drain() {
        let e = EventFd::new().unwrap();
        let r = poll2(e.as_raw_fd(), -1, 0).unwrap();
        assert!(!r.a && !r.b);
        e.kick();
        e.kick();
        let r = poll2(-1, e.as_raw_fd(), 0).unwrap();
        assert!(r.b && !r.a);
        e.drain();
        let r = poll2(-1, e.as_raw_fd(), 0).unwrap();
        assert!(!r.b);
    }

    #[test]
    fn seeds_differ() {
        // Two 64-bit draws from the entropy source colliding has probability 2^-64.
        let a = random_seed().unwrap();
        let b = random_seed().unwrap();
        assert_ne!(a, b);
    }
}
