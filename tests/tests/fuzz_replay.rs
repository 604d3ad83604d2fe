//! Replays the fuzz corpus on stable Rust: every checked-in input of every target
//! (`fuzz/corpus/<target>/*`, `fuzz/regressions/<target>/*`) and the seeds built in code
//! (`tunstack_tests::fuzzing::seeds`) go through the same entry functions the cargo-fuzz
//! targets call. A crash the fuzzer found stays fixed once its input is checked in under
//! `fuzz/regressions/<target>/`.

use std::fs;
use std::path::{Path, PathBuf};

use tunstack_tests::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

/// Files named `open-*` under `fuzz/regressions/<target>/` reproduce core bugs that are
/// not fixed yet: `replay_regressions` skips them and `replay_open_bugs` runs them (mark
/// it `#[ignore]` while one is open, so the suite stays green and the input stays a
/// test). Once a bug is fixed, rename the file `fixed-*`.
fn is_open_bug(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("open-"))
}

fn replay(target: &str, entry: fn(&[u8]), sub: &str) -> usize {
    replay_filtered(target, entry, sub, |p| !is_open_bug(p))
}

fn replay_filtered(target: &str, entry: fn(&[u8]), sub: &str, keep: impl Fn(&Path) -> bool) -> usize {
    let dir = fuzz_dir().join(sub).join(target);
    let mut n = 0;
    for path in files(&dir).into_iter().filter(|p| keep(p)) {
        let data = fs::read(&path).unwrap();
        eprintln!("replay {target}: {}", path.display());
        entry(&data);
        n += 1;
    }
    n
}

#[test]
fn replay_corpus() {
    for (target, entry) in TARGETS {
        let n = replay(target, entry, "corpus");
        assert!(n > 0, "no corpus files for {target} under fuzz/corpus/{target}");
    }
}

#[test]
fn replay_regressions() {
    for (target, entry) in TARGETS {
        replay(target, entry, "regressions");
    }
}

/// Open-bug reproducers (`open-*`); none are open today (the fixed ones are `fixed-*`
/// and run in `replay_regressions`).
#[test]
fn replay_open_bugs() {
    for (target, entry) in TARGETS {
        replay_filtered(target, entry, "regressions", is_open_bug);
    }
}

#[test]
fn replay_seeds_in_code() {
    for (target, entry) in TARGETS {
        for (name, data) in fuzzing::seeds(target) {
            eprintln!("seed {target}: {name}");
            entry(&data);
        }
    }
}

/// The seeds in code and the files under fuzz/corpus must not drift apart (regenerate
/// with `cargo test -p tunstack-tests --test fuzz_replay -- --ignored write_seed_corpus`).
#[test]
fn seed_files_are_current() {
    for (target, _) in TARGETS {
        for (name, data) in fuzzing::seeds(target) {
            let path = fuzz_dir().join("corpus").join(target).join(&name);
            let on_disk = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(on_disk, data, "{} is stale", path.display());
        }
    }
}

/// The parse seeds are what they claim: the valid packets are accepted by our parser
/// (and so pass the differential check), the fragment and the truncated one are not.
#[test]
fn parse_seeds_are_accepted() {
    for (name, data) in fuzzing::seeds("parse") {
        let want = !(name.contains("fragment") || name.contains("truncated"));
        assert_eq!(fuzzing::check_parse(&data), want, "{name}");
    }
}

#[test]
#[ignore = "writes fuzz/corpus/<target>/seed-*; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for (target, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in fuzzing::seeds(target) {
            fs::write(dir.join(name), data).unwrap();
        }
    }
}

// ============================================================================ bugs found

mod found {
    use std::net::{IpAddr, SocketAddr};

    use std::time::Duration;

    use tunstack::seq::SeqNum;
    use tunstack::wire::{TcpFlags, TcpOptions, TcpRepr};
    use tunstack::TcpState;
    use tunstack_tests::fuzzing::{World, PEER_V4, STACK_V4};

    /// Found by `prop`'s `state_machine::events_keep_invariants` (minimal case: RST|ACK,
    /// SYN, Close). A connection reset by the peer stays as a CLOSED handle the
    /// application still holds (not in the demux any more). A new SYN on the same 4-tuple
    /// then reaches the listener, which creates a SYN-RECEIVED child for that 4-tuple.
    /// Closing the old handle now calls `free_socket`, which removes the demux entry of
    /// the 4-tuple without checking that it belongs to the handle being freed: the new
    /// connection becomes unreachable (its handshake ACK goes to the listener and is
    /// answered with RST) and `check_invariants` fails with "(SYN-RECEIVED) not found by
    /// its 4-tuple". `tcp_abort` on the old handle does the same.
    #[test]
    fn close_of_reset_handle_keeps_new_connection_on_same_tuple() {
        let mut w = World::new(1);
        let local = SocketAddr::new(IpAddr::V4(STACK_V4), 80);
        let l = w.stack.tcp_listen(local, 4).unwrap();
        let ti = w.establish_passive(l, local, IpAddr::V4(PEER_V4), TcpOptions::default());
        let old = w.tuples[ti].handle.unwrap();
        let info = w.stack.tcp_info(old).unwrap();
        let t = w.tuples[ti].clone();
        let seg = |flags, seq, ack| TcpRepr {
            src_port: t.remote.port(),
            dst_port: t.local.port(),
            seq,
            ack,
            flags,
            window: 65535,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        // The peer resets the connection: the application's handle is now CLOSED.
        w.peer_segment(ti, &seg(TcpFlags::RST | TcpFlags::ACK, info.rcv_nxt, info.snd_nxt));
        w.drain();
        assert_eq!(w.stack.tcp_state(old).unwrap(), TcpState::Closed);
        // The same peer port connects again: a SYN-RECEIVED child of the listener.
        w.peer_segment(ti, &seg(TcpFlags::SYN, info.rcv_nxt + 100_000, tunstack::seq::SeqNum(0)));
        w.drain();
        w.check();
        // The application releases the old handle.
        w.stack.close(old).unwrap();
        // Fails: "#N (SYN-RECEIVED) not found by its 4-tuple".
        assert_eq!(w.stack.check_invariants(), Ok(()));
    }

    /// Found by the `ingress` fuzz target (fuzz/regressions/ingress/open-close-in-syn-
    /// received-rto, 9 bytes: connect, then a SYN from the peer; the final close does
    /// the rest). Simultaneous open: our SYN-SENT connection gets the peer's SYN without
    /// ACK and moves to SYN-RECEIVED, sending SYN-ACK (SND.UNA = ISS, SND.NXT = ISS+1).
    /// The application closes: `shutdown_write` moves SYN-RECEIVED to FIN-WAIT-1 with our
    /// SYN still unacknowledged. The retransmission timeout rewinds SND.NXT to SND.UNA =
    /// ISS, and `Conn::dispatch` in FIN-WAIT-1 takes the data/FIN path, which assumes the
    /// SYN is acknowledged: `off = self.snd_nxt - seq0` with seq0 = `tx_seq0()` = ISS+1
    /// underflows, a debug-assertion panic in `SeqNum::sub` (stack/src/seq.rs:83; in a
    /// release build the offset clamps to 0 and a segment without SYN goes out at ISS).
    /// RFC 9293 3.10.4 (CLOSE in SYN-RECEIVED): the FIN waits until the connection is
    /// ESTABLISHED, or at least the SYN must be resent with it.
    #[test]
    fn close_in_syn_received_then_rto() {
        let mut w = World::new(1);
        let remote = SocketAddr::new(IpAddr::V4(PEER_V4), 8080);
        let h = w.stack.tcp_connect(w.now, remote, None).unwrap();
        let local = w.stack.local_addr(h).unwrap();
        let ti = w.add_tuple(local, remote, Some(h), SeqNum(5000));
        w.drain(); // our SYN
        let syn = TcpRepr {
            src_port: remote.port(),
            dst_port: local.port(),
            seq: SeqNum(5000),
            ack: SeqNum(0),
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        w.peer_segment(ti, &syn); // simultaneous open
        w.drain(); // our SYN-ACK
        assert_eq!(w.stack.tcp_state(h).unwrap(), TcpState::SynReceived);
        w.stack.close(h).unwrap(); // FIN-WAIT-1, SYN unacknowledged
        w.check();
        w.advance(Duration::from_secs(2)); // RTO, then dispatch: panics here
        w.check();
    }

    /// Found by the `ingress` fuzz target (fuzz/regressions/ingress/open-rto-held-by-sws-
    /// no-timer, 11 bytes: the peer of an established connection with window scaling
    /// advertises a window of 2 << 3 = 16 bytes, the application writes 3360 bytes and
    /// closes; nobody answers). The persist timer fires and a 16-byte probe goes out.
    /// Its retransmission timeout (`Conn::on_timer`) clears the timer and rewinds SND.NXT
    /// to SND.UNA; `Conn::dispatch` then holds the 16 bytes back by sender SWS avoidance
    /// (16 < max_snd_wnd / 2, RFC 9293 3.8.6.2.1) and, since bytes are still counted in
    /// flight (snd_max > snd_una), arms no timer either. The connection sits with
    /// unacknowledged data and no timer: it never retransmits, never times out, and an
    /// orphan (here FIN-WAIT-1) is never freed. RFC 6298 5.4-5.6: on expiry retransmit the
    /// earliest unacknowledged segment and restart the timer.
    #[test]
    fn rto_retransmission_held_by_sws_leaves_no_timer() {
        let mut w = World::new(1);
        let local = SocketAddr::new(IpAddr::V4(STACK_V4), 80);
        let l = w.stack.tcp_listen(local, 4).unwrap();
        let ws = TcpOptions { window_scale: Some(3), ..TcpOptions::default() };
        let ti = w.establish_passive(l, local, IpAddr::V4(PEER_V4), ws);
        let h = w.tuples[ti].handle.unwrap();
        w.peer_act(ti, tunstack_tests::fuzzing::PeerAct::AckAll { window: 2 }); // 16 bytes
        w.drain();
        w.app_send(h, 3360);
        w.drain();
        for _ in 0..100 {
            if w.stack.tcp_state(h).unwrap() == TcpState::Closed {
                break;
            }
            let info = w.stack.tcp_info(h).unwrap();
            // Fails after the first retransmission timeout: data outstanding, no timer.
            assert!(w.stack.poll_timeout().is_some(), "unacknowledged data and no timer: {info:?}");
            w.advance_to_deadline();
            w.check();
        }
        // With nobody answering, the connection must end with TimedOut.
        assert_eq!(w.stack.tcp_poll_connect(h).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    }

    /// Found by the `ingress` fuzz target (fuzz/regressions/ingress/open-active-open-
    /// stale-rcv-adv: simultaneous open with a peer SYN whose sequence number is in the
    /// upper half of the space, then 5175 bytes of data; panics with "attempt to subtract
    /// with overflow" in `Conn::rcv_wnd`, conn.rs:323, `rx_cap - rx.len()`).
    /// `Conn::process_syn_sent` sets RCV.NXT = IRS+1 and then
    /// `rcv_adv = rcv_nxt + rcv_wnd()`, but `rcv_wnd()` still sees the initial
    /// `rcv_adv = SeqNum(0)`: whenever IRS+1 lies in the half of the sequence space below
    /// 0 (about half of all peers' ISNs), 0 counts as "ahead" of RCV.NXT and the
    /// "committed" window 2^32 - (IRS+1) (up to 2^31 bytes) overrides the buffer size.
    /// The stack then accepts that much data regardless of `tcp_rx_buffer` (unbounded
    /// memory for a malicious peer; here the receive queue outgrows its buffer and
    /// `rcv_wnd` underflows). Plain active opens (SYN-ACK) are affected as well, as below.
    #[test]
    fn active_open_window_bounded_by_buffer() {
        let mut w = World::new(1);
        let remote = SocketAddr::new(IpAddr::V4(PEER_V4), 8080);
        let h = w.stack.tcp_connect(w.now, remote, None).unwrap();
        let local = w.stack.local_addr(h).unwrap();
        // The peer's ISN is in the upper half of the sequence space.
        let ti = w.add_tuple(local, remote, Some(h), SeqNum(0xffff_0000));
        w.drain();
        let synack = TcpOptions { mss: Some(1400), ..TcpOptions::default() };
        w.peer_act(ti, tunstack_tests::fuzzing::PeerAct::SynAck { window: 65535, options: synack });
        w.drain();
        assert_eq!(w.stack.tcp_state(h).unwrap(), TcpState::Established);
        let buffer = w.stack.config().tcp_rx_buffer;
        let info = w.stack.tcp_info(h).unwrap();
        // Fails: rcv_wnd is 65535 (2^32 - 0xffff0001) with a 4096-byte buffer.
        assert!(info.rcv_wnd <= buffer, "receive window {} beyond the {buffer}-byte buffer", info.rcv_wnd);
        for _ in 0..20 {
            w.peer_act(ti, tunstack_tests::fuzzing::PeerAct::Data { len: 1400, fin: false, window: 65535 });
            w.drain();
            w.check();
            assert!(w.stack.tcp_recv_queue(h).unwrap() <= buffer);
        }
    }
}
