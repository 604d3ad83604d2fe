//! tunstack: a userspace TCP/UDP stack for Linux TUN devices.
//!
//! The core ([`Stack`]) is sans-IO and deterministic: hand it IP packets with the
//! current time, take packets out, ask when it next needs a timer. [`link`] is the link
//! model (loss, delay, rate, reordering...), as pure as the core, that the runtime's
//! impairment and the tests' simulator share. The
//! [`runtime`] owns a TUN device and a thread that drives the core; [`net`] has blocking
//! `TcpListener` / `TcpStream` / `UdpSocket` handles shaped like `std::net`'s.

// The sans-IO core has no unsafe code at all. With the `runtime` feature the crate
// denies it everywhere except the runtime's system-call layer (`runtime::sys`), where
// each block carries a SAFETY comment.
#![cfg_attr(not(feature = "runtime"), forbid(unsafe_code))]
#![cfg_attr(feature = "runtime", deny(unsafe_code))]

pub mod config;
pub mod demux;
pub mod error;
pub mod link;
#[cfg(feature = "runtime")]
pub mod net;
pub mod policy;
pub mod ports;
pub mod rand;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "script")]
pub mod script;
pub mod seq;
pub mod shard;
pub mod socket;
pub mod stack;
pub mod tcp;
pub mod time;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod wire;

pub use config::{Config, CongestionAlgorithm, Keepalive};
pub use error::{
    AcceptError, BindError, ConnError, ConnectError, ImpairmentError, InvalidHandle, PeerAddrError, RecvError,
    SendError, ShutdownError, UdpConnectError, UdpRecvError, UdpSendError,
};
pub use socket::{
    AnyHandle, ListenerHandle, Owner, Protocol, Readiness, SocketHandle, SocketInfo, TcpHandle, UdpHandle,
};
pub use stack::{RxChecksum, Stack, Stats};
pub use tcp::{TcpInfo, TcpReject, TcpState};
pub use time::Instant;
