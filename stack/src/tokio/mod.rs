//! The async API (feature `tokio`): [`TcpListener`], [`TcpStream`] (tokio's
//! `AsyncRead + AsyncWrite`, so hyper, axum, tower and `tokio::io::copy` run on it) and
//! [`UdpSocket`], shaped like `tokio::net`'s.
//!
//! [`AsyncRuntime`] drives the stack from a tokio task: the device's descriptor is
//! registered with tokio's reactor (`AsyncFd`), so on a `current_thread` runtime the
//! packets and the application's tasks run on one thread without any hand-off; on the
//! multi-thread runtime the driver and the tasks take the engine's lock in turn. The
//! sockets take any [`RuntimeHandle`], so they also work on a thread-driven
//! [`crate::runtime::Runtime`], and the blocking `net` types work on an
//! `AsyncRuntime` (from threads other than the runtime's own).
//!
//! Errors are `std::io::Error` with std's kinds, as from `tokio::net`.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tunstack::runtime::RuntimeConfig;
//! use tunstack::tokio::{AsyncRuntime, TcpListener};
//!
//! let rt = AsyncRuntime::new(RuntimeConfig::default())?; // tun0, 10.0.0.2 and fd00::2
//! let listener = TcpListener::bind(&rt, "10.0.0.2:7")?;
//! loop {
//!     let (mut stream, _peer) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut buf = [0u8; 4096];
//!         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!             if stream.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

mod driver;
mod sharded;
mod tcp;
mod udp;

use std::fmt;
use std::io;
use std::sync::Arc;

use ::tokio::sync::Notify;
use ::tokio::task::JoinHandle;

pub use self::sharded::ShardedRuntime;
pub use self::tcp::{OwnedReadHalf, OwnedWriteHalf, TcpListener, TcpStream};

pub use self::udp::UdpSocket;
use crate::net::{each_addr, first_addr};

use crate::config::Config;
use crate::runtime::device::Device;
use crate::runtime::engine::{Engine, Kick};
use crate::runtime::{start_shards, tun_devices, DeviceHandles, RuntimeConfig, RuntimeHandle};
use crate::socket::{AnyHandle, Readiness, SocketHandle};

/// Owns the device and the tokio task that drives it. Create it from inside a tokio
/// runtime (it spawns the task there). Dropping it stops the driver and closes the
/// device, which removes a TUN interface; sockets that outlive it fail with
/// `NotConnected`. It dereferences to its [`RuntimeHandle`] for the snapshots.
pub struct AsyncRuntime {
    handle: RuntimeHandle,
    /// One driver task per shard.
    tasks: Vec<JoinHandle<()>>,
}

impl AsyncRuntime {
    /// Create the TUN device (in the calling thread's network namespace), configure it
    /// and spawn the driver task. The errors are those of
    /// [`crate::runtime::Runtime::new`]. Panics outside a tokio runtime.
    pub fn new(config: RuntimeConfig) -> io::Result<AsyncRuntime> {
        let (devices, name, handles) = tun_devices(&config)?;
        let rt = AsyncRuntime::start(config.stack, devices, name, handles)?;
        tracing::info!(tun = %rt.handle.tun_name(), mtu = config.mtu, queues = config.queues, "async runtime started");
        Ok(rt)
    }

    /// Drive the stack on any device (an in-memory link, a device wrapped in
    /// middleware...). `stack.mtu` is taken from the device. Panics outside a tokio
    /// runtime.
    pub fn with_device(device: impl Device, stack: Config) -> io::Result<AsyncRuntime> {
        let name = device.describe();
        AsyncRuntime::start(stack, vec![Arc::new(device)], name, DeviceHandles::default())
    }

    /// Drive one stack per device (the queues of one multi-queue device), each with
    /// its own driver task: the shards of [`crate::shard`]. On the multi-thread
    /// runtime the tasks run on whichever workers are free. Panics outside a tokio
    /// runtime.
    pub fn with_queues(devices: Vec<Box<dyn Device>>, stack: Config) -> io::Result<AsyncRuntime> {
        let name = devices.first().map(|d| d.describe()).unwrap_or_default();
        AsyncRuntime::start(stack, devices.into_iter().map(Arc::from).collect(), name, DeviceHandles::default())
    }

    fn start(
        stack: Config,
        devices: Vec<Arc<dyn Device>>,
        name: String,
        handles: DeviceHandles,
    ) -> io::Result<AsyncRuntime> {
        let notifies: Vec<Arc<Notify>> = devices.iter().map(|_| Arc::new(Notify::new())).collect();
        let kicks = notifies.iter().map(|n| Kick::Notify(Arc::clone(n))).collect();
        // Registering the descriptors needs the reactor: do it here so that an error
        // (or a missing runtime) shows at once, not in the task.
        let fds = devices.iter().map(|d| driver::DeviceFd::register(&**d)).collect::<io::Result<Vec<_>>>()?;
        let handle = start_shards(stack, &devices, kicks, name, handles)?;
        let tasks = devices
            .into_iter()
            .zip(fds)
            .zip(notifies)
            .enumerate()
            .map(|(i, ((device, fd), notify))| {
                ::tokio::spawn(driver::drive(Arc::clone(&handle.set.engines[i]), device, fd, notify))
            })
            .collect();
        Ok(AsyncRuntime { handle, tasks })
    }

    /// A clonable handle for socket constructors.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Stop the driver and wait until it has released the device (so that a TUN
    /// interface is gone when this returns).
    pub async fn shutdown(mut self) {
        for e in &self.handle.set.engines {
            e.stop();
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for AsyncRuntime {
    fn drop(&mut self) {
        // The task sees the stop at its next turn (the kick wakes it) and drops its
        // reference to the device then.
        for e in &self.handle.set.engines {
            e.stop();
        }
        tracing::info!(device = %self.handle.engine.name, "async runtime stopped");
    }
}

impl AsRef<RuntimeHandle> for AsyncRuntime {
    fn as_ref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl std::ops::Deref for AsyncRuntime {
    type Target = RuntimeHandle;
    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl fmt::Debug for AsyncRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRuntime").field("device", &self.handle.engine.name).finish()
    }
}

/// One socket held by the application, by its typed handle: closed (`Stack::close`)
/// when dropped.
struct Owned<H: Copy + Into<AnyHandle>> {
    /// The engine of the socket's shard (one pointer; see `net`'s `Sock`).
    engine: Arc<Engine>,
    h: H,
}

impl<H: Copy + Into<AnyHandle>> Owned<H> {
    /// The raw handle, which the engine's waiters use.
    fn raw(&self) -> SocketHandle {
        self.h.into().raw()
    }

    /// One call on the core; its typed error becomes an `io::Error` here, at the API
    /// boundary.
    fn call<T, E: Into<io::Error>>(&self, f: impl FnOnce(&mut crate::Stack, H) -> Result<T, E>) -> io::Result<T> {
        self.engine.call(|s, _| f(s, self.h).map_err(Into::into))
    }

    /// The async shape: `Pending` (with the task registered under the socket for
    /// `interest`) while `f` says `WouldBlock`.
    fn poll<T, E: Into<io::Error>>(
        &self,
        interest: Readiness,
        cx: &mut std::task::Context<'_>,
        f: impl FnOnce(&mut crate::Stack, H) -> Result<T, E>,
    ) -> std::task::Poll<io::Result<T>> {
        self.engine.poll_op(self.raw(), interest, cx, |s, _| f(s, self.h).map_err(Into::into))
    }
}

impl<H: Copy + Into<AnyHandle>> Drop for Owned<H> {
    fn drop(&mut self) {
        if let Err(e) = self.call(|s, h| s.close(h)) {
            tracing::trace!(handle = ?self.raw(), error = %e, "close on drop");
        }
    }
}

impl<H: Copy + Into<AnyHandle>> fmt::Debug for Owned<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw())
    }
}
