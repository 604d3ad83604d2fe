//! The client side of every workload: Linux's own TCP (`std::net`), run on a thread
//! inside the client namespace (see `env::Env::client`). Every loop is bounded by a
//! count and by a deadline; every socket operation by a timeout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::proto::{self, RR_REQUEST, RR_RESPONSE};
use crate::stats::DevCounters;

/// Limit on one connect, read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per write/read call of the bulk workloads.
const BULK_CHUNK: usize = 256 * 1024;

fn timed_out(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// A kernel TCP connection with timeouts on everything.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Client -> server: send `size` bytes to the sink, half-close, wait for its count.
/// Returns the seconds from connect to the count (all data received by the server).
pub fn upload(addr: SocketAddr, size: u64, deadline: Instant) -> io::Result<f64> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    let mut buf = vec![0u8; BULK_CHUNK];
    proto::fill_pattern(&mut buf, 0);
    let mut sent = 0u64;
    while sent < size {
        if Instant::now() > deadline {
            return Err(timed_out(format!("upload: {sent} of {size} bytes sent when the time limit passed")));
        }
        let n = (size - sent).min(BULK_CHUNK as u64) as usize;
        s.write_all(&buf[..n])?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(count);
    if got != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upload: server counted {got} of {size} bytes"),
        ));
    }
    Ok(secs)
}

/// Server -> client: ask the source for `size` bytes and read to its close. Returns
/// the seconds from connect to the end of the stream.
pub fn download(addr: SocketAddr, size: u64, deadline: Instant) -> io::Result<f64> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    s.write_all(&size.to_le_bytes())?;
    let mut buf = vec![0u8; BULK_CHUNK];
    let mut got = 0u64;
    loop {
        if Instant::now() > deadline {
            return Err(timed_out(format!("download: {got} of {size} bytes received when the time limit passed")));
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if got > size {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if got != size {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("download: received {got} of {size} bytes")));
    }
    Ok(secs)
}

/// Ping-pong `count` messages of `len` bytes through the echo service (after a short
/// warm-up that is not recorded); returns each round trip in microseconds.
pub fn ping_pong(addr: SocketAddr, len: usize, count: usize, deadline: Instant) -> io::Result<Vec<f64>> {
    let mut s = connect(addr)?;
    s.set_nodelay(true)?;
    let msg = vec![0x42u8; len];
    let mut back = vec![0u8; len];
    let warmup = (count / 10).clamp(1, 200);
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        if Instant::now() > deadline {
            return Err(timed_out(format!(
                "ping-pong: {} of {count} round trips done when the time limit passed",
                samples.len()
            )));
        }
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if i >= warmup {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    s.shutdown(Shutdown::Write)?;
    Ok(samples)
}

/// Connection rate: `threads` clients each run connect, one request, read the answer,
/// close, until `count` connections are done in total. Returns (completed, seconds).
pub fn connection_rate(addr: SocketAddr, count: usize, threads: usize, deadline: Instant) -> io::Result<(usize, f64)> {
    let threads = threads.clamp(1, 64).min(count.max(1));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let n = count / threads + usize::from(i < count % threads);
            thread::spawn(move || -> io::Result<usize> {
                let mut done = 0;
                for _ in 0..n {
                    if Instant::now() > deadline {
                        return Err(timed_out(format!("connection rate: time limit passed after {done} connections")));
                    }
                    let mut s = connect(addr)?;
                    s.set_nodelay(true)?;
                    s.write_all(&[0xa5; RR_REQUEST])?;
                    let mut resp = [0u8; RR_RESPONSE];
                    s.read_exact(&mut resp)?;
                    drop(s);
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    let mut first_err = None;
    for w in workers {
        match w.join() {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(io::Error::other("connection-rate thread panicked"))),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

/// HTTP load without wrk: `conns` connections on their own threads, each sending one
/// request and reading its response (by Content-Length) in a loop for `duration`; with
/// `close`, every request asks for `Connection: close` on a new connection (and the
/// server's close is awaited). Returns (responses, seconds, per-request latencies in
/// microseconds, from connect or send to the end of the response).
pub fn http_load(addr: SocketAddr, conns: usize, duration: Duration, close: bool) -> io::Result<(u64, f64, Vec<f64>)> {
    let request = proto::http_request(
        match addr.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => proto::TUN_PEER,
        },
        close,
    );
    let start = Instant::now();
    let end = start + duration;
    let workers: Vec<_> = (0..conns.clamp(1, 1024))
        .map(|_| {
            let request = request.clone();
            thread::spawn(move || -> io::Result<Vec<f64>> {
                let mut lat = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut kept: Option<TcpStream> = None;
                while Instant::now() < end {
                    let t = Instant::now();
                    let mut s = match kept.take() {
                        Some(s) => s,
                        None => {
                            let s = connect(addr)?;
                            s.set_nodelay(true)?;
                            s
                        }
                    };
                    s.write_all(&request)?;
                    read_http_response(&mut s, &mut buf)?;
                    if close {
                        // The server closes after its answer.
                        while s.read(&mut buf)? > 0 {}
                    } else {
                        kept = Some(s);
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().map_err(|_| io::Error::other("load thread panicked"))??);
    }
    Ok((all.len() as u64, start.elapsed().as_secs_f64(), all))
}

/// Read one response (head + Content-Length body) into `buf`.
fn read_http_response(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut have = 0;
    loop {
        if have == buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too long"));
        }
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if let Some(pos) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = pos + 4;
            let body = proto::content_length(&buf[..head])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "response without Content-Length"))?;
            let mut left = (head + body).saturating_sub(have);
            while left > 0 {
                let cap = left.min(buf.len());
                let n = s.read(&mut buf[..cap])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left -= n;
            }
            return Ok(());
        }
    }
}

/// HTTP keep-alive load on `conns` connections at once without wrk (for the 10k
/// workload, where a thread per connection would not do): a task per connection on a
/// current-thread tokio runtime, each sending a request and reading its response in a
/// loop for `duration`. Returns (responses, seconds, per-request latencies in
/// microseconds, connections that failed).
pub fn http_load_many(addr: SocketAddr, conns: usize, duration: Duration) -> io::Result<(u64, f64, Vec<f64>, u64)> {
    let host = match addr.ip() {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => proto::TUN_PEER,
    };
    let request: std::sync::Arc<[u8]> = proto::http_request(host, false).into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let start = Instant::now();
        let end = start + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            tasks.spawn(http_conn_async(addr, request.clone(), end));
        }
        let mut all = Vec::new();
        let mut failed = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(lat)) => all.extend(lat),
                _ => failed += 1,
            }
        }
        Ok((all.len() as u64, start.elapsed().as_secs_f64(), all, failed))
    })
}

/// One keep-alive connection of [`http_load_many`], until `end`.
async fn http_conn_async(addr: SocketAddr, request: std::sync::Arc<[u8]>, end: Instant) -> io::Result<Vec<f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;
    const LIMIT: Duration = Duration::from_secs(10);
    let tout = |_| timed_out("http: no answer within 10 s".into());
    let mut s = timeout(LIMIT, tokio::net::TcpStream::connect(addr)).await.map_err(tout)??;
    s.set_nodelay(true)?;
    let mut lat = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < end {
        let t = Instant::now();
        let exchange = async {
            s.write_all(&request).await?;
            let mut have = 0;
            loop {
                if have == buf.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too long"));
                }
                let n = s.read(&mut buf[have..]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                have += n;
                if let Some(pos) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = pos + 4;
                    let body = proto::content_length(&buf[..head])
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "response without Content-Length"))?;
                    let mut left = (head + body).saturating_sub(have);
                    while left > 0 {
                        let cap = left.min(buf.len());
                        let n = s.read(&mut buf[..cap]).await?;
                        if n == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        left -= n;
                    }
                    return Ok(());
                }
            }
        };
        timeout(LIMIT, exchange).await.map_err(tout)??;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}

/// Open `n` connections and keep them (nothing is sent).
pub fn open_idle(addr: SocketAddr, n: usize, deadline: Instant) -> io::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        if Instant::now() > deadline {
            return Err(timed_out(format!("idle connections: {} of {n} open when the time limit passed", v.len())));
        }
        v.push(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?);
    }
    Ok(v)
}

/// Device counters and the kernel's TCP retransmissions in the calling thread's
/// namespace: where packets are lost in a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    pub dev: DevCounters,
    pub retrans: u64,
}

impl Link {
    pub fn now(dev: &str) -> io::Result<Link> {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        Ok(Link { dev: dev_counters(dev)?, retrans: crate::stats::parse_snmp_tcp(&snmp, "RetransSegs").unwrap_or(0) })
    }

    /// (device drops, kernel retransmissions) since `before`.
    pub fn losses_since(&self, before: &Link) -> (u64, u64) {
        (self.dev.drops_since(&before.dev), self.retrans.saturating_sub(before.retrans))
    }
}

/// Counters of `dev` in the calling thread's network namespace.
pub fn dev_counters(dev: &str) -> io::Result<DevCounters> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    crate::stats::parse_proc_net_dev(&text, dev)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no device {dev} in /proc/net/dev")))
}
