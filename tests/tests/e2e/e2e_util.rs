//! Helpers shared by the TUN end-to-end tests (the modules of this binary). Every function here is
//! meant to be called from inside `NetNs::run`, i.e. on a thread in the test's
//! network namespace.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tunstack::runtime::{Runtime, RuntimeConfig};
use tunstack_tests::netns;

/// The defaults of `RuntimeConfig`: the stack is 10.0.0.2 / fd00::2, the kernel side
/// of the device 10.0.0.1/24 / fd00::1/64.
pub const STACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
pub const STACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
pub const HOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
pub const HOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));

/// Limit on any single blocking socket operation in these tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Create the runtime (device `tun0` in the current namespace) with the default
/// configuration, and wait until the kernel's IPv6 address is usable.
pub fn start_runtime() -> Runtime {
    let rt = Runtime::new(RuntimeConfig::default()).expect("Runtime::new in the test namespace");
    netns::wait_ipv6_ready(Duration::from_secs(10));
    rt
}

/// Deterministic, seed-dependent bytes (the core's PRNG), so that data of different
/// connections differs.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    tunstack_tests::sim::payload(seed, len)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A kernel TCP connection with generous timeouts on everything.
pub fn kernel_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Send `data` through an echo connection while reading the echo on this thread, then
/// half-close and read until the server closes. Returns what came back (at most one
/// byte more than was sent, so a misbehaving server cannot make this grow unbounded).
pub fn echo_through(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("try_clone");
    let to_send = data.to_vec();
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut got = Vec::with_capacity(data.len());
    let read = (&mut &*stream).take(data.len() as u64 + 1).read_to_end(&mut got);
    sender.join().expect("sender thread").expect("sending to the echo server");
    read.expect("reading the echo");
    got
}

/// Assert two byte strings are equal by length and SHA-256 (no megabyte dumps).
#[track_caller]
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(sha256(got), sha256(want), "{what}: SHA-256 of the data");
}
