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
pub(crate) mod shards;
pub(crate) mod steer;
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
use self::shards::{Inboxes, ShardSet};
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
    /// Queues of the TUN device (`IFF_MULTI_QUEUE`), each with its own stack and driver
    /// (a shard, see [`crate::shard`]); 1 (the default) is one ordinary device. At most
    /// [`crate::shard::MAX_SHARDS`]. With more than one, `impair` and `pcap` are not
    /// available (`InvalidInput`), and every shard's stack gets `stack` as its
    /// configuration, so the caps in it (sockets, buffer memory, half-open connections,
    /// reassembly memory) apply per shard. The default stays 1 because on a machine
    /// that also runs the application's clients, more shards can cost more than they
    /// bring (see `docs/bench-shards.md`); `demo` defaults to one per two cores.
    pub queues: usize,
    /// With several queues: give the device a steering program (eBPF,
    /// `TUNSETSTEERINGEBPF`) that delivers every TCP flow to the shard that owns it.
    /// Off, or when the kernel refuses it, the kernel picks queues by its own hash and
    /// flow table and the shards hand over what reaches the wrong one. Default on.
    pub steering: bool,
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
            queues: 1,
            steering: true,
        }
    }
}

/// Handles into the device and its middleware that the runtime's handle reports from.
#[derive(Default)]
pub(crate) struct DeviceHandles {
    pub(crate) impair: Option<ImpairHandle>,
    pub(crate) offload: Option<Arc<OffloadCounters>>,
    /// For a multi-queue device: the shards' ownership key, which its steering program
    /// computes with (when the kernel took the program).
    pub(crate) shard_key: Option<crate::rand::SipKey>,
    pub(crate) steering: bool,
}

/// Owns the device and its driver thread. Dropping it (or [`Runtime::shutdown`]) stops
/// the thread and closes the device, which removes a TUN interface; handles that
/// outlive it fail with `NotConnected` ("runtime shut down"). It dereferences to its
/// [`RuntimeHandle`] for the snapshots (`sockets`, `stats`, `counters`...).
pub struct Runtime {
    handle: RuntimeHandle,
    /// One driver thread per shard.
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, clonable reference to a running runtime (thread- or tokio-driven): what
/// the `net` and `tokio` handles hold. It does not keep the device alive: once the
/// runtime is dropped, calls through a handle fail with `NotConnected`.
///
/// With several queues ([`RuntimeConfig::queues`]) the snapshots (`sockets`, `stats`,
/// `counters`...) cover every shard; a socket's handle names its shard
/// ([`SocketHandle::shard`]).
#[derive(Clone)]
pub struct RuntimeHandle {
    /// The shard this handle's calls go to (a socket's own).
    pub(crate) engine: Arc<Engine>,
    pub(crate) set: Arc<ShardSet>,
    /// Pinned to its shard (an application running once per shard, on the shard's own
    /// thread: `tokio::ShardedRuntime`): listeners bind in this shard only and
    /// connections open from it.
    pub(crate) pinned: bool,
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
    /// Packets read by this shard's queue that another shard owns, handed to it
    /// (multi-queue runtimes, see `RuntimeConfig::queues`).
    pub handoffs_out: u64,
    /// Packets other shards handed to this one.
    pub handoffs_in: u64,
    /// Packets not handed over because the owner's inbox was full.
    pub handoff_drops: u64,
}

impl RuntimeCounters {
    /// Add another shard's counters to these.
    pub fn merge(&mut self, o: &RuntimeCounters) {
        let RuntimeCounters {
            turns,
            kicked_turns,
            packets_read,
            kicks,
            flush_kicks,
            waits,
            wakeups,
            handoffs_out,
            handoffs_in,
            handoff_drops,
        } = *o;
        self.turns += turns;
        self.kicked_turns += kicked_turns;
        self.packets_read += packets_read;
        self.kicks += kicks;
        self.flush_kicks += flush_kicks;
        self.waits += waits;
        self.wakeups += wakeups;
        self.handoffs_out += handoffs_out;
        self.handoffs_in += handoffs_in;
        self.handoff_drops += handoff_drops;
    }
}

/// The devices of a runtime (one per queue), the interface's name, and the handles.
pub(crate) type TunDevices = (Vec<Arc<dyn Device>>, String, DeviceHandles);

/// Build the TUN device with the middleware the configuration asks for: one device per
/// queue. Returns the devices, the interface's name and the handles (impairment, offload
/// counters).
pub(crate) fn tun_devices(config: &RuntimeConfig) -> io::Result<TunDevices> {
    if config.queues == 1 {
        let (dev, name, handles) = tun_device_with(config, TunOffloadDevice::create)?;
        return Ok((vec![dev], name, handles));
    }
    if config.queues == 0 || config.queues > usize::from(crate::shard::MAX_SHARDS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} queues: between 1 and {} are possible", config.queues, crate::shard::MAX_SHARDS),
        ));
    }
    if config.impair.is_some() || config.pcap.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "link impairment and packet capture need a single queue (queues = 1)",
        ));
    }
    setup::validate(&config.tun_name, config.mtu, &config.host_addrs, &config.stack.addrs)?;
    let mut handles = DeviceHandles::default();
    let offload = try_offload(config, || TunOffloadDevice::create_queues(&config.tun_name, config.mtu, config.queues));
    let (devices, name): (Vec<Arc<dyn Device>>, String) = match offload {
        Some(d) => {
            handles.offload = Some(d[0].counters());
            let name = d[0].name().to_owned();
            (d.into_iter().map(|d| Arc::new(d) as Arc<dyn Device>).collect(), name)
        }
        None => {
            let d = TunDevice::create_queues(&config.tun_name, config.mtu, config.queues)?;
            let name = d[0].name().to_owned();
            (d.into_iter().map(|d| Arc::new(d) as Arc<dyn Device>).collect(), name)
        }
    };
    setup::configure(&name, config.mtu, &config.host_addrs)?;
    // The ownership key, and the steering program that makes the kernel deliver each
    // flow to its owner (`runtime/steer.rs`); without it the shards hand packets over.
    let mut rng = crate::rand::Rng::new(sys::random_seed()?);
    let key = crate::rand::SipKey::from_rng(&mut rng);
    let rule = crate::shard::Shard::new(0, devices.len() as u16, key).expect("queue count checked above");
    if config.steering {
        let steered = sys::bpf::load_socket_filter(&steer::program(&rule))
            .and_then(|prog| sys::bpf::set_steering(devices[0].fd(), &prog));
        match steered {
            Ok(()) => handles.steering = true,
            Err(e) => {
                tracing::warn!(tun = %name, error = %e, "no steering program for the TUN queues; the shards hand packets over")
            }
        }
    }
    handles.shard_key = Some(key);
    Ok((devices, name, handles))
}

/// With `config.offload`, what `open` makes (the offload device or its queues); `None`
/// without, or (logged) when the kernel refuses, and the caller opens the plain device.
fn try_offload<T>(config: &RuntimeConfig, open: impl FnOnce() -> io::Result<T>) -> Option<T> {
    if !config.offload {
        return None;
    }
    open()
        .map_err(|e| {
            tracing::warn!(tun = %config.tun_name, error = %e, "the kernel refused TUN offloads; using the plain TUN device")
        })
        .ok()
}

/// [`tun_devices`] (one queue) with the way the offload device is opened as a parameter (tests make
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
    let offload = try_offload(config, || open_offload(&config.tun_name, config.mtu));
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

    /// False once the runtime shut down (or stopped because the device, or one of its
    /// queues, went away).
    pub fn is_running(&self) -> bool {
        self.set.engines.iter().all(|e| !e.is_stopped())
    }

    /// How many shards (device queues, each with its own stack) the runtime has.
    pub fn shards(&self) -> usize {
        self.set.engines.len()
    }

    /// Whether the kernel delivers every TCP flow to the shard that owns it (a
    /// multi-queue TUN device took the runtime's steering program, see
    /// [`crate::shard`]); without it, packets that reach the wrong shard are handed
    /// over (`RuntimeCounters::handoffs_out`). False with one queue.
    pub fn steering(&self) -> bool {
        self.set.engines[0].steering
    }

    /// A handle whose calls go to shard `i` (panics if there is no such shard).
    pub(crate) fn shard(&self, i: usize) -> RuntimeHandle {
        RuntimeHandle { engine: Arc::clone(&self.set.engines[i]), set: Arc::clone(&self.set), pinned: false }
    }

    /// This shard's handle, pinned to it (see the `pinned` field).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn pinned(&self) -> RuntimeHandle {
        RuntimeHandle { pinned: true, ..self.clone() }
    }

    /// The shard this handle is pinned to, if it is (`tokio::ShardedRuntime` gives
    /// each copy of the application such a handle).
    pub fn pinned_shard(&self) -> Option<usize> {
        self.pinned.then(|| self.set.engines.iter().position(|e| Arc::ptr_eq(e, &self.engine)).unwrap_or(0))
    }

    /// Where a listener binds: every shard, or only this one when pinned.
    pub(crate) fn listen_shards(&self) -> Vec<RuntimeHandle> {
        if self.pinned {
            vec![self.clone()]
        } else {
            self.each_shard().collect()
        }
    }

    /// Every shard, in order (one for a single-queue runtime).
    pub(crate) fn each_shard(&self) -> impl Iterator<Item = RuntimeHandle> + '_ {
        (0..self.shards()).map(|i| self.shard(i))
    }

    /// Where a new connection goes: the next shard round robin (which picks a port
    /// whose 4-tuple it owns); this handle's own without shards.
    pub(crate) fn shard_for_connect(&self) -> RuntimeHandle {
        match self.set.rule {
            Some(_) if !self.pinned => self.shard(self.set.next()),
            _ => self.clone(),
        }
    }

    /// Snapshot of every socket of every shard (see `Stack::sockets`). Still answers
    /// after shutdown.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        let mut v = Vec::new();
        for e in &self.set.engines {
            v.extend(e.lock_any().stack.sockets());
        }
        v
    }

    /// Read anything from the core under its lock (a dashboard, diagnostics): `f` gets
    /// the stack read-only and should be quick, since every socket waits for it. Still
    /// answers after shutdown. With several shards this is shard 0's stack (which holds
    /// the UDP sockets); [`inspect_each`](Self::inspect_each) visits all of them.
    pub fn inspect<T>(&self, f: impl FnOnce(&Stack) -> T) -> T {
        f(&self.set.engines[0].lock_any().stack)
    }

    /// [`inspect`](Self::inspect) every shard's stack in turn.
    pub fn inspect_each(&self, mut f: impl FnMut(&Stack)) {
        for e in &self.set.engines {
            f(&e.lock_any().stack);
        }
    }

    /// Install (or, with `None`, remove) the packet policy from its text form (see
    /// [`crate::policy::text`]): filter rules, port knocking, scan detection. It replaces
    /// the previous one, counters included; established flows are not affected. With
    /// several shards every shard gets it, and the stateful parts (knock sequences,
    /// scan detection) see only the flows their shard owns.
    pub fn set_policy(&self, text: Option<&str>) -> Result<(), PolicyError> {
        for e in &self.set.engines {
            let mut core = e.lock_any();
            let policy = text.map(|t| Policy::parse(t, core.stack.policy_key())).transpose()?;
            core.stack.set_policy(policy);
        }
        Ok(())
    }

    /// See [`Stack::report_probe`]: for a gateway, a relayed connection refused beyond
    /// the stack. (Shard 0's scan detector hears it.)
    pub fn report_probe(&self, src: std::net::IpAddr, port: u16, kind: crate::policy::scan::ProbeKind) {
        self.set.engines[0].lock_any().stack.report_probe(src, port, kind);
    }

    /// Snapshot of the core's counters, summed over the shards. Still answers after
    /// shutdown.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for e in &self.set.engines {
            total.merge(e.lock_any().stack.stats());
        }
        total
    }

    /// The control block of any TCP connection by its raw handle (a row of
    /// [`sockets`](Self::sockets)), also one another part of the program holds (a
    /// server's): the `ss -i` of this stack. `NotFound` for a stale handle or another
    /// kind of socket.
    pub fn tcp_info(&self, h: SocketHandle) -> io::Result<crate::TcpInfo> {
        let Some(engine) = self.set.engines.get(usize::from(h.shard())) else {
            return Err(crate::InvalidHandle.into());
        };
        let inner = engine.lock_any();
        match inner.stack.resolve(h) {
            Some(crate::AnyHandle::Tcp(t)) => Ok(inner.stack.tcp_info(t)?),
            _ => Err(crate::InvalidHandle.into()),
        }
    }

    /// What the impairment layer did in each direction; `None` without one. Still
    /// answers after shutdown.
    pub fn impairment_stats(&self) -> Option<ImpairmentStats> {
        self.set.engines[0].impair.as_ref().map(ImpairHandle::stats)
    }

    /// What the offload device did (super-segments cut and coalesced, drops); `None`
    /// unless the runtime drives a [`device::TunOffloadDevice`]. Still answers after
    /// shutdown.
    pub fn offload_stats(&self) -> Option<OffloadStats> {
        self.set.engines[0].offload.as_ref().map(|c| c.snapshot())
    }

    /// The runtime's own counters (turns, kicks, waits, wakeups, hand-offs), summed
    /// over the shards. Still answers after shutdown.
    pub fn counters(&self) -> RuntimeCounters {
        let mut total = RuntimeCounters::default();
        for e in &self.set.engines {
            total.merge(&e.lock_any().counters);
        }
        total
    }

    /// [`counters`](Self::counters) of each shard, in order.
    pub fn shard_counters(&self) -> Vec<RuntimeCounters> {
        self.set.engines.iter().map(|e| e.lock_any().counters).collect()
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

/// The engines of a runtime over `devices` (one shard per device, or a plain engine for
/// one device), each woken through its `kicks` entry.
pub(crate) fn start_shards(
    mut stack: Config,
    devices: &[Arc<dyn Device>],
    kicks: Vec<Kick>,
    name: String,
    handles: DeviceHandles,
) -> io::Result<RuntimeHandle> {
    let n = devices.len();
    if n == 0 || n > usize::from(crate::shard::MAX_SHARDS) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{n} devices for one runtime")));
    }
    if n == 1 {
        let engine =
            Arc::new(Engine::new(new_stack(stack, &*devices[0])?, &devices[0], kicks[0].clone(), name, handles, None));
        return Ok(RuntimeHandle {
            engine: Arc::clone(&engine),
            set: Arc::new(ShardSet::new(vec![engine], None)),
            pinned: false,
        });
    }
    if stack.seed == 0 {
        stack.seed = sys::random_seed()?;
    }
    // One ownership key for all shards (the steering program's, if there is one); each
    // stack its own seed (ISNs, ports, cookies).
    let mut rng = crate::rand::Rng::new(stack.seed ^ 0x7368_6172_645f_6b65);
    let derived = crate::rand::SipKey::from_rng(&mut rng);
    let key = handles.shard_key.unwrap_or(derived);
    let inboxes = Arc::new(Inboxes::new(kicks.clone()));
    let mut engines = Vec::with_capacity(n);
    let mut rule = None;
    for (i, device) in devices.iter().enumerate() {
        let shard = crate::shard::Shard::new(i as u16, n as u16, key).expect("checked above");
        rule = Some(shard);
        let cfg = stack.clone().with(|c| {
            c.seed = rng.next_u64() | 1;
            c.shard = Some(shard);
        });
        engines.push(Arc::new(Engine::new(
            new_stack(cfg, &**device)?,
            device,
            kicks[i].clone(),
            name.clone(),
            // The offload counters are shared by the queues: shard 0 reports them.
            if i == 0 {
                DeviceHandles {
                    offload: handles.offload.clone(),
                    steering: handles.steering,
                    ..DeviceHandles::default()
                }
            } else {
                DeviceHandles::default()
            },
            Some((i, Arc::clone(&inboxes))),
        )));
    }
    let engine = Arc::clone(&engines[0]);
    Ok(RuntimeHandle { engine, set: Arc::new(ShardSet::new(engines, rule)), pinned: false })
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
        let (devices, name, handles) = tun_devices(&config)?;
        let rt = Runtime::start(config.stack, devices, name, handles)?;
        match &config.impair {
            None => tracing::info!(tun = %rt.tun_name(), mtu = config.mtu, queues = config.queues, "runtime started"),
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
        Runtime::start(stack, vec![Arc::new(device)], name, DeviceHandles::default())
    }

    /// Drive one stack per device (the queues of one multi-queue device, or any
    /// devices that share a link the way such queues do), each with its own driver
    /// thread: the shards of [`crate::shard`]. `stack.mtu` is taken from the devices.
    pub fn with_queues(devices: Vec<Box<dyn Device>>, stack: Config) -> io::Result<Runtime> {
        let name = devices.first().map(|d| d.describe()).unwrap_or_default();
        Runtime::start(stack, devices.into_iter().map(Arc::from).collect(), name, DeviceHandles::default())
    }

    fn start(
        stack: Config,
        devices: Vec<Arc<dyn Device>>,
        name: String,
        handles: DeviceHandles,
    ) -> io::Result<Runtime> {
        let kicks =
            devices.iter().map(|_| Ok(Kick::EventFd(Arc::new(EventFd::new()?)))).collect::<io::Result<Vec<_>>>()?;
        let handle = start_shards(stack, &devices, kicks, name, handles)?;
        let mut rt = Runtime { handle, threads: Vec::new() };
        for (i, device) in devices.into_iter().enumerate() {
            let engine = Arc::clone(&rt.handle.set.engines[i]);
            let thread = thread::Builder::new()
                .name(format!("tunstack-{}-{i}", engine.name.chars().take(6).collect::<String>()))
                .spawn(move || driver::run(engine, device))?;
            // On error `rt` is dropped, which stops and joins the threads started so far.
            rt.threads.push(thread);
        }
        Ok(rt)
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
        for e in &self.handle.set.engines {
            e.stop();
        }
        for thread in self.threads.drain(..) {
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
