//! The runtime's system-call layer: everything that talks to the kernel directly.
//!
//! Most of it goes through `rustix`, which wraps system calls safely: an eventfd for
//! wake-ups, poll(2) on two descriptors, non-blocking mode, the OS entropy source. The
//! interface-configuration ioctls that no crate wraps live in `netdev`, the TUN ioctls
//! of the offload device (`TUNSETIFF` with `IFF_VNET_HDR`, `TUNSETVNETHDRSZ`,
//! `TUNSETOFFLOAD`, `IFF_MULTI_QUEUE`) in `tunq`, the steering program's `bpf(2)` load
//! and `TUNSETSTEERINGEBPF` in `bpf`, and `tun` holds
//! the two calls a safe wrapper could not hide (borrowing tun-tap's raw descriptor,
//! unsharing a network namespace): the only `unsafe` code of the crate, each block with
//! its SAFETY comment.

#[allow(unsafe_code)]
pub(crate) mod bpf;
#[allow(unsafe_code)]
pub(crate) mod netdev;
#[cfg(feature = "tokio")]
#[allow(unsafe_code)]
pub(crate) mod reactor;
#[allow(unsafe_code)]
mod tun;
#[allow(unsafe_code)]
pub(crate) mod tunq;

pub(crate) use tun::tun_fd;
#[cfg(test)]
pub(crate) use tun::unshare_netns;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;

use crate::time::Instant;

/// A non-blocking eventfd(2): `kick` makes it readable, `drain` resets it.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        let fd = rustix::event::eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(EventFd { fd })
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Add one to the counter. A full counter (EAGAIN) is already readable, so errors
    /// need no handling.
    pub(crate) fn kick(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Reset the counter to zero (EAGAIN when it already is).
    pub(crate) fn drain(&self) {
        let mut v = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut v);
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

/// poll(2) for input on up to two descriptors (`None` is not polled). `EINTR` is
/// reported as nothing ready. A negative `timeout_ms` waits without a limit.
pub(crate) fn poll2(a: Option<BorrowedFd<'_>>, b: Option<BorrowedFd<'_>>, timeout_ms: i32) -> io::Result<Ready> {
    let timeout = (timeout_ms >= 0)
        .then(|| Timespec { tv_sec: i64::from(timeout_ms / 1000), tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000 });
    let poll = |fds: &mut [PollFd<'_>]| match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    };
    let ready =
        |p: &PollFd<'_>| p.revents().intersects(PollFlags::IN | PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL);
    let input = |fd| PollFd::from_borrowed_fd(fd, PollFlags::IN);
    Ok(match (a, b) {
        (Some(a), Some(b)) => {
            let mut fds = [input(a), input(b)];
            if !poll(&mut fds)? {
                return Ok(Ready::default());
            }
            Ready { a: ready(&fds[0]), b: ready(&fds[1]) }
        }
        (Some(fd), None) | (None, Some(fd)) => {
            let mut fds = [input(fd)];
            if !poll(&mut fds)? {
                return Ok(Ready::default());
            }
            let r = ready(&fds[0]);
            Ready { a: r && a.is_some(), b: r && b.is_some() }
        }
        (None, None) => {
            poll(&mut [])?;
            Ready::default()
        }
    })
}

/// Milliseconds from `now` until `deadline`, rounded up so that the thread never wakes
/// before the deadline; -1 (wait forever) without a deadline.
pub(crate) fn timeout_ms(deadline: Option<Instant>, now: Instant) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let micros = d.total_micros().saturating_sub(now.total_micros());
            micros.div_ceil(1000).min(i32::MAX as u64) as i32
        }
    }
}

/// Put a descriptor in non-blocking mode (O_NONBLOCK).
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    if !flags.contains(OFlags::NONBLOCK) {
        rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    }
    Ok(())
}

/// Whether a descriptor is in non-blocking mode.
#[cfg(test)]
pub(crate) fn is_nonblocking(fd: impl AsFd) -> io::Result<bool> {
    Ok(rustix::fs::fcntl_getfl(&fd)?.contains(OFlags::NONBLOCK))
}

/// Eight bytes from the OS entropy source (getrandom(2)).
pub(crate) fn random_seed() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io::Error::new(io::Error::from(e).kind(), format!("getrandom for the seed: {e}"))),
        }
    }
    Ok(u64::from_ne_bytes(buf))
}

/// Whether the process runs as root (the effective user id is 0).
#[cfg(test)]
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
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
        assert_eq!(timeout_ms(Some(Instant::from_micros(u64::MAX)), now), i32::MAX);
    }

    #[test]
    fn eventfd_kick_and_drain() {
        let e = EventFd::new().unwrap();
        let r = poll2(Some(e.fd.as_fd()), None, 0).unwrap();
        assert!(!r.a && !r.b);
        e.kick();
        e.kick();
        let r = poll2(None, Some(e.fd.as_fd()), 0).unwrap();
        assert!(r.b && !r.a);
        e.drain();
        let r = poll2(None, Some(e.fd.as_fd()), 0).unwrap();
        assert!(!r.b);
        assert!(is_nonblocking(&e.fd).unwrap());
    }

    #[test]
    fn seeds_differ() {
        // Two 64-bit draws from the entropy source colliding has probability 2^-64.
        let a = random_seed().unwrap();
        let b = random_seed().unwrap();
        assert_ne!(a, b);
    }
}
