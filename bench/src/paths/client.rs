//! The clients of the path benchmark, Linux's TCP in the client namespace: a bulk
//! download whose bytes are hashed against what the source service sends, and the slow
//! reader. Both are bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::sock;
use crate::proto::fill_pattern;
use crate::server::CHUNK;

/// Longest a socket call waits, so that the deadline is looked at.
const POLL: Duration = Duration::from_millis(200);

/// SHA-256 of what the source service sends for a request of `size` bytes (its chunk
/// pattern, repeated).
pub fn source_sha256(size: u64) -> [u8; 32] {
    let mut chunk = vec![0u8; CHUNK];
    fill_pattern(&mut chunk, 0);
    let mut h = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// What one download did.
#[derive(Clone, Debug)]
pub struct Download {
    pub bytes: u64,
    pub secs: f64,
    /// All `size` bytes arrived before the deadline and the stream ended.
    pub complete: bool,
    /// The hash of what arrived equals the source's (only when complete).
    pub hashes_equal: bool,
}

impl Download {
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }
}

/// Ask the source service at `addr` for `size` bytes and read them, hashing; stops at
/// `deadline` with what arrived by then (a partial result).
pub fn download(addr: SocketAddr, size: u64, deadline: Instant) -> io::Result<Download> {
    let start = Instant::now();
    let mut s = sock::connect_with(addr, None, None, POLL.max(Duration::from_secs(5)))?;
    s.set_read_timeout(Some(POLL))?;
    s.write_all(&size.to_le_bytes())?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut eof = false;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                h.update(&buf[..n]);
                got += n as u64;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let complete = eof && got == size;
    let hashes_equal = complete && <[u8; 32]>::from(h.finalize()) == source_sha256(size);
    Ok(Download { bytes: got, secs, complete, hashes_equal })
}

/// The slow reader (the second symptom): SO_RCVBUF `rcvbuf`, `read` bytes read
/// every `every`, while sending `bytes` to the echo service; then the echo is read to
/// the end.
#[derive(Clone, Copy, Debug)]
pub struct SlowSpec {
    pub bytes: u64,
    pub rcvbuf: usize,
    pub read: usize,
    pub every: Duration,
}

impl Default for SlowSpec {
    fn default() -> SlowSpec {
        SlowSpec { bytes: 8 << 20, rcvbuf: 8192, read: 4096, every: Duration::from_micros(500) }
    }
}

/// What one slow-reader run did.
#[derive(Clone, Debug)]
pub struct Slow {
    pub secs: f64,
    /// Longest time in which the client neither sent nor read a byte.
    pub longest_pause: f64,
    pub complete: bool,
    pub hashes_equal: bool,
    pub sent: u64,
    pub received: u64,
}

pub fn slow_reader(addr: SocketAddr, spec: SlowSpec, deadline: Instant) -> io::Result<Slow> {
    let start = Instant::now();
    let s = sock::connect_with(addr, Some(spec.rcvbuf), None, Duration::from_secs(10))?;
    s.set_write_timeout(Some(POLL))?;
    let sent = Arc::new(AtomicU64::new(0));
    let mut data = vec![0u8; spec.bytes as usize];
    fill_pattern(&mut data, 7);
    let want: [u8; 32] = Sha256::digest(&data).into();
    let data = Arc::new(data);
    let writer = {
        let mut w = s.try_clone()?;
        let sent = sent.clone();
        let data = data.clone();
        thread::spawn(move || -> io::Result<()> {
            let mut off = 0;
            while off < data.len() {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "sending did not finish by the deadline"));
                }
                let end = (off + 64 * 1024).min(data.len());
                match w.write(&data[off..end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        off += n;
                        sent.store(off as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            w.shutdown(Shutdown::Write)
        })
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; spec.read];
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    let mut last_sent = 0;
    let mut longest = Duration::ZERO;
    let mut next = Instant::now();
    let mut eof = false;
    while Instant::now() < deadline {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        next += spec.every;
        let mut progressed = false;
        match sock::recv_now(&s, &mut buf) {
            Ok(0) => {
                eof = true;
            }
            Ok(n) => {
                h.update(&buf[..n]);
                received += n as u64;
                progressed = true;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        let now_sent = sent.load(Ordering::Relaxed);
        if now_sent != last_sent {
            last_sent = now_sent;
            progressed = true;
        }
        let now = Instant::now();
        if progressed {
            longest = longest.max(now - last_progress);
            last_progress = now;
        }
        if eof {
            break;
        }
        // Behind schedule (the machine is busy): do not try to catch up in a burst.
        if next + spec.every < now {
            next = now;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    longest = longest.max(Instant::now() - last_progress);
    let send_result = writer.join().map_err(|_| io::Error::other("writer panicked"))?;
    let complete = eof && received == spec.bytes && send_result.is_ok();
    Ok(Slow {
        secs,
        longest_pause: longest.as_secs_f64(),
        complete,
        hashes_equal: complete && <[u8; 32]>::from(h.finalize()) == want,
        sent: sent.load(Ordering::Relaxed),
        received,
    })
}
