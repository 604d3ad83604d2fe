//! The blocking driver: one thread that waits (poll(2)) on the device's descriptor and
//! the engine's kick eventfd, with the next deadline as timeout, and runs the engine's
//! turns. (The tokio driver, `crate::tokio`, does the same with the reactor.)

use std::io;
use std::sync::Arc;

use super::device::Device;
use super::engine::{earliest, Engine, Kick, RX_BATCH};
use super::sys;
use super::tx::Role;
use super::wait::Unparks;
use crate::time::Instant;
use crate::RxChecksum;

/// Reusable receive buffers: `RX_BATCH` packets of up to `mtu` bytes each.
pub(crate) struct RxBatch {
    buf: Box<[u8]>,
    lens: [usize; RX_BATCH],
    checks: [RxChecksum; RX_BATCH],
    n: usize,
    mtu: usize,
}

impl RxBatch {
    pub(crate) fn new(mtu: usize) -> RxBatch {
        RxBatch {
            buf: vec![0u8; RX_BATCH * mtu].into_boxed_slice(),
            lens: [0; RX_BATCH],
            checks: [RxChecksum::Unverified; RX_BATCH],
            n: 0,
            mtu,
        }
    }

    /// Read packets until the device has none ready or the batch is full. An error
    /// other than `WouldBlock`/`Interrupted` means the device is gone.
    pub(crate) fn fill(&mut self, device: &dyn Device, now: Instant) -> io::Result<()> {
        while self.n < RX_BATCH {
            let slot = &mut self.buf[self.n * self.mtu..(self.n + 1) * self.mtu];
            match device.recv_checked(now, slot) {
                Ok((len, check)) => {
                    self.lens[self.n] = len;
                    self.checks[self.n] = check;
                    self.n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Forget the packets of the last turn.
    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.n == RX_BATCH
    }

    /// The packets read, each with what the device said about its checksum.
    pub(crate) fn packets(&self) -> impl Iterator<Item = (&[u8], RxChecksum)> + '_ {
        self.lens[..self.n]
            .iter()
            .zip(&self.checks)
            .enumerate()
            .map(|(i, (&len, &check))| (&self.buf[i * self.mtu..i * self.mtu + len], check))
    }
}

/// On any exit of the driver (shutdown, device lost, panic): mark the engine stopped
/// and wake every waiter, so no handle waits forever.
pub(crate) struct StopOnExit<'a>(pub(crate) &'a Engine);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(device = %self.0.name, "runtime driver panicked; runtime stopped");
        }
        self.0.stop();
    }
}

/// The driver thread's loop. It owns `device` (with the engine's write side, which
/// lets go of it on stop).
pub(crate) fn run(engine: Arc<Engine>, device: Arc<dyn Device>) {
    let _stop = StopOnExit(&engine);
    // Irrefutable without the `tokio` feature (then there is no other kind of kick).
    #[allow(irrefutable_let_patterns)]
    let Kick::EventFd(kick) = &engine.kick
    else {
        unreachable!("the thread driver is built with an eventfd kick");
    };
    let device = &*device;
    let mut rx = RxBatch::new(device.mtu());
    let mut timeout = 0; // first turn: ask the core for its deadline at once
    let mut unparks = Unparks::default();
    loop {
        let ready = match sys::poll2(Some(device.fd()), Some(kick.as_fd()), timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "poll failed; runtime stopped");
                return;
            }
        };
        if ready.b {
            kick.drain();
        }
        if engine.is_stopped() {
            return;
        }
        let now = engine.now();
        // Packets held back by middleware that are due now become readable too.
        let held_due = device.poll_at().is_some_and(|t| t <= now);
        device.poll(now);
        rx.clear();
        if let Err(e) = if ready.a || held_due { rx.fill(device, now) } else { Ok(()) } {
            // EBADFD: the interface was deleted under us (`ip link del`).
            tracing::error!(device = %engine.name, error = %e, "device read failed; runtime stopped");
            return;
        }
        let Some((deadline, role)) = engine.turn(device, now, rx.packets(), ready.b, &mut unparks) else { return };
        unparks.unpark_all();
        if role == Role::Write {
            engine.write_all();
        }
        // What was just written may be held back by the device (a delayed link).
        let deadline = earliest(deadline, device.poll_at());
        engine.driver_sleeps_until(deadline);
        // A full batch may have left more packets queued: look again without sleeping.
        timeout = if rx.is_full() { 0 } else { sys::timeout_ms(deadline, engine.now()) };
    }
}
