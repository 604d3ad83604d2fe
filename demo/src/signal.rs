//! Waiting for SIGINT / SIGTERM with the self-pipe trick: the handler only write(2)s
//! the signal number to a pipe (async-signal-safe); the main thread blocks reading it
//! and then shuts down in ordinary code.
//!
//! `install` also blocks both signals in the calling thread, and so in every thread
//! spawned after it (they inherit the mask); `wait` unblocks them in its own thread
//! only. The signals are thus delivered to the waiting thread and never interrupt the
//! runtime's or the servers' system calls with EINTR.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the pipe, read by the handler; -1 until `install`.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    // Only async-signal-safe calls here (signal-safety(7)); keep errno intact for the
    // code that was interrupted.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = signo as u8;
            libc::write(fd, &byte as *const u8 as *const libc::c_void, 1);
        }
        *errno = saved;
    }
}

/// Receives SIGINT and SIGTERM once installed.
pub struct ShutdownSignal {
    read_fd: libc::c_int,
}

impl ShutdownSignal {
    /// Create the pipe, install the handler for SIGINT and SIGTERM and block both in
    /// the calling thread. Call it before spawning threads, from the thread that will
    /// call [`ShutdownSignal::wait`].
    pub fn install() -> io::Result<ShutdownSignal> {
        let mut fds = [0 as libc::c_int; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The handler must never block: make only the write end non-blocking.
        unsafe {
            let flags = libc::fcntl(fds[1], libc::F_GETFL);
            if flags < 0 || libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
                let e = io::Error::last_os_error();
                libc::close(fds[0]);
                libc::close(fds[1]);
                return Err(e);
            }
        }
        PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        for signo in [libc::SIGINT, libc::SIGTERM] {
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                // SA_RESTART: other threads' blocking calls resume instead of failing
                // with EINTR.
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signo, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        set_mask(libc::SIG_BLOCK)?;
        Ok(ShutdownSignal { read_fd: fds[0] })
    }

    /// Block until SIGINT or SIGTERM arrives; returns the signal number.
    pub fn wait(&self) -> io::Result<libc::c_int> {
        // A signal that arrived while blocked is delivered (to this thread) right here.
        set_mask(libc::SIG_UNBLOCK)?;
        let mut byte = 0u8;
        loop {
            let n = unsafe { libc::read(self.read_fd, &mut byte as *mut u8 as *mut libc::c_void, 1) };
            match n {
                1 => return Ok(libc::c_int::from(byte)),
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "signal pipe closed")),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Block or unblock SIGINT and SIGTERM in the calling thread.
fn set_mask(how: libc::c_int) -> io::Result<()> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        // pthread_sigmask returns the error number instead of setting errno.
        match libc::pthread_sigmask(how, &set, std::ptr::null_mut()) {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// "SIGINT", "SIGTERM" or the number.
pub fn signal_name(signo: libc::c_int) -> String {
    match signo {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_sigterm_is_received() {
        // Installing replaces the default action (terminate), so raising is safe here.
        // The signal is blocked until wait() unblocks it, then handled there.
        let sig = ShutdownSignal::install().unwrap();
        unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(sig.wait().unwrap(), libc::SIGTERM);
        // wait() left the signals unblocked in this thread: a second one is handled too.
        unsafe { libc::raise(libc::SIGINT) };
        assert_eq!(sig.wait().unwrap(), libc::SIGINT);
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
