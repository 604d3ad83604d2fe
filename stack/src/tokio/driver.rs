//! The tokio driver: a task that waits on the device's descriptor (registered with
//! tokio's reactor as an `AsyncFd`), on the engine's kick (`Notify`) and on the next
//! deadline (a tokio `Sleep`), and runs the engine's turns, exactly as the driver
//! thread of `runtime::driver` does with poll(2).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::sync::Notify;

use crate::runtime::device::Device;
use crate::runtime::driver::{RxBatch, StopOnExit};
use crate::runtime::engine::{earliest, Engine};
use crate::runtime::sys;
use crate::runtime::wait::Unparks;
use crate::time::Instant;

/// The device's descriptor as the reactor sees it: a duplicate registered for read
/// readiness (it keeps the device's file open until the driver task ends).
pub(crate) struct DeviceFd(AsyncFd<OwnedFd>);

impl DeviceFd {
    pub(crate) fn register(device: &dyn Device) -> io::Result<DeviceFd> {
        Ok(DeviceFd(sys::reactor::register_readable(device.fd())?))
    }
}

/// A tunstack deadline as a tokio instant.
fn tokio_instant(engine: &Engine, at: Instant) -> ::tokio::time::Instant {
    ::tokio::time::Instant::from_std(engine.epoch + Duration::from_micros(at.total_micros()))
}

/// What woke the driver.
enum Wake {
    Device,
    Kick,
    Timer,
}

/// The driver task.
pub(crate) async fn drive(engine: Arc<Engine>, device: Arc<dyn Device>, fd: DeviceFd, notify: Arc<Notify>) {
    let _stop = StopOnExit(&engine);
    let device = &*device;
    let mut rx = RxBatch::new(device.mtu());
    let mut unparks = Unparks::default();
    // The first turn runs at once: it learns the core's deadline.
    let sleep = ::tokio::time::sleep_until(::tokio::time::Instant::now());
    ::tokio::pin!(sleep);
    let mut armed = true;
    loop {
        let mut ready = None;
        let wake = ::tokio::select! {
            biased;
            guard = fd.0.readable() => match guard {
                Ok(g) => {
                    ready = Some(g);
                    Wake::Device
                }
                Err(e) => {
                    tracing::error!(device = %engine.name, error = %e, "reactor failed; runtime stopped");
                    return;
                }
            },
            () = notify.notified() => Wake::Kick,
            () = &mut sleep, if armed => Wake::Timer,
        };
        if engine.is_stopped() {
            return;
        }
        let now = engine.now();
        // Packets held back by middleware that are due now become readable too.
        let held_due = device.poll_at().is_some_and(|t| t <= now);
        device.poll(now);
        rx.clear();
        if let Err(e) = if ready.is_some() || held_due { rx.fill(device, now) } else { Ok(()) } {
            tracing::error!(device = %engine.name, error = %e, "device read failed; runtime stopped");
            return;
        }
        if let Some(mut g) = ready {
            if !rx.is_full() {
                // The read ended in WouldBlock: wait for the reactor's next event.
                g.clear_ready();
            }
        }
        let kicked = matches!(wake, Wake::Kick);
        let Some((deadline, role)) = engine.turn(device, now, rx.packets(), kicked, &mut unparks) else { return };
        unparks.unpark_all();
        if role == crate::runtime::tx::Role::Write {
            engine.write_all();
        }
        // What was just written may be held back by the device (a delayed link).
        let deadline = earliest(deadline, device.poll_at());
        engine.driver_sleeps_until(deadline);
        armed = deadline.is_some();
        if let Some(d) = deadline {
            sleep.as_mut().reset(tokio_instant(&engine, d));
        }
        if rx.is_full() {
            // More packets may be waiting: give the woken tasks a turn, then read again
            // (the descriptor is still marked readable).
            ::tokio::task::yield_now().await;
        }
    }
}
