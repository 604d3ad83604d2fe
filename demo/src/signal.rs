//! Waiting for SIGINT / SIGTERM: `signal-hook` installs the handlers (which only write
//! to its self-pipe) and the main thread blocks on the pipe, then shuts down in
//! ordinary code. Other threads' blocking calls restart after the handler runs
//! (SA_RESTART); poll(2), which never restarts, reports EINTR to the runtime, which
//! treats it as a spurious wake-up.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Receives SIGINT and SIGTERM once installed.
pub struct ShutdownSignal {
    signals: Signals,
}

impl ShutdownSignal {
    /// Install the handlers for SIGINT and SIGTERM (replacing the default action, which
    /// terminates the process). Call it early, before the device exists, so that an
    /// early Ctrl-C is not lost.
    pub fn install() -> io::Result<ShutdownSignal> {
        Ok(ShutdownSignal { signals: Signals::new([SIGINT, SIGTERM])? })
    }

    /// Block until SIGINT or SIGTERM arrives; returns the signal number.
    pub fn wait(&mut self) -> io::Result<i32> {
        self.signals
            .forever()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "signal delivery stopped"))
    }
}

/// "SIGINT", "SIGTERM" or the number.
pub fn signal_name(signo: i32) -> String {
    match signo {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_sigterm_is_received() {
        // Installing replaces the default action (terminate), so raising is safe here.
        let mut sig = ShutdownSignal::install().unwrap();
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert_eq!(sig.wait().unwrap(), SIGTERM);
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert_eq!(sig.wait().unwrap(), SIGINT);
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
    }
}
