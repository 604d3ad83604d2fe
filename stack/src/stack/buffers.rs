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
