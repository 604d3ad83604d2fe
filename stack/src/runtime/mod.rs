//! The runtime: a TUN device and one thread that drives the sans-IO [`crate::Stack`].
//!
//! The thread waits (poll(2)) on the TUN fd and a wake-up eventfd with the core's next
//! deadline as timeout, feeds packets in batches, flushes `poll_transmit` to the device,
//! and wakes blocked `net` handles. Handles lock the shared core only for the duration
//! of one call; no lock is held while waiting.
//!
//! ```text
//!   net handles ──lock──> Core { Stack, out queue, waiters } <──lock── runtime thread
//!        │  call, queue packets it produced, wake others            │ poll(tun, eventfd)
//!        │                                                          │ input / timers / queue
//!        ├─ lock released: unpark, write queue if writer ───────────┤ lock released: same
//!        └─ register under its socket, park ◄── unpark that socket's waiters
//! ```
//!
//! Packets are taken from the core under its lock but written to the device after the
//! lock is released, by one writer at a time, in order (see `runtime/tx.rs`).
//!
//! A blocked call waits for its own socket only: `Stack::poll_wakeup` names the sockets
//! whose readiness changed and only the threads registered under those are woken (see
//! `runtime/wait.rs`). The runtime thread is kicked through its eventfd only when a
//! call moved the core's deadline earlier than the one it sleeps towards.
//!
//! # Network namespaces
//!
//! The device is created, and its addresses are configured, in the network namespace of
//! the thread that calls [`Runtime::new`]. Tests that must not touch the host's
//! namespace move one thread into a fresh namespace first (`unshare(CLONE_NEWNET)` or
//! `setns` to a namespace from `ip netns add`) and create the runtime from that thread.
//! The runtime's own thread only reads and writes the device's descriptor, so which
//! namespace it sits in does not matter; kernel sockets that talk to the stack must be
//! opened from a thread in the device's namespace.
//!
//! # Impairment
//!
//! With [`RuntimeConfig::impair`] set, every packet read from the device passes an
//! [`Impairer`] before it reaches the core, and every packet from the core passes a
//! second one before it is written (loss, reordering, duplication, corruption, delay,
//! rate; see [`impair`]). Held packets wait in the impairers, which live in the core's
//! lock because application threads flush the core's output too; the runtime thread's
//! poll(2) timeout is the earliest of the core's deadline and the next release. Without
//! it, packets go straight through as before.

pub mod ifconfig;
pub mod impair;

mod device;
mod sys;
mod tx;
mod wait;

use std::fmt;
use std::io;
use std::net::IpAddr;

pub use ipnet::IpNet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tun_tap::Iface;

use crate::config::Config;
use crate::socket::{SocketHandle, SocketInfo};
use crate::stack::{Stack, Stats};
use crate::time::Instant;

use self::ifconfig::Ifconfig;
use self::sys::EventFd;
use self::tx::{Batch, Role, Tx, Written};
pub(crate) use self::wait::WaitMode;
use self::wait::{LocalUnparks, Unparks, Waiter, Waiters};

pub use self::impair::{ImpairCounters, Impairer, Impairment, ImpairmentStats};

/// Packets read from the device per batch before the core is locked and fed.
const RX_BATCH: usize = 64;

/// How often the runtime thread logs the impairment counters (debug level) while busy.
const IMPAIR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What the runtime needs to create and configure the device.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Interface name (default "tun0"). At most 15 bytes; `%d` lets the kernel pick a
    /// number (see [`Runtime::tun_name`] for the result).
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
    /// Impair the link in both directions (see [`impair`]); `None` (the default) passes
    /// every packet straight through.
    pub impair: Option<Impairment>,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            tun_name: "tun0".into(),
            mtu: 1500,
            host_addrs: vec!["10.0.0.1/24".parse().unwrap(), "fd00::1/64".parse().unwrap()],
            stack: Config { addrs: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()], ..Config::default() },
            impair: None,
        }
    }
}

/// Owns the TUN device and its thread. Dropping it (or [`Runtime::shutdown`]) stops the
/// thread and closes the device, which removes the interface; handles that outlive it
/// fail with `NotConnected` ("runtime shut down").
pub struct Runtime {
    handle: RuntimeHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, clonable reference to a running [`Runtime`]: what the `net` handles hold.
/// It does not keep the device alive: once the `Runtime` is dropped, calls through a
/// handle fail with `NotConnected`.
#[derive(Clone)]
pub struct RuntimeHandle {
    shared: Arc<Shared>,
}

/// What the runtime did since it started: how often its thread ran and was kicked, how
/// often application threads blocked and were woken. For tuning and tests; every field
/// only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeCounters {
    /// Turns of the runtime thread (one per return from poll(2)).
    pub turns: u64,
    /// Turns that found the eventfd kicked.
    pub kicked_turns: u64,
    /// Packets read from the device.
    pub packets_read: u64,
    /// Eventfd kicks by API calls that moved the core's deadline earlier.
    pub kicks: u64,
    /// Times an application thread registered under a socket and parked.
    pub waits: u64,
    /// Threads unparked because their socket's readiness changed (or at shutdown).
    pub wakeups: u64,
}

/// State shared by the runtime thread and every handle.
struct Shared {
    core: Mutex<Core>,
    /// The device's write side (its own lock, taken after `core`'s).
    tx: Tx,
    /// Wakes the runtime thread out of poll(2): shutdown, or an earlier deadline.
    wake: EventFd,
    stopped: AtomicBool,
    /// `tunstack::Instant::ZERO` of this runtime.
    epoch: std::time::Instant,
    name: String,
}

/// Everything that is only touched under the lock.
struct Core {
    stack: Stack,
    /// Packets taken from the stack, handed to `Shared::tx` before the lock is released.
    out: Batch,
    /// Room for one packet (the MTU).
    mtu: usize,
    /// One packet's worth of buffer for the impairer's input.
    impair_buf: Box<[u8]>,
    /// The deadline the runtime thread is sleeping towards; a call that moves the core's
    /// deadline earlier must kick the eventfd.
    thread_deadline: Option<Instant>,
    stopped: bool,
    /// The impairment layer, when configured.
    impair: Option<Box<Impaired>>,
    /// Threads blocked in a call, by socket.
    waiters: Waiters,
    counters: RuntimeCounters,
}

/// Both directions of the impaired link.
struct Impaired {
    /// Device -> core.
    rx: Impairer,
    /// Core -> device.
    tx: Impairer,
}

impl Impaired {
    fn stats(&self) -> ImpairmentStats {
        ImpairmentStats { rx: self.rx.counters(), tx: self.tx.counters() }
    }

    fn next_release(&self) -> Option<Instant> {
        earliest(self.rx.next_release(), self.tx.next_release())
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Core {
    /// Take every packet the core has ready into `out`: straight away, or through the
    /// impairer, which also hands out the earlier packets that are due by now.
    fn flush(&mut self, now: Instant) {
        let (stack, out) = (&mut self.stack, &mut self.out);
        match &mut self.impair {
            None => while out.push_with(self.mtu, |buf| stack.poll_transmit(now, buf)).is_some() {},
            Some(imp) => {
                let buf = &mut self.impair_buf;
                while let Some(len) = stack.poll_transmit(now, buf) {
                    imp.tx.push(now, &buf[..len.min(buf.len())]);
                }
                imp.tx.release(now, |pkt| out.push(pkt));
            }
        }
    }

    /// When the runtime thread must run next: the core's timer or a held packet's
    /// release, whichever comes first.
    fn deadline(&mut self) -> Option<Instant> {
        let core = self.stack.poll_timeout();
        match &self.impair {
            None => core,
            Some(imp) => earliest(core, imp.next_release()),
        }
    }
}

fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "runtime shut down")
}

fn poisoned_error() -> io::Error {
    io::Error::other("runtime stopped: the stack panicked")
}

impl Shared {
    fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(micros.min(u64::MAX as u128) as u64)
    }

    /// Lock the core for an API call: `NotConnected` once the runtime stopped.
    fn lock(&self) -> io::Result<MutexGuard<'_, Core>> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(stopped_error());
        }
        let core = self.core.lock().map_err(|_| poisoned_error())?;
        if core.stopped {
            return Err(stopped_error());
        }
        Ok(core)
    }

    /// Lock for a read-only snapshot, which is fine even after shutdown.
    fn lock_any(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After the core ran (an API call or the thread's turn): queue what it produced
    /// for the device, collect the waiters of the sockets whose readiness changed into
    /// `unparks`, and for API calls make sure the thread does not sleep past a deadline
    /// that moved earlier. Once the lock is released, the caller unparks the waiters
    /// and, when told [`Role::Write`], writes the queued packets.
    fn settle(&self, core: &mut Core, now: Instant, from_api: bool, unparks: &mut Unparks) -> Role {
        core.flush(now);
        let role = self.tx.enqueue(&mut core.out);
        let before = unparks.len();
        while let Some(h) = core.stack.poll_wakeup() {
            core.waiters.wake(h, unparks);
        }
        core.counters.wakeups += (unparks.len() - before) as u64;
        if from_api {
            if let Some(d) = core.deadline() {
                let earlier = match core.thread_deadline {
                    None => true,
                    Some(t) => d < t,
                };
                if earlier {
                    core.thread_deadline = Some(d);
                    core.counters.kicks += 1;
                    self.wake.kick();
                }
            }
        }
        role
    }

    /// Stop everything: no more calls, waiters woken, thread told to exit, device
    /// released by the write side (the thread drops its own reference when it exits).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let mut unparks = Unparks::default();
        {
            let mut core = self.lock_any();
            core.stopped = true;
            core.waiters.wake_all(&mut unparks);
            core.counters.wakeups += unparks.len() as u64;
        }
        unparks.unpark_all();
        self.wake.kick();
        self.tx.close();
    }
}

/// What an application call does once it released the core's lock: unpark the threads
/// it woke, and write the device's queue if it became the writer. Runs on drop too, so
/// that every return path does it; declare it before the lock guard.
struct AfterLock<'a> {
    shared: &'a Shared,
    unparks: LocalUnparks,
    role: Role,
}

impl<'a> AfterLock<'a> {
    fn new(shared: &'a Shared) -> AfterLock<'a> {
        AfterLock { shared, unparks: LocalUnparks::new(), role: Role::Done }
    }

    fn run(&mut self) {
        self.unparks.unpark_all();
        if std::mem::replace(&mut self.role, Role::Done) == Role::Write {
            if let (_, Written::Left) = self.shared.tx.write_out(tx::APP_WRITER_ROUNDS) {
                // The runtime thread writes the rest on its next turn.
                self.shared.wake.kick();
            }
        }
    }
}

impl Drop for AfterLock<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

/// Wakes everybody if a core call panics on an application thread, so that nobody
/// stays parked waiting for a wakeup that will never come (woken threads, and the
/// runtime thread, then find the lock poisoned and stop).
struct WakeOnUnwind<'a>(&'a Shared);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut unparks = Unparks::default();
            self.0.lock_any().waiters.wake_all(&mut unparks);
            unparks.unpark_all();
            self.0.wake.kick();
        }
    }
}

impl RuntimeHandle {
    /// The device's actual name.
    pub fn tun_name(&self) -> &str {
        &self.shared.name
    }

    /// False once the runtime shut down (or stopped because the device went away).
    pub fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::Acquire)
    }

    /// Snapshot of every socket (see `Stack::sockets`). Still answers after shutdown.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.shared.lock_any().stack.sockets()
    }

    /// Snapshot of the core's counters. Still answers after shutdown.
    pub fn stats(&self) -> Stats {
        self.shared.lock_any().stack.stats().clone()
    }

    /// What the impairment layer did in each direction; `None` without one. Still
    /// answers after shutdown.
    pub fn impairment_stats(&self) -> Option<ImpairmentStats> {
        self.shared.lock_any().impair.as_ref().map(|imp| imp.stats())
    }

    /// The runtime's own counters (turns, kicks, waits, wakeups). Still answers after
    /// shutdown.
    pub fn counters(&self) -> RuntimeCounters {
        self.shared.lock_any().counters
    }

    /// Run one core call under the lock and send whatever it produced.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut Stack, Instant) -> io::Result<T>) -> io::Result<T> {
        let shared = &*self.shared;
        // Dropped after `core`: woken threads are unparked and packets written once the
        // lock is released.
        let mut after = AfterLock::new(shared);
        let _wake = WakeOnUnwind(shared);
        let mut core = shared.lock()?;
        let now = shared.now();
        let result = f(&mut core.stack, now);
        after.role = shared.settle(&mut core, now, true, &mut after.unparks);
        result
    }

    /// Run `f` until it returns something other than `WouldBlock`, waiting for socket
    /// `h`'s readiness to change between attempts. With `nonblocking`, `WouldBlock` is
    /// returned at once; with a `timeout`, `WouldBlock` is returned once it has elapsed
    /// (what std's sockets do on Linux when SO_RCVTIMEO/SO_SNDTIMEO expire). Shutdown
    /// ends the wait with `NotConnected`. `mode` says whether a readiness change wakes
    /// this call together with the socket's other waiters or alone (accept).
    pub(crate) fn block<T>(
        &self,
        h: SocketHandle,
        mode: WaitMode,
        nonblocking: bool,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut Stack, Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        let shared = &*self.shared;
        // Dropped after `core` (declared before it): unparks and writes happen without
        // the lock.
        let mut after = AfterLock::new(shared);
        let _wake = WakeOnUnwind(shared);
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut me: Option<Arc<Waiter>> = None;
        let mut core = shared.lock()?;
        loop {
            let now = shared.now();
            let result = f(&mut core.stack, now);
            after.role = shared.settle(&mut core, now, true, &mut after.unparks);
            let expired = match &result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                    deadline.is_some_and(|d| std::time::Instant::now() >= d)
                }
                _ => true,
            };
            if expired {
                if mode == WaitMode::Exclusive && me.is_some() {
                    // This call was (or may have been) woken alone for a readiness
                    // that can cover more than it used: give the next one its turn.
                    core.waiters.pass_on(h, &mut after.unparks);
                }
                return match result {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                        Err(io::Error::new(io::ErrorKind::WouldBlock, "operation timed out"))
                    }
                    other => other,
                };
            }
            // Registered while the lock is still held: a readiness change can only be
            // reported after this point, and then it finds us (see `wait`).
            let waiter = me.get_or_insert_with(Waiter::current);
            core.waiters.register(h, mode, waiter);
            core.counters.waits += 1;
            drop(core);
            after.run();
            while !waiter.is_notified() {
                match deadline {
                    None => thread::park(),
                    Some(d) => {
                        let left = d.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        thread::park_timeout(left);
                    }
                }
            }
            core = shared.lock()?;
            if !waiter.is_notified() {
                // Timed out: nobody took us out of the registry.
                core.waiters.unregister(h, waiter);
            }
        }
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

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("tun_name", &self.shared.name)
            .field("running", &self.is_running())
            .finish()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("tun_name", &self.handle.shared.name).finish()
    }
}

impl Runtime {
    /// Create the device, configure addresses, MTU and link state, start the thread.
    ///
    /// Everything happens in the network namespace of the calling thread (see the
    /// module documentation). Errors: `InvalidInput` for a bad configuration (name,
    /// MTU, prefix length, a host address equal to one of the stack's), `Unsupported`
    /// for a second IPv4 host address, `NotFound` without `/dev/net/tun`,
    /// `PermissionDenied` without CAP_NET_ADMIN, `AddrInUse` when another process holds
    /// the device.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        let RuntimeConfig { tun_name, mtu, host_addrs, stack: mut stack_config, impair } = config;
        validate(&tun_name, mtu, &host_addrs, &stack_config.addrs)?;
        if let Some(imp) = &impair {
            imp.validate()?;
        }
        let impair = impair.map(|imp| Box::new(Impaired { rx: imp.rx(mtu), tx: imp.tx(mtu) }));
        stack_config.mtu = mtu;
        if stack_config.seed == 0 {
            stack_config.seed = sys::random_seed()?;
        }
        let stack = Stack::new(stack_config);

        let dev = device::open_tun(&tun_name)?;
        let name = dev.name().to_owned();
        // On error `dev` is dropped here, which removes the half-configured device.
        configure(&name, mtu, &host_addrs)?;
        let dev = Arc::new(dev);

        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                stack,
                out: Batch::default(),
                mtu,
                impair_buf: vec![0; if impair.is_some() { mtu } else { 0 }].into_boxed_slice(),
                thread_deadline: None,
                stopped: false,
                impair,
                waiters: Waiters::default(),
                counters: RuntimeCounters::default(),
            }),
            tx: Tx::new(Arc::clone(&dev)),
            wake: EventFd::new()?,
            stopped: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
            name: name.clone(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread =
            thread::Builder::new().name(format!("tunstack-{name}")).spawn(move || run(thread_shared, dev, mtu))?;
        match &shared.lock_any().impair {
            None => tracing::info!(tun = %name, mtu, "runtime started"),
            Some(imp) => {
                tracing::info!(tun = %name, mtu, impairment = %imp.rx.config(), "runtime started (impaired link)")
            }
        }
        Ok(Runtime { handle: RuntimeHandle { shared }, thread: Some(thread) })
    }

    /// A clonable handle for `net` constructors and for other threads.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// The device's actual name.
    pub fn tun_name(&self) -> &str {
        self.handle.tun_name()
    }

    /// Snapshot of every socket (see `Stack::sockets`).
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.handle.sockets()
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// What the impairment layer did in each direction; `None` without one.
    pub fn impairment_stats(&self) -> Option<ImpairmentStats> {
        self.handle.impairment_stats()
    }

    /// The runtime's own counters (turns, kicks, waits, wakeups).
    pub fn counters(&self) -> RuntimeCounters {
        self.handle.counters()
    }

    /// Stop the thread and remove the device (also done by `Drop`).
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.handle.shared.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(tun = %self.handle.shared.name, "runtime thread panicked");
            }
        }
        if let Some(stats) = self.handle.impairment_stats() {
            tracing::debug!(tun = %self.handle.shared.name, %stats, "impairment at stop");
        }
        tracing::info!(tun = %self.handle.shared.name, "runtime stopped");
    }
}

/// Check the configuration before anything is created.
fn validate(name: &str, mtu: usize, host_addrs: &[IpNet], stack_addrs: &[IpAddr]) -> io::Result<()> {
    let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    ifconfig::validate_ifname(name)?;
    // RFC 791: every IPv4 host must handle 68-byte datagrams; the IPv4 total length
    // field bounds the MTU at 65535.
    if !(68..=65535).contains(&mtu) {
        return invalid(format!("MTU {mtu} is out of range (68..=65535)"));
    }
    let any_v6 = host_addrs.iter().map(|n| n.addr()).chain(stack_addrs.iter().copied()).any(|a| a.is_ipv6());
    // RFC 8200 5: IPv6 requires a link MTU of at least 1280.
    if any_v6 && mtu < 1280 {
        return invalid(format!("MTU {mtu} is below 1280, the minimum for IPv6 (RFC 8200 5)"));
    }
    if stack_addrs.is_empty() {
        return invalid("the stack has no addresses (config.stack.addrs is empty)".into());
    }
    for a in stack_addrs {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return invalid(format!("{a} cannot be a stack address (unspecified, multicast or loopback)"));
        }
    }
    let mut v4 = 0;
    for (i, net) in host_addrs.iter().enumerate() {
        let (addr, prefix) = (net.addr(), net.prefix_len());
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return invalid(format!("host address {addr}/{prefix}: prefix length is greater than {max}"));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return invalid(format!("{addr} cannot be a host address (unspecified, multicast or loopback)"));
        }
        if let IpAddr::V4(a) = addr {
            if a.is_broadcast() {
                return invalid(format!("{addr} cannot be a host address (broadcast)"));
            }
        }
        if stack_addrs.contains(&addr) {
            return invalid(format!(
                "host address {addr} is also one of the stack's addresses; the two ends of the \
                 TUN link need different addresses"
            ));
        }
        if host_addrs[..i].iter().any(|b| b.addr() == addr) {
            return invalid(format!("host address {addr} is listed twice"));
        }
        if addr.is_ipv4() {
            v4 += 1;
            if v4 > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("host address {addr}: only one IPv4 host address is supported (ioctl configuration)"),
                ));
            }
        }
    }
    for &a in stack_addrs {
        let routed = host_addrs.iter().any(|net| net.contains(&a));
        if !routed && !host_addrs.is_empty() {
            tracing::warn!(%a, "stack address is outside every host prefix: the kernel will not route to it without an extra route");
        }
    }
    Ok(())
}

/// MTU, the IPv4 address, link up, then IPv6 addresses (added once the device is up,
/// when the kernel has its IPv6 state ready).
fn configure(name: &str, mtu: usize, host_addrs: &[IpNet]) -> io::Result<()> {
    let ifc = Ifconfig::new(name)?;
    ifc.set_mtu(mtu)?;
    for net in host_addrs {
        if let IpNet::V4(n) = net {
            ifc.set_ipv4(n.addr(), n.prefix_len())?;
        }
    }
    ifc.set_up()?;
    let mut v6 = Vec::new();
    for net in host_addrs {
        if let IpNet::V6(n) = net {
            ifc.add_ipv6(n.addr(), n.prefix_len())?;
            v6.push(n.addr());
        }
    }
    if !v6.is_empty() {
        wait_ipv6_usable(name, &v6);
    }
    Ok(())
}

/// The kernel finishes duplicate address detection from a work queue even on a NOARP
/// link like TUN (where it is skipped), so for a moment after `SIOCSIFADDR` the
/// addresses are tentative (RFC 4862 5.4) and cannot be used as source addresses. Wait
/// (bounded, 2 s) until /proc shows them settled so that the host can talk to the stack
/// as soon as `Runtime::new` returns.
fn wait_ipv6_usable(name: &str, addrs: &[std::net::Ipv6Addr]) {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let hex: Vec<String> = addrs.iter().map(|a| a.octets().iter().map(|b| format!("{b:02x}")).collect()).collect();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/if_inet6") else { return };
        let settled = hex.iter().all(|h| {
            table.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() == 6
                    && f[0] == h
                    && f[5] == name
                    && u32::from_str_radix(f[4], 16).is_ok_and(|flags| flags & IFA_F_TENTATIVE == 0)
            })
        });
        if settled {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    tracing::warn!(tun = name, "IPv6 host addresses still tentative after 2 s");
}

/// On any exit of the runtime thread (shutdown, device lost, panic): mark the runtime
/// stopped and wake every waiter, so no handle waits forever.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!(tun = %self.0.name, "runtime thread panicked; runtime stopped");
        }
        self.0.stop();
    }
}

/// The runtime thread.
fn run(shared: Arc<Shared>, dev: Arc<Iface>, mtu: usize) {
    let _stop = StopOnExit(&shared);
    let mut rx = vec![0u8; RX_BATCH * mtu].into_boxed_slice();
    let mut lens = [0usize; RX_BATCH];
    let mut timeout = 0; // first turn: ask the core for its deadline at once
    let mut next_log = shared.now() + IMPAIR_LOG_INTERVAL;
    let mut unparks = Unparks::default();
    loop {
        let ready = match sys::poll2(Some(sys::tun_fd(&dev)), Some(shared.wake.as_fd()), timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "poll failed; runtime stopped");
                return;
            }
        };
        if ready.b {
            shared.wake.drain();
        }
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let mut n = 0;
        if ready.a {
            while n < RX_BATCH {
                match dev.recv(&mut rx[n * mtu..(n + 1) * mtu]) {
                    Ok(len) => {
                        lens[n] = len;
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // EBADFD: the interface was deleted under us (`ip link del`).
                        tracing::error!(error = %e, "TUN device read failed; runtime stopped");
                        return;
                    }
                }
            }
        }
        let Ok(mut guard) = shared.core.lock() else { return };
        let core = &mut *guard;
        if core.stopped {
            return;
        }
        core.counters.turns += 1;
        core.counters.kicked_turns += u64::from(ready.b);
        core.counters.packets_read += n as u64;
        let now = shared.now();
        let packets = lens[..n].iter().enumerate().map(|(i, &len)| &rx[i * mtu..i * mtu + len]);
        match &mut core.impair {
            None => {
                for pkt in packets {
                    core.stack.input(now, pkt);
                }
            }
            Some(imp) => {
                for pkt in packets {
                    imp.rx.push(now, pkt);
                }
                let stack = &mut core.stack;
                imp.rx.release(now, |pkt| stack.input(now, pkt));
                if now >= next_log {
                    next_log = now + IMPAIR_LOG_INTERVAL;
                    tracing::debug!(tun = %shared.name, stats = %imp.stats(), "impairment");
                }
            }
        }
        if core.stack.poll_timeout().is_some_and(|d| d <= now) {
            core.stack.handle_timeout(now);
        }
        let role = shared.settle(core, now, false, &mut unparks);
        let deadline = core.deadline();
        core.thread_deadline = deadline;
        drop(guard);
        unparks.unpark_all();
        if role == Role::Write {
            shared.tx.write_out(usize::MAX);
        }
        // A full batch may have left more packets queued: look again without sleeping.
        timeout = if n == RX_BATCH { 0 } else { sys::timeout_ms(deadline, shared.now()) };
    }
}

#[cfg(test)]
pub(crate) mod tests;
