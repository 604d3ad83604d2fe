//! The runtime: a device, the sans-IO [`crate::Stack`], and a driver that moves packets
//! between them, shared by the blocking [`crate::net`] API and (with the `tokio`
//! feature) the async `crate::tokio` API.
//!
//! ```text
//!   device (TUN | in-memory | middleware: Impaired, Pcap)      see `device`
//!     <-> driver: a thread with poll(2) (Runtime)               see `driver`
//!               or a tokio task with AsyncFd (crate::tokio)
//!     <-> engine: the Stack behind a lock, per-socket waiters,   see `engine`
//!                 the device's write queue
//!     <-> net::{TcpListener, TcpStream, UdpSocket}: block a thread until ready
//!         tokio::{TcpListener, TcpStream, UdpSocket}: register a waker until ready
//! ```
//!
//! Handles lock the engine only for the duration of one call; no lock is held while
//! waiting. Packets are taken from the core under its lock but written to the device
//! after the lock is released, by one writer at a time, in order (see `runtime/tx.rs`).
//! A blocked call or a pending task waits for its own socket only:
//! `Stack::poll_readiness` names the sockets whose readiness rose (readable, writable,
//! acceptable, closed) and only what is registered under those for that readiness is
//! woken (see `runtime/wait.rs`). The driver is kicked only
//! when a call moved the core's deadline earlier than the one it sleeps towards.
//!
//! # Network namespaces
//!
//! A TUN device is created, and its addresses are configured, in the network namespace
//! of the thread that calls [`Runtime::new`]. Tests that must not touch the host's
//! namespace move one thread into a fresh namespace first (`unshare(CLONE_NEWNET)` or
//! `setns` to a namespace from `ip netns add`) and create the runtime from that thread.
//! The driver only reads and writes the device's descriptor, so which namespace it sits
//! in does not matter; kernel sockets that talk to the stack must be opened from a
//! thread in the device's namespace.
//!
//! # Impairment and capture
//!
//! With [`RuntimeConfig::impair`] set, the TUN device is wrapped in
//! [`device::Impaired`] (loss, reordering, duplication, corruption, delay, rate; the
//! link model of [`crate::link`]); with [`RuntimeConfig::pcap`], in [`device::Pcap`], which writes every
//! packet the stack reads or writes to a capture file. Any [`device::Device`] can be
//! wrapped the same way and given to [`Runtime::with_device`].

pub mod device;
pub mod ifconfig;

pub(crate) mod driver;
pub(crate) mod engine;
mod setup;
pub(crate) mod sys;
pub(crate) mod tx;
pub(crate) mod wait;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use ipnet::IpNet;

use crate::config::Config;
use crate::policy::{Policy, PolicyError};
use crate::socket::{Readiness, SocketHandle, SocketInfo};
use crate::stack::{Stack, Stats};
use crate::time::Instant;

use self::device::{Device, ImpairHandle, Impaired, OffloadCounters, Pcap, TunDevice, TunOffloadDevice};
pub use self::device::{ImpairmentStats, OffloadStats};
use self::engine::{Engine, Kick};
use self::sys::EventFd;
pub(crate) use self::wait::WaitMode;

/// The link model the impairment applies, re-exported from the core ([`crate::link`]).
pub use crate::link::{ImpairCounters, Impairer, Impairment};

/// What the runtime needs to create and configure the TUN device.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Interface name (default "tun0"). At most 15 bytes; `%d` lets the kernel pick a
    /// number (see [`RuntimeHandle::tun_name`] for the result).
    pub tun_name: String,
    /// MTU set on the device and used by the stack.
    pub mtu: usize,
    /// Addresses (with prefix length) given to the kernel's side of the TUN device, so
    /// the host can route to the stack's addresses (e.g. 10.0.0.1/24, fd00::1/64; the
    /// host bits are the kernel's address, not masked off).
    /// At most one IPv4 address; any number of IPv6 addresses.
    pub host_addrs: Vec<IpNet>,
    /// The core's configuration; `stack.addrs` are the stack's own addresses and
    /// `stack.mtu` is overwritten with `mtu`. A zero `stack.seed` is replaced with one
    /// read from the OS entropy source.
    pub stack: Config,
    /// Impair the link in both directions (see [`crate::link`]); `None` (the default) passes
    /// every packet straight through.
    pub impair: Option<Impairment>,
    /// Write every packet the stack reads or writes to this pcap file (LINKTYPE_RAW;
    /// see [`device::Pcap`]). With `impair`, the capture sees the stack's side of the
    /// impaired link.
    pub pcap: Option<PathBuf>,
    /// Open the TUN device with the virtio-net header and TCP segmentation and
    /// checksum offload ([`device::TunOffloadDevice`]): the kernel hands over and takes
    /// TCP super-segments of up to 64 KiB, cut and coalesced at the device edge. When
    /// the kernel refuses, the runtime logs it and uses the plain device. Default off.
    pub offload: bool,
}

impl RuntimeConfig {
    /// Change some fields of this value and return it: how code outside the crate
    /// writes what a struct literal with `..` would (the type is `#[non_exhaustive]`,
    /// so fields can be added without breaking callers), e.g.
    /// `RuntimeConfig::default().with(|c| { c.a = x; c.b = y; })`.
    #[must_use]
    pub fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            tun_name: "tun0".into(),
            mtu: 1500,
            host_addrs: vec!["10.0.0.1/24".parse().unwrap(), "fd00::1/64".parse().unwrap()],
            stack: Config { addrs: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()], ..Config::default() },
            impair: None,
            pcap: None,
            offload: false,
        }
    }
}

/// Handles into the device and its middleware that the runtime's handle reports from.
#[derive(Default)]
pub(crate) struct DeviceHandles {
    pub(crate) impair: Option<ImpairHandle>,
    pub(crate) offload: Option<Arc<OffloadCounters>>,
}

/// Owns the device and its driver thread. Dropping it (or [`Runtime::shutdown`]) stops
/// the thread and closes the device, which removes a TUN interface; handles that
/// outlive it fail with `NotConnected` ("runtime shut down"). It dereferences to its
/// [`RuntimeHandle`] for the snapshots (`sockets`, `stats`, `counters`...).
pub struct Runtime {
    handle: RuntimeHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, clonable reference to a running runtime (thread- or tokio-driven): what
/// the `net` and `tokio` handles hold. It does not keep the device alive: once the
/// runtime is dropped, calls through a handle fail with `NotConnected`.
#[derive(Clone)]
pub struct RuntimeHandle {
    pub(crate) engine: Arc<Engine>,
}

/// What the runtime did since it started: how often its driver ran and was kicked, how
/// often application threads or tasks waited and were woken. For tuning and tests;
/// every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeCounters {
    /// Turns of the driver (one per wake-up: packets, a deadline or a kick).
    pub turns: u64,
    /// Turns that found the driver kicked.
    pub kicked_turns: u64,
    /// Packets read from the device.
    pub packets_read: u64,
    /// Kicks by API calls that moved the core's deadline earlier.
    pub kicks: u64,
    /// Kicks by API calls that left packets for the driver to send (the tokio driver
    /// sends what its tasks produced at its next turn, see `Engine::settle`).
    pub flush_kicks: u64,
    /// Times a thread parked or a task registered its waker under a socket.
    pub waits: u64,
    /// Threads unparked or tasks woken because their socket's readiness changed (or at
    /// shutdown).
    pub wakeups: u64,
}

/// Build the TUN device with the middleware the configuration asks for. Returns the
/// device, its interface name and the handles (impairment, offload counters).
pub(crate) fn tun_device(config: &RuntimeConfig) -> io::Result<(Arc<dyn Device>, String, DeviceHandles)> {
    tun_device_with(config, TunOffloadDevice::create)
}

/// [`tun_device`] with the way the offload device is opened as a parameter (tests make
/// the kernel "refuse" with it).
pub(crate) fn tun_device_with(
    config: &RuntimeConfig,
    open_offload: impl FnOnce(&str, usize) -> io::Result<TunOffloadDevice>,
) -> io::Result<(Arc<dyn Device>, String, DeviceHandles)> {
    setup::validate(&config.tun_name, config.mtu, &config.host_addrs, &config.stack.addrs)?;
    if let Some(imp) = &config.impair {
        imp.validate()?;
    }
    let mut handles = DeviceHandles::default();
    let offload = if config.offload {
        match open_offload(&config.tun_name, config.mtu) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(tun = %config.tun_name, error = %e, "the kernel refused TUN offloads; using the plain TUN device");
                None
            }
        }
    } else {
        None
    };
    let (tun, name): (Box<dyn Device>, String) = match offload {
        Some(d) => {
            handles.offload = Some(d.counters());
            let name = d.name().to_owned();
            (Box::new(d), name)
        }
        None => {
            let d = TunDevice::create(&config.tun_name, config.mtu)?;
            let name = d.name().to_owned();
            (Box::new(d), name)
        }
    };
    // On error `tun` is dropped on the way out, which removes the half-configured device.
    setup::configure(&name, config.mtu, &config.host_addrs)?;
    let dev: Box<dyn Device> = match &config.impair {
        None => tun,
        Some(cfg) => {
            let d = Impaired::new(tun, cfg.clone())?;
            handles.impair = Some(d.handle());
            Box::new(d)
        }
    };
    let dev: Box<dyn Device> = match &config.pcap {
        None => dev,
        Some(path) => Box::new(Pcap::create(dev, path)?),
    };
    Ok((Arc::from(dev), name, handles))
}

/// The stack for a device: `config.mtu` follows the device; a zero seed is replaced
/// with one from the OS entropy source.
pub(crate) fn new_stack(mut config: Config, device: &dyn Device) -> io::Result<Stack> {
    config.mtu = device.mtu();
    if config.seed == 0 {
        config.seed = sys::random_seed()?;
    }
    Ok(Stack::new(config))
}

impl RuntimeHandle {
    /// The device's name (the TUN interface's actual name).
    pub fn tun_name(&self) -> &str {
        &self.engine.name
    }

    /// What the runtime drives (the device with its middleware).
    pub fn device_description(&self) -> &str {
        &self.engine.description
    }

    /// False once the runtime shut down (or stopped because the device went away).
    pub fn is_running(&self) -> bool {
        !self.engine.is_stopped()
    }

    /// Snapshot of every socket (see `Stack::sockets`). Still answers after shutdown.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.engine.lock_any().stack.sockets()
    }

    /// Read anything from the core under its lock (a dashboard, diagnostics): `f` gets
    /// the stack read-only and should be quick, since every socket waits for it. Still
    /// answers after shutdown.
    pub fn inspect<T>(&self, f: impl FnOnce(&Stack) -> T) -> T {
        f(&self.engine.lock_any().stack)
    }

    /// Install (or, with `None`, remove) the packet policy from its text form (see
    /// [`crate::policy::text`]): filter rules, port knocking, scan detection. It replaces
    /// the previous one, counters included; established flows are not affected.
    pub fn set_policy(&self, text: Option<&str>) -> Result<(), PolicyError> {
        let mut core = self.engine.lock_any();
        let policy = text.map(|t| Policy::parse(t, core.stack.policy_key())).transpose()?;
        core.stack.set_policy(policy);
        Ok(())
    }

    /// See [`Stack::report_probe`]: for a gateway, a relayed connection refused beyond
    /// the stack.
    pub fn report_probe(&self, src: std::net::IpAddr, port: u16, kind: crate::policy::scan::ProbeKind) {
        self.engine.lock_any().stack.report_probe(src, port, kind);
    }

    /// Snapshot of the core's counters. Still answers after shutdown.
    pub fn stats(&self) -> Stats {
        self.engine.lock_any().stack.stats().clone()
    }

    /// The control block of any TCP connection by its raw handle (a row of
    /// [`sockets`](Self::sockets)), also one another part of the program holds (a
    /// server's): the `ss -i` of this stack. `NotFound` for a stale handle or another
    /// kind of socket.
    pub fn tcp_info(&self, h: SocketHandle) -> io::Result<crate::TcpInfo> {
        let inner = self.engine.lock_any();
        match inner.stack.resolve(h) {
            Some(crate::AnyHandle::Tcp(t)) => Ok(inner.stack.tcp_info(t)?),
            _ => Err(crate::InvalidHandle.into()),
        }
    }

    /// What the impairment layer did in each direction; `None` without one. Still
    /// answers after shutdown.
    pub fn impairment_stats(&self) -> Option<ImpairmentStats> {
        self.engine.impair.as_ref().map(ImpairHandle::stats)
    }

    /// What the offload device did (super-segments cut and coalesced, drops); `None`
    /// unless the runtime drives a [`device::TunOffloadDevice`]. Still answers after
    /// shutdown.
    pub fn offload_stats(&self) -> Option<OffloadStats> {
        self.engine.offload.as_ref().map(|c| c.snapshot())
    }

    /// The runtime's own counters (turns, kicks, waits, wakeups). Still answers after
    /// shutdown.
    pub fn counters(&self) -> RuntimeCounters {
        self.engine.lock_any().counters
    }

    /// Run one core call under the lock and send whatever it produced.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut Stack, Instant) -> io::Result<T>) -> io::Result<T> {
        self.engine.call(f)
    }

    /// See [`Engine::block`].
    pub(crate) fn block<T>(
        &self,
        h: SocketHandle,
        mode: WaitMode,
        interest: Readiness,
        nonblocking: bool,
        timeout: Option<Duration>,
        f: impl FnMut(&mut Stack, Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        self.engine.block(h, mode, interest, nonblocking, timeout, f)
    }
}

impl AsRef<RuntimeHandle> for RuntimeHandle {
    fn as_ref(&self) -> &RuntimeHandle {
        self
    }
}

impl AsRef<RuntimeHandle> for Runtime {
    fn as_ref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl std::ops::Deref for Runtime {
    type Target = RuntimeHandle;
    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle").field("device", &self.engine.name).field("running", &self.is_running()).finish()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("device", &self.handle.engine.name).finish()
    }
}

impl Runtime {
    /// Create the TUN device, configure addresses, MTU and link state, start the
    /// driver thread.
    ///
    /// Everything happens in the network namespace of the calling thread (see the
    /// module documentation). Errors: `InvalidInput` for a bad configuration (name,
    /// MTU, prefix length, a host address equal to one of the stack's), `Unsupported`
    /// for a second IPv4 host address, `NotFound` without `/dev/net/tun`,
    /// `PermissionDenied` without CAP_NET_ADMIN, `AddrInUse` when another process holds
    /// the device.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        let (device, name, handles) = tun_device(&config)?;
        let rt = Runtime::start(config.stack, device, name, handles)?;
        match &config.impair {
            None => tracing::info!(tun = %rt.tun_name(), mtu = config.mtu, "runtime started"),
            Some(imp) => {
                tracing::info!(tun = %rt.tun_name(), mtu = config.mtu, impairment = %imp, "runtime started (impaired link)")
            }
        }
        Ok(rt)
    }

    /// Drive the stack on any device (an in-memory link, a device wrapped in
    /// middleware...) with a driver thread. `stack.mtu` is taken from the device.
    pub fn with_device(device: impl Device, stack: Config) -> io::Result<Runtime> {
        let name = device.describe();
        Runtime::start(stack, Arc::new(device), name, DeviceHandles::default())
    }

    fn start(stack: Config, device: Arc<dyn Device>, name: String, handles: DeviceHandles) -> io::Result<Runtime> {
        let stack = new_stack(stack, &*device)?;
        let engine = Arc::new(Engine::new(stack, &device, Kick::EventFd(EventFd::new()?), name, handles));
        let thread_engine = Arc::clone(&engine);
        let thread = thread::Builder::new()
            .name(format!("tunstack-{}", engine.name.chars().take(6).collect::<String>()))
            .spawn(move || driver::run(thread_engine, device))?;
        Ok(Runtime { handle: RuntimeHandle { engine }, thread: Some(thread) })
    }

    /// A clonable handle for `net` constructors and for other threads.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Stop the thread and remove the device (also done by `Drop`).
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let engine = &self.handle.engine;
        engine.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(device = %engine.name, "runtime thread panicked");
            }
        }
        if let Some(stats) = self.handle.impairment_stats() {
            tracing::debug!(device = %engine.name, %stats, "impairment at stop");
        }
        tracing::info!(device = %engine.name, "runtime stopped");
    }
}

#[cfg(test)]
pub(crate) mod tests;
