//! TCP buffer auto-tuning at the stack level (`crate::tcp::autotune` has the rules):
//! the one budget every connection's growth is granted from, and the calls that let a
//! connection grow after the application read.

use super::table::Sock;
use super::Stack;
use crate::socket::TcpHandle;

impl Stack {
    /// After the application read from `h`: its receive buffer may grow (once per RTT,
    /// from what was read), within the stack's budget.
    pub(super) fn tcp_autotune(&mut self, h: TcpHandle) {
        let now = self.now;
        let slot = self.slots.get_mut(h.0.idx as usize).filter(|s| s.gen == h.0.gen);
        if let Some(Sock::Tcp(c)) = slot.and_then(|s| s.sock.as_mut()) {
            c.autotune(now, &mut self.buf_budget);
        }
    }

    /// Bytes of buffer growth auto-tuning has granted across all connections (recounted
    /// at each housekeeping pass; at most `Config::tcp_buffer_budget`).
    pub fn tcp_buffer_growth(&self) -> usize {
        self.buf_budget.granted()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use crate::{Config, Instant, Stack};

    /// Two stacks on a link with `delay` each way (no loss), packets in flight kept in
    /// order of arrival.
    struct Link {
        a: Stack,
        b: Stack,
        now: Instant,
        delay: Duration,
        to_a: VecDeque<(Instant, Vec<u8>)>,
        to_b: VecDeque<(Instant, Vec<u8>)>,
        buf: Vec<u8>,
    }

    impl Link {
        fn step(&mut self) {
            let now = self.now;
            for (from, queue) in [(&mut self.a, &mut self.to_b), (&mut self.b, &mut self.to_a)] {
                if from.poll_timeout().is_some_and(|t| t <= now) {
                    from.handle_timeout(now);
                }
                while let Some(n) = from.poll_transmit(now, &mut self.buf) {
                    queue.push_back((now + self.delay, self.buf[..n].to_vec()));
                }
            }
            for (to, queue) in [(&mut self.a, &mut self.to_a), (&mut self.b, &mut self.to_b)] {
                while queue.front().is_some_and(|(t, _)| *t <= now) {
                    let (_, p) = queue.pop_front().unwrap();
                    to.input(now, &p);
                }
            }
            self.now += Duration::from_micros(100);
        }
    }

    fn cfg(addr: &str) -> Config {
        Config::default().with(|c| {
            c.addrs = vec![addr.parse().unwrap()];
            c.seed = 7;
        })
    }

    /// A reader that keeps up over a 10 ms RTT: the receive buffer grows past its
    /// configured 256 KiB (and the window with it, scaled), the sender's buffer follows
    /// its congestion window; quiet for a second, both give their memory back and the
    /// send buffer its growth.
    #[test]
    fn buffers_grow_with_what_is_read_and_shrink_when_idle() {
        let mut l = Link {
            a: Stack::new(cfg("10.0.0.1")),
            b: Stack::new(cfg("10.0.0.2")),
            now: Instant::ZERO,
            delay: Duration::from_millis(5),
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            buf: vec![0; 1500],
        };
        let lh = l.a.tcp_listen("10.0.0.1:80".parse().unwrap(), 8).unwrap();
        let c = l.b.tcp_connect(l.now, "10.0.0.1:80".parse().unwrap(), None).unwrap();
        let mut s = None;
        let data = vec![0x42u8; 64 * 1024];
        let (mut sent, mut got, mut max_wnd) = (0usize, 0usize, 0usize);
        let total = 24 << 20;
        let mut rx = vec![0u8; 256 * 1024];
        for _ in 0..200_000 {
            l.step();
            if s.is_none() {
                s = l.a.tcp_accept(lh).ok();
            }
            if sent < total {
                if let Ok(n) = l.b.tcp_send(c, &data[..data.len().min(total - sent)]) {
                    sent += n;
                }
            }
            if let Some(s) = s {
                while let Ok(n) = l.a.tcp_recv(s, &mut rx) {
                    got += n;
                }
                max_wnd = max_wnd.max(l.a.tcp_info(s).unwrap().rcv_wnd);
            }
            if got == total {
                break;
            }
        }
        assert_eq!(got, total);
        let s = s.unwrap();
        assert!(max_wnd > 1 << 20, "the receive window grew: {max_wnd}");
        assert_eq!(l.a.tcp_info(s).unwrap().rcv_wscale, 7, "the window scale fits the 6 MiB maximum");
        assert!(l.a.tcp_buffer_growth() + l.b.tcp_buffer_growth() > 0);
        // The last ACKs arrive; then, quiet, the buffers' memory goes back (and the send
        // buffer's bound).
        for _ in 0..1000 {
            l.step();
        }
        let later = l.now + Duration::from_secs(2);
        assert_eq!(l.a.housekeeping(later) + l.b.housekeeping(later), 0);
        assert_eq!(l.b.tcp_buffer_growth(), 0, "the sender's buffer is back to its size");
    }
}
