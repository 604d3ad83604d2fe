//! The retransmission scoreboard (RFC 6675 2 and 4, with the per-segment transmit
//! times RACK needs, RFC 8985 6.1): one entry per transmitted segment between SND.UNA
//! and SND.NXT, with its state and transmission history.
//!
//! Each entry is in exactly one [`SegState`]. The scoreboard keeps the byte counts the
//! RFC 6675 pipe needs (`sacked_out`, `lost_out`) and every state change goes through
//! its methods, which adjust them: they cannot drift from a recount. Policy (which
//! segments are lost, when a timeout means the receiver reneged on its SACKs) lives with
//! the callers in `recovery.rs` and `timer.rs`; this type only records the outcome.
//!
//! ```text
//!   Outstanding --(deemed lost)--> Lost --(retransmitted)--> Retransmitted
//!        ^                          ^                             |
//!        |                          +-------(deemed lost again)---+
//!        +--- every state --(covered by a SACK block)--> Sacked
//!        +-------------(the receiver reneged, RFC 2018 8)----+
//! ```

use std::collections::VecDeque;

use super::rate::RateStamp;
use crate::seq::SeqNum;
use crate::time::Instant;

/// Where one transmitted segment stands. The pipe (RFC 6675 2) counts `Outstanding`
/// and `Retransmitted` segments; `Lost` ones are owed a retransmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegState {
    /// Sent and neither SACKed nor deemed lost.
    Outstanding,
    /// Deemed lost (RFC 6675 IsLost, RACK, fast retransmit, a NewReno partial ACK or a
    /// timeout) and not retransmitted since: counted in `lost_out`.
    Lost,
    /// Retransmitted since it was last deemed lost.
    Retransmitted,
    /// Covered by a SACK block (RFC 6675 "SACKed"): counted in `sacked_out`.
    Sacked,
}

/// One transmitted segment on the scoreboard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SentSeg {
    pub seq: SeqNum,
    /// Sequence space: payload bytes, plus one if it carries the FIN.
    pub len: u32,
    pub fin: bool,
    pub state: SegState,
    /// Transmissions so far (Karn's algorithm, RFC 6298 3: only 1 gives an RTT sample).
    pub tx_count: u16,
    pub first_tx: Instant,
    pub last_tx: Instant,
    /// Delivery-rate snapshot of the last transmission (`rate.rs`).
    pub rate: RateStamp,
}

impl SentSeg {
    pub fn end(&self) -> SeqNum {
        self.seq + self.len as usize
    }

    pub fn data_len(&self) -> usize {
        self.len as usize - self.fin as usize
    }

    pub fn is_sacked(&self) -> bool {
        self.state == SegState::Sacked
    }

    /// RFC 8985 6.2 step 2: a retransmitted segment acknowledged sooner than min_rtt
    /// after its last transmission was delivered by an earlier copy: which copy is
    /// unknown, so it gives no RACK sample.
    pub fn ambiguous(&self, now: Instant, min_rtt: Option<std::time::Duration>) -> bool {
        self.tx_count > 1 && min_rtt.is_some_and(|m| now.saturating_duration_since(self.last_tx) < m)
    }
}

/// The sent segments between SND.UNA and SND.NXT, in sequence order, and their byte
/// counts by state (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<SentSeg>,
    /// Bytes of `Sacked` segments.
    sacked_out: usize,
    /// Bytes of `Lost` segments.
    lost_out: usize,
    /// Bytes ever deemed lost (a running total: congestion control's loss count per ACK).
    lost_total: u64,
}

impl Scoreboard {
    pub fn new() -> Scoreboard {
        Scoreboard::default()
    }

    pub fn len(&self) -> usize {
        self.segs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    pub fn front(&self) -> Option<&SentSeg> {
        self.segs.front()
    }

    pub fn get(&self, i: usize) -> Option<&SentSeg> {
        self.segs.get(i)
    }

    /// Bytes the peer has SACKed above SND.UNA.
    #[inline]
    pub fn sacked_out(&self) -> usize {
        self.sacked_out
    }

    /// Bytes deemed lost and not yet retransmitted.
    #[inline]
    pub fn lost_out(&self) -> usize {
        self.lost_out
    }

    /// Bytes ever deemed lost (every transition into `Lost`).
    #[inline]
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Record entry `i`'s delivery-rate snapshot (taken when it was last sent).
    #[inline]
    pub fn set_rate_stamp(&mut self, i: usize, stamp: RateStamp) {
        if let Some(e) = self.segs.get_mut(i) {
            e.rate = stamp;
        }
    }

    /// Index of the first entry that starts at or after `seq`.
    pub fn first_from(&self, seq: SeqNum) -> usize {
        self.segs.partition_point(|e| e.seq < seq)
    }

    /// Index of the first `Lost` entry: the next retransmission (RFC 6675 NextSeg rule 1).
    pub fn first_lost(&self) -> Option<usize> {
        if self.lost_out == 0 {
            return None;
        }
        self.segs.iter().position(|e| e.state == SegState::Lost)
    }

    /// Index of the last entry not SACKed (RFC 8985 7.3: what a tail loss probe resends).
    pub fn last_unsacked(&self) -> Option<usize> {
        self.segs.iter().rposition(|e| e.state != SegState::Sacked)
    }

    /// A segment just went out for the first time at `seq`.
    pub fn push(&mut self, now: Instant, seq: SeqNum, len: usize, fin: bool) {
        self.segs.push_back(SentSeg {
            seq,
            len: len as u32,
            fin,
            state: SegState::Outstanding,
            tx_count: 1,
            first_tx: now,
            last_tx: now,
            rate: RateStamp::default(),
        });
    }

    /// Move entry `i` to `to`, keeping the counters in step: the only place a state is
    /// written after `push`.
    #[inline]
    fn set_state(&mut self, i: usize, to: SegState) {
        let Some(e) = self.segs.get_mut(i) else { return };
        let len = e.len as usize;
        match e.state {
            SegState::Sacked => self.sacked_out -= len,
            SegState::Lost => self.lost_out -= len,
            SegState::Outstanding | SegState::Retransmitted => {}
        }
        match to {
            SegState::Sacked => self.sacked_out += len,
            SegState::Lost => {
                self.lost_out += len;
                self.lost_total += len as u64;
            }
            SegState::Outstanding | SegState::Retransmitted => {}
        }
        e.state = to;
    }

    /// Deem entry `i` lost. Only an `Outstanding` or `Retransmitted` segment changes (a
    /// SACKed one is delivered; a `Lost` one already is). Returns whether it changed.
    pub fn mark_lost(&mut self, i: usize) -> bool {
        match self.segs.get(i).map(|e| e.state) {
            Some(SegState::Outstanding | SegState::Retransmitted) => {
                self.set_state(i, SegState::Lost);
                true
            }
            _ => false,
        }
    }

    /// Entry `i` went out again at `now`: a `Lost` segment becomes `Retransmitted`, any
    /// other keeps its state (a tail loss probe may resend one not deemed lost).
    pub fn on_retransmit(&mut self, i: usize, now: Instant) {
        let Some(e) = self.segs.get_mut(i) else { return };
        e.tx_count = e.tx_count.saturating_add(1);
        e.last_tx = now;
        if e.state == SegState::Lost {
            self.set_state(i, SegState::Retransmitted);
        }
    }

    /// Cut entry `i` after `first` bytes of payload into two entries with its state and
    /// transmission history; the second keeps the FIN. For a retransmission after the
    /// path MTU went down (RFC 1191 6.4: what was sent at the old size goes again at the
    /// new one). The byte counters do not change.
    pub fn split(&mut self, i: usize, first: usize) {
        let Some(e) = self.segs.get(i).copied() else { return };
        if first == 0 || first >= e.data_len() {
            return;
        }
        let tail = SentSeg { seq: e.seq + first, len: e.len - first as u32, ..e };
        let head = &mut self.segs[i];
        head.len = first as u32;
        head.fin = false;
        self.segs.insert(i + 1, tail);
    }

    /// Mark every entry lying wholly inside the SACK block `[left, right)` SACKed
    /// (RFC 6675 update of the scoreboard), calling `each` with every newly SACKed one
    /// (as it was before). Returns whether anything was newly SACKed.
    pub fn sack(&mut self, left: SeqNum, right: SeqNum, mut each: impl FnMut(&SentSeg)) -> bool {
        let mut i = self.first_from(left);
        let mut any = false;
        while let Some(e) = self.segs.get(i) {
            if e.end() > right {
                break;
            }
            if e.state != SegState::Sacked {
                each(e);
                self.set_state(i, SegState::Sacked);
                any = true;
            }
            i += 1;
        }
        any
    }

    /// The cumulative ACK reached `ack`: remove the entries it covers, calling `each` with
    /// every removed one, and trim an entry it covers in part. Returns the payload bytes
    /// acknowledged (what leaves the send buffer).
    #[inline]
    pub fn acknowledge(&mut self, ack: SeqNum, mut each: impl FnMut(&SentSeg)) -> usize {
        let mut data_acked = 0usize;
        while let Some(front) = self.segs.front_mut() {
            if front.end() <= ack {
                let e = *front;
                self.segs.pop_front();
                match e.state {
                    SegState::Sacked => self.sacked_out -= e.len as usize,
                    SegState::Lost => self.lost_out -= e.len as usize,
                    SegState::Outstanding | SegState::Retransmitted => {}
                }
                data_acked += e.data_len();
                each(&e);
            } else {
                if front.seq < ack {
                    // Partially acknowledged segment: trim its front.
                    let cut = ack - front.seq;
                    data_acked += cut.min(front.data_len());
                    front.seq = ack;
                    front.len -= cut as u32;
                    match front.state {
                        SegState::Sacked => self.sacked_out -= cut,
                        SegState::Lost => self.lost_out -= cut,
                        SegState::Outstanding | SegState::Retransmitted => {}
                    }
                }
                break;
            }
        }
        data_acked
    }

    /// The retransmission timer expired: every segment not SACKed is lost (RFC 6675
    /// 5.1), and so, always, is the one at SND.UNA (RFC 6298 5.4, RFC 8985 6.3). If that
    /// one is marked SACKed, the receiver reneged on data it had SACKed (had it kept it,
    /// it would have acknowledged it, RFC 2018 8): then no SACK mark can be trusted,
    /// all are forgotten and the whole flight is lost (as Linux's
    /// tcp_timeout_mark_lost does). Returns whether the receiver reneged.
    pub fn mark_lost_on_timeout(&mut self) -> bool {
        let reneged = self.segs.front().is_some_and(SentSeg::is_sacked);
        if reneged {
            self.forget_sacks();
        }
        for i in 0..self.segs.len() {
            self.mark_lost(i);
        }
        reneged
    }

    /// The receiver reneged (RFC 2018 8): every SACKed segment is outstanding again.
    pub fn forget_sacks(&mut self) {
        if self.sacked_out == 0 {
            return;
        }
        for i in 0..self.segs.len() {
            if self.segs[i].state == SegState::Sacked {
                self.set_state(i, SegState::Outstanding);
            }
        }
    }

    /// Forget everything (the connection timed out).
    pub fn clear(&mut self) {
        self.segs.clear();
        self.sacked_out = 0;
        self.lost_out = 0;
    }

    /// Give the storage back if empty (housekeeping of idle connections).
    pub fn release_if_empty(&mut self) {
        if self.segs.is_empty() && self.segs.capacity() > 0 {
            self.segs = VecDeque::new();
        }
    }

    /// Bytes of storage allocated.
    pub fn allocated(&self) -> usize {
        self.segs.capacity() * std::mem::size_of::<SentSeg>()
    }

    /// The entries cover `[una, nxt)` without gaps or empty entries and the counters
    /// equal a recount. `Err` names the first violation.
    pub fn check(&self, una: SeqNum, nxt: SeqNum) -> Result<(), &'static str> {
        let mut at = una;
        for e in &self.segs {
            if e.seq != at || e.len == 0 {
                return Err("scoreboard has a gap or an empty entry");
            }
            at = e.end();
        }
        if at != nxt {
            return Err("scoreboard does not end at SND.NXT");
        }
        self.check_counters()
    }

    /// The counters equal a recount of the entries.
    pub fn check_counters(&self) -> Result<(), &'static str> {
        let count = |s: SegState| self.segs.iter().filter(|e| e.state == s).map(|e| e.len as usize).sum::<usize>();
        if count(SegState::Sacked) != self.sacked_out || count(SegState::Lost) != self.lost_out {
            return Err("scoreboard counters out of step");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: SeqNum = SeqNum(4_294_960_000); // wraps within the test's sequence space

    /// `n` segments of `len` bytes from BASE, sent at t = 0, 1, 2... ms.
    fn board(n: usize, len: usize) -> Scoreboard {
        let mut sb = Scoreboard::new();
        for i in 0..n {
            sb.push(Instant::from_millis(i as u64), BASE + i * len, len, false);
        }
        sb
    }

    fn states(sb: &Scoreboard) -> Vec<SegState> {
        sb.segs.iter().map(|e| e.state).collect()
    }

    use SegState::*;

    #[test]
    fn every_transition_keeps_the_counters() {
        let mut sb = board(4, 100);
        assert_eq!((sb.sacked_out(), sb.lost_out()), (0, 0));
        assert!(sb.mark_lost(1));
        assert!(!sb.mark_lost(1), "already lost");
        assert_eq!(sb.lost_out(), 100);
        assert_eq!(sb.first_lost(), Some(1));
        sb.on_retransmit(1, Instant::from_millis(9));
        assert_eq!((sb.get(1).unwrap().tx_count, sb.get(1).unwrap().last_tx), (2, Instant::from_millis(9)));
        assert_eq!((sb.lost_out(), sb.first_lost()), (0, None));
        assert!(sb.mark_lost(1), "a retransmission can be lost again");
        let mut seen = Vec::new();
        assert!(sb.sack(BASE + 100, BASE + 300, |e| seen.push((e.seq, e.state))));
        assert_eq!(seen, vec![(BASE + 100, Lost), (BASE + 200, Outstanding)]);
        assert_eq!((sb.sacked_out(), sb.lost_out()), (200, 0));
        assert!(!sb.mark_lost(2), "a SACKed segment is delivered, never lost");
        assert!(!sb.sack(BASE + 100, BASE + 300, |_| panic!("nothing new")));
        assert_eq!(states(&sb), vec![Outstanding, Sacked, Sacked, Outstanding]);
        assert_eq!(sb.last_unsacked(), Some(3));
        sb.on_retransmit(3, Instant::from_millis(10));
        assert_eq!(sb.get(3).unwrap().state, Outstanding, "a probe of an outstanding segment");
        sb.mark_lost_on_timeout();
        assert_eq!(states(&sb), vec![Lost, Sacked, Sacked, Lost]);
        assert_eq!((sb.sacked_out(), sb.lost_out()), (200, 200));
        sb.check(BASE, BASE + 400).unwrap();
        // A partial ACK trims the first entry; the counters follow.
        assert_eq!(sb.acknowledge(BASE + 30, |_| panic!("nothing wholly acknowledged")), 30);
        assert_eq!((sb.front().unwrap().seq, sb.front().unwrap().len, sb.lost_out()), (BASE + 30, 70, 170));
        let mut gone = Vec::new();
        assert_eq!(sb.acknowledge(BASE + 250, |e| gone.push(e.state)), 220);
        assert_eq!(gone, vec![Lost, Sacked]);
        assert_eq!((sb.sacked_out(), sb.lost_out()), (50, 100));
        sb.check(BASE + 250, BASE + 400).unwrap();
        sb.clear();
        assert_eq!((sb.len(), sb.sacked_out(), sb.lost_out()), (0, 0, 0));
    }

    #[test]
    fn a_timeout_resends_the_left_edge_and_a_sacked_one_means_reneging() {
        // Not reneged: the SACKed segments above an un-SACKed SND.UNA stay SACKed.
        let mut sb = board(3, 100);
        sb.sack(BASE + 100, BASE + 200, |_| {});
        assert!(!sb.mark_lost_on_timeout());
        assert_eq!(states(&sb), vec![Lost, Sacked, Lost]);
        // SND.UNA itself SACKed: the receiver threw it away; forget every SACK mark.
        let mut sb = board(4, 100);
        sb.sack(BASE, BASE + 100, |_| {});
        sb.sack(BASE + 200, BASE + 300, |_| {});
        assert!(sb.mark_lost_on_timeout());
        assert_eq!(states(&sb), vec![Lost, Lost, Lost, Lost]);
        assert_eq!((sb.sacked_out(), sb.lost_out(), sb.first_lost()), (0, 400, Some(0)));
        sb.check(BASE, BASE + 400).unwrap();
        assert!(!Scoreboard::new().mark_lost_on_timeout(), "nothing outstanding");
    }

    #[test]
    fn forgetting_sacks_puts_them_back_in_flight() {
        let mut sb = board(3, 100);
        sb.mark_lost(0);
        sb.sack(BASE + 100, BASE + 300, |_| {});
        sb.forget_sacks();
        assert_eq!(states(&sb), vec![Lost, Outstanding, Outstanding]);
        assert_eq!((sb.sacked_out(), sb.lost_out()), (0, 100));
    }

    #[test]
    fn sack_marks_only_whole_segments_inside_the_block() {
        let mut sb = board(3, 100);
        assert!(!sb.sack(BASE + 50, BASE + 150, |_| {}), "covers no segment wholly");
        assert!(sb.sack(BASE + 50, BASE + 200, |_| {}));
        assert_eq!(states(&sb), vec![Outstanding, Sacked, Outstanding]);
    }

    #[test]
    fn a_fin_counts_in_sequence_space_not_in_data() {
        let mut sb = board(1, 100);
        sb.push(Instant::ZERO, BASE + 100, 1, true);
        assert_eq!(sb.get(1).unwrap().data_len(), 0);
        assert_eq!(sb.acknowledge(BASE + 101, |_| {}), 100);
        assert!(sb.is_empty());
    }

    #[test]
    fn storage_is_released_when_empty() {
        let mut sb = board(10, 100);
        assert!(sb.allocated() >= 10 * std::mem::size_of::<SentSeg>());
        sb.release_if_empty();
        assert!(sb.allocated() > 0);
        sb.acknowledge(BASE + 1000, |_| {});
        sb.release_if_empty();
        assert_eq!(sb.allocated(), 0);
    }

    #[test]
    fn check_finds_gaps_and_a_wrong_end() {
        let sb = board(3, 100);
        assert!(sb.check(BASE, BASE + 300).is_ok());
        assert!(sb.check(BASE + 1, BASE + 300).is_err());
        assert!(sb.check(BASE, BASE + 299).is_err());
    }

    /// One operation on the scoreboard, for the proptest.
    #[derive(Clone, Debug)]
    enum Op {
        Push(u16),
        Sack(u16, u16),
        Lost(u8),
        Retransmit(u8),
        Ack(u16),
        Timeout,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u16..1500).prop_map(Op::Push),
            3 => (0u16..6000, 0u16..3000).prop_map(|(a, b)| Op::Sack(a, b)),
            2 => any::<u8>().prop_map(Op::Lost),
            2 => any::<u8>().prop_map(Op::Retransmit),
            2 => (0u16..3000).prop_map(Op::Ack),
            1 => Just(Op::Timeout),
        ]
    }

    proptest! {
        /// Whatever the sequence of operations, the counters equal a recount and the
        /// entries tile [SND.UNA, SND.NXT).
        #[test]
        fn counters_equal_a_recount(ops in proptest::collection::vec(op(), 1..80)) {
            let mut sb = Scoreboard::new();
            let (mut una, mut nxt) = (BASE, BASE);
            let mut now = Instant::ZERO;
            for op in ops {
                now += std::time::Duration::from_millis(1);
                match op {
                    Op::Push(len) => {
                        sb.push(now, nxt, len as usize, false);
                        nxt += len as usize;
                    }
                    Op::Sack(off, len) => {
                        let left = una + off as usize;
                        sb.sack(left, left + len as usize, |e| assert!(!e.is_sacked()));
                    }
                    Op::Lost(i) if !sb.is_empty() => {
                        let i = i as usize % sb.len();
                        let before = sb.get(i).unwrap().state;
                        let changed = sb.mark_lost(i);
                        prop_assert_eq!(changed, matches!(before, Outstanding | Retransmitted));
                        prop_assert!(changed || sb.get(i).unwrap().state == before);
                    }
                    Op::Retransmit(i) if !sb.is_empty() => sb.on_retransmit(i as usize % sb.len(), now),
                    Op::Ack(n) => {
                        let ack = una + (n as usize).min(nxt - una);
                        let held = |sb: &Scoreboard| sb.segs.iter().map(|e| e.data_len()).sum::<usize>();
                        let before = held(&sb);
                        let acked = sb.acknowledge(ack, |_| {});
                        prop_assert_eq!(acked, before - held(&sb));
                        una = ack;
                    }
                    Op::Timeout => {
                        let front_sacked = sb.front().is_some_and(SentSeg::is_sacked);
                        prop_assert_eq!(sb.mark_lost_on_timeout(), front_sacked);
                        prop_assert!(sb.segs.iter().all(|e| matches!(e.state, Lost | Sacked)));
                        prop_assert!(sb.front().is_none_or(|e| e.state == Lost), "SND.UNA is always lost");
                        if front_sacked {
                            prop_assert!(sb.segs.iter().all(|e| e.state == Lost));
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(sb.check(una, nxt), Ok(()));
            }
        }
    }
}
