//! [`ShardedRuntime`]: thread per core. One OS thread per device queue, each with a
//! current-thread tokio runtime that drives its shard and runs one copy of the
//! application, which serves what its shard owns. Nothing crosses threads on the way
//! from the device to the application and back (the mTCP/Seastar shape).

use std::future::Future;
use std::io;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};

use ::tokio::sync::Notify;

use super::driver;
use crate::config::Config;
use crate::runtime::device::Device;
use crate::runtime::engine::Kick;
use crate::runtime::{start_shards, tun_devices, DeviceHandles, RuntimeConfig, RuntimeHandle};

/// A multi-queue runtime with a thread per shard: on each, a current-thread tokio
/// runtime runs the shard's driver task and `app(handle)`, where `handle` is pinned to
/// that shard ([`RuntimeHandle::pinned_shard`]): the application's listeners bind in
/// its shard only (use an explicit port: port 0 would give each copy its own) and
/// accept the connections the shard owns, its connections open from that shard, and
/// every task it spawns stays on that thread (`tokio::task::spawn_local` works, and so
/// does `tokio::spawn`). UDP sockets live in shard 0 whichever copy binds them.
///
/// Dropping it stops every shard, waits for the threads (the applications' tasks are
/// dropped with their runtimes) and removes the device. It dereferences to a handle
/// that is not pinned: snapshots over every shard, listeners in all of them.
pub struct ShardedRuntime {
    handle: RuntimeHandle,
    threads: Vec<JoinHandle<()>>,
}

impl ShardedRuntime {
    /// Create the TUN device with `config.queues` queues (in the calling thread's
    /// network namespace) and start a thread per queue running `app`. The errors are
    /// those of [`crate::runtime::Runtime::new`].
    pub fn new<F, Fut>(config: RuntimeConfig, app: F) -> io::Result<ShardedRuntime>
    where
        F: Fn(RuntimeHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let (devices, name, handles) = tun_devices(&config)?;
        let rt = ShardedRuntime::start(config.stack, devices, name, handles, app)?;
        tracing::info!(tun = %rt.handle.tun_name(), queues = rt.handle.shards(), "sharded runtime started");
        Ok(rt)
    }

    /// The same on any devices, one shard per device (see
    /// [`crate::runtime::Runtime::with_queues`]).
    pub fn with_queues<F, Fut>(devices: Vec<Box<dyn Device>>, stack: Config, app: F) -> io::Result<ShardedRuntime>
    where
        F: Fn(RuntimeHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let name = devices.first().map(|d| d.describe()).unwrap_or_default();
        let devices = devices.into_iter().map(Arc::from).collect();
        ShardedRuntime::start(stack, devices, name, DeviceHandles::default(), app)
    }

    fn start<F, Fut>(
        stack: Config,
        devices: Vec<Arc<dyn Device>>,
        name: String,
        handles: DeviceHandles,
        app: F,
    ) -> io::Result<ShardedRuntime>
    where
        F: Fn(RuntimeHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let notifies: Vec<Arc<Notify>> = devices.iter().map(|_| Arc::new(Notify::new())).collect();
        let kicks = notifies.iter().map(|n| Kick::Notify(Arc::clone(n))).collect();
        let handle = start_shards(stack, &devices, kicks, name, handles)?;
        let app = Arc::new(app);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let mut rt = ShardedRuntime { handle, threads: Vec::new() };
        for (i, (device, notify)) in devices.into_iter().zip(notifies).enumerate() {
            let shard = rt.handle.shard(i).pinned();
            let (app, ready) = (Arc::clone(&app), ready_tx.clone());
            let thread = thread::Builder::new().name(format!("tunstack-shard-{i}")).spawn(move || {
                let tokio_rt = match ::tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let local = ::tokio::task::LocalSet::new();
                local.block_on(&tokio_rt, async move {
                    // The reactor of this thread's runtime watches this shard's queue.
                    let fd = match driver::DeviceFd::register(&*device) {
                        Ok(fd) => fd,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let engine = Arc::clone(&shard.engine);
                    let drive = ::tokio::task::spawn_local(driver::drive(engine, device, fd, notify));
                    let _ = ready.send(Ok(()));
                    ::tokio::task::spawn_local(app(shard));
                    // The driver ends when the runtime stops; the application's tasks
                    // are dropped with the runtime.
                    let _ = drive.await;
                });
            });
            match thread {
                Ok(t) => rt.threads.push(t),
                // `rt` is dropped: the shards stop and the threads started so far end.
                Err(e) => return Err(e),
            }
        }
        drop(ready_tx);
        for _ in 0..rt.threads.len() {
            // A thread that ends before saying anything closes its sender.
            ready_rx.recv().map_err(|_| io::Error::other("a shard thread ended at start"))??;
        }
        Ok(rt)
    }

    /// A clonable handle (not pinned to a shard).
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }
}

impl Drop for ShardedRuntime {
    fn drop(&mut self) {
        for e in &self.handle.set.engines {
            e.stop();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!(device = %self.handle.engine.name, "a shard thread panicked");
            }
        }
        tracing::info!(device = %self.handle.engine.name, "sharded runtime stopped");
    }
}

impl AsRef<RuntimeHandle> for ShardedRuntime {
    fn as_ref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl std::ops::Deref for ShardedRuntime {
    type Target = RuntimeHandle;
    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl std::fmt::Debug for ShardedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedRuntime")
            .field("device", &self.handle.engine.name)
            .field("shards", &self.threads.len())
            .finish()
    }
}
