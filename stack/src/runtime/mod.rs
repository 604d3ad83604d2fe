//! The runtime: a TUN device and one thread that drives the sans-IO [`crate::Stack`].
//!
//! The thread waits (poll(2)) on the TUN fd and a wake-up eventfd with the core's next
//! deadline as timeout, feeds packets in batches, flushes `poll_transmit` to the device,
//! and wakes blocked `net` handles. Handles lock the shared core only for the duration
//! of one call; no lock is held while waiting.

use std::io;
use std::net::IpAddr;

use crate::config::Config;
use crate::socket::SocketInfo;
use crate::stack::Stats;

/// What the runtime needs to create and configure the device.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Interface name (default "tun0").
    pub tun_name: String,
    /// MTU set on the device and used by the stack.
    pub mtu: usize,
    /// Addresses (with prefix length) given to the kernel's side of the TUN device, so
    /// the host can route to the stack's addresses (e.g. 10.0.0.1/24, fd00::1/64).
    pub host_addrs: Vec<(IpAddr, u8)>,
    /// The core's configuration; `stack.addrs` are the stack's own addresses and
    /// `stack.mtu` is overwritten with `mtu`. A zero `stack.seed` is replaced with one
    /// read from the OS entropy source.
    pub stack: Config,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            tun_name: "tun0".into(),
            mtu: 1500,
            host_addrs: vec![
                ("10.0.0.1".parse().unwrap(), 24),
                ("fd00::1".parse().unwrap(), 64),
            ],
            stack: Config {
                addrs: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
                ..Config::default()
            },
        }
    }
}

/// Owns the TUN device and its thread. Dropping it stops the thread and removes the
/// device. Cheap to clone handles from (`net::*` hold an internal `Arc`).
pub struct Runtime {
    _todo: (),
}

impl Runtime {
    /// Create the device, configure addresses, MTU and link state, start the thread.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        let _ = config;
        todo!("runtime")
    }

    /// The device's actual name.
    pub fn tun_name(&self) -> &str {
        todo!("runtime")
    }

    /// Snapshot of every socket (see `Stack::sockets`).
    pub fn sockets(&self) -> Vec<SocketInfo> {
        todo!("runtime")
    }

    pub fn stats(&self) -> Stats {
        todo!("runtime")
    }

    /// Stop the thread and remove the device (also done by `Drop`).
    pub fn shutdown(self) {
        todo!("runtime")
    }
}
