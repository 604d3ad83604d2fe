//! Kernel socket options the path benchmark needs and std does not offer: the
//! congestion control of a socket (TCP_CONGESTION, inherited by the connections a
//! listener accepts) and a receive buffer set before the connection exists
//! (SO_RCVBUF fixes the kernel's window scale and turns its auto-tuning off).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The kernel's congestion control algorithms (`tcp_available_congestion_control`).
pub fn available_congestion() -> Vec<String> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// setsockopt(TCP_CONGESTION).
pub fn set_congestion(fd: RawFd, name: &str) -> io::Result<()> {
    // SAFETY: setsockopt reads `name.len()` bytes from a live slice; `fd` is a socket
    // the caller owns.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TCP_CONGESTION {name}: {e}")));
    }
    Ok(())
}

/// getsockopt(TCP_CONGESTION): what the socket actually uses.
pub fn congestion_of(fd: RawFd) -> io::Result<String> {
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf` and updates `len`.
    let r = unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, buf.as_mut_ptr() as *mut libc::c_void, &mut len)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let s = &buf[..(len as usize).min(buf.len())];
    Ok(String::from_utf8_lossy(s.split(|&b| b == 0).next().unwrap_or(&[])).into_owned())
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_timeout(fd: RawFd, opt: libc::c_int, t: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t };
    // SAFETY: setsockopt reads one timeval from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A kernel TCP connection to `addr` (IPv4) with SO_RCVBUF `rcvbuf` and congestion
/// control `cc` set before connecting, and `timeout` on connect, reads and writes.
pub fn connect_with(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
    cc: Option<&str>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else { return Err(io::ErrorKind::Unsupported.into()) };
    // SAFETY: a fresh socket descriptor, owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just created and nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(b) = rcvbuf {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, b as libc::c_int)?;
    }
    if let Some(cc) = cc {
        set_congestion(fd, cc)?;
    }
    // SO_SNDTIMEO also bounds connect(2).
    set_timeout(fd, libc::SO_SNDTIMEO, timeout)?;
    set_timeout(fd, libc::SO_RCVTIMEO, timeout)?;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in of the size passed.
    let r = unsafe {
        libc::connect(fd, &sin as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sin) as libc::socklen_t)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpStream::from(owned))
}

/// recv(MSG_DONTWAIT): what is there, at most `buf.len()`, without blocking.
pub fn recv_now(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}
