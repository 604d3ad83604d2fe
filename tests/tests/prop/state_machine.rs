//! Property: random sequences of events against one connection (segments from a
//! simulated peer with sequence and acknowledgment numbers near the valid values, API
//! calls, timeouts) never panic and never violate `Stack::check_invariants`; every byte
//! the application reads is the peer's, every byte the stack sends is the application's;
//! and once everything is closed and every timer has run, no socket is left.
//!
//! The harness is `tunstack_tests::fuzzing::ConnHarness`, the same one the
//! `tcp_segments` fuzz target drives from raw bytes; here proptest generates the events
//! (and shrinks a failure to a short, readable list).

use std::net::Shutdown;

use proptest::prelude::*;
use tunstack::seq::SeqNum;
use tunstack::wire::{TcpFlags, TcpOptions};
use tunstack_tests::fuzzing::{
    AckBase, ConnEvent, ConnHarness, ConnSetup, OptItem, OptSpec, PayloadSpec, PeerAct, SegSpec, SeqBase, TimeStep,
};

fn seq_base() -> impl Strategy<Value = SeqBase> {
    prop_oneof![
        6 => Just(SeqBase::RcvNxt),
        2 => Just(SeqBase::RcvEdge),
        1 => Just(SeqBase::Irs),
        1 => any::<u32>().prop_map(SeqBase::Raw),
    ]
}

fn ack_base() -> impl Strategy<Value = AckBase> {
    prop_oneof![
        4 => Just(AckBase::SndNxt),
        4 => Just(AckBase::SndUna),
        1 => Just(AckBase::Iss),
        1 => any::<u32>().prop_map(AckBase::Raw),
    ]
}

fn delta() -> impl Strategy<Value = i32> {
    prop_oneof![5 => Just(0), 4 => -40..40i32, 1 => any::<i16>().prop_map(i32::from)]
}

fn flags() -> impl Strategy<Value = u8> {
    let (a, p, f, r, s) = (TcpFlags::ACK.0, TcpFlags::PSH.0, TcpFlags::FIN.0, TcpFlags::RST.0, TcpFlags::SYN.0);
    prop_oneof![
        5 => Just(a),
        3 => Just(a | p),
        2 => Just(a | f),
        1 => Just(r),
        1 => Just(r | a),
        1 => Just(s),
        1 => Just(s | a),
        2 => any::<u8>(),
    ]
}

fn window() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(65535u16), 1 => Just(0u16), 2 => any::<u16>()]
}

fn std_options() -> impl Strategy<Value = TcpOptions> {
    (any::<Option<u16>>(), any::<Option<u8>>(), any::<bool>(), any::<Option<(u32, u32)>>(), 0..4usize, any::<u32>())
        .prop_map(|(mss, window_scale, sack_permitted, timestamps, blocks, left)| {
            let mut o = TcpOptions { mss, window_scale, sack_permitted, timestamps, ..TcpOptions::default() };
            for i in 0..blocks as u32 {
                o.sack.push(SeqNum(left.wrapping_add(i * 1000)), SeqNum(left.wrapping_add(i * 1000 + 400)));
            }
            o
        })
}

fn opt_item() -> impl Strategy<Value = OptItem> {
    prop_oneof![
        Just(OptItem::Eol),
        Just(OptItem::Nop),
        any::<u16>().prop_map(OptItem::Mss),
        any::<u8>().prop_map(OptItem::WindowScale),
        Just(OptItem::SackPermitted),
        (any::<u8>(), any::<u32>(), any::<u16>()).prop_map(|(blocks, left, len)| OptItem::Sack { blocks, left, len }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| OptItem::Timestamps(a, b)),
        (any::<u8>(), any::<u8>()).prop_map(|(kind, data)| OptItem::Unknown { kind, data }),
        (any::<u8>(), any::<u8>()).prop_map(|(kind, len)| OptItem::RawLength { kind, len }),
    ]
}

fn options() -> impl Strategy<Value = OptSpec> {
    prop_oneof![
        6 => Just(OptSpec::None),
        1 => std_options().prop_map(OptSpec::Std),
        1 => prop::collection::vec(opt_item(), 0..8).prop_map(OptSpec::Raw),
    ]
}

fn payload() -> impl Strategy<Value = PayloadSpec> {
    prop_oneof![
        4 => Just(PayloadSpec::Len(0)),
        3 => (1..1500u16).prop_map(PayloadSpec::Len),
        1 => (-3..3i8).prop_map(PayloadSpec::Window),
        1 => (-2..2i8).prop_map(PayloadSpec::Mss),
    ]
}

fn seg_spec() -> impl Strategy<Value = SegSpec> {
    (flags(), seq_base(), delta(), ack_base(), delta(), window(), any::<u16>(), options(), payload()).prop_map(
        |(flags, seq, seq_delta, ack, ack_delta, window, urgent, options, payload)| SegSpec {
            flags,
            seq,
            seq_delta,
            ack,
            ack_delta,
            window,
            urgent: if flags & TcpFlags::URG.0 != 0 { urgent } else { 0 },
            options,
            payload,
        },
    )
}

fn peer_act() -> impl Strategy<Value = PeerAct> {
    prop_oneof![
        4 => window().prop_map(|window| PeerAct::AckAll { window }),
        4 => (0..3000u16, prop::bool::weighted(0.1), window()).prop_map(|(len, fin, window)| PeerAct::Data { len, fin, window }),
        1 => Just(PeerAct::Rst),
    ]
}

fn time_step() -> impl Strategy<Value = TimeStep> {
    prop_oneof![
        1 => Just(TimeStep::Zero),
        3 => (1..400u16).prop_map(TimeStep::Millis),
        3 => Just(TimeStep::Deadline),
    ]
}

fn event() -> impl Strategy<Value = ConnEvent> {
    prop_oneof![
        8 => seg_spec().prop_map(ConnEvent::Seg),
        4 => peer_act().prop_map(ConnEvent::Peer),
        3 => (0..10_000u16).prop_map(ConnEvent::Write),
        3 => (0..10_000u16).prop_map(ConnEvent::Read),
        4 => time_step().prop_map(ConnEvent::Time),
        1 => prop_oneof![Just(Shutdown::Read), Just(Shutdown::Write), Just(Shutdown::Both)].prop_map(ConnEvent::Shutdown),
        1 => any::<bool>().prop_map(ConnEvent::NoDelay),
        1 => prop_oneof![Just(ConnEvent::Close), Just(ConnEvent::Abort)],
    ]
}

fn setup() -> impl Strategy<Value = ConnSetup> {
    let peer_options = prop_oneof![
        Just(TcpOptions::default()),
        (0..=16u8).prop_map(|s| TcpOptions { mss: Some(1200), window_scale: Some(s), ..TcpOptions::default() }),
        std_options(),
    ];
    (any::<bool>(), any::<bool>(), peer_options).prop_map(|(v6, active, options)| ConnSetup { v6, active, options })
}

proptest! {
    #![proptest_config(crate::config(300))]

    /// Any events: invariants after each, no panic, no leak.
    #[test]
    fn events_keep_invariants(setup in setup(), events in prop::collection::vec(event(), 1..60)) {
        let mut c = ConnHarness::new(setup, 3);
        for ev in &events {
            c.apply(ev);
        }
        c.finish();
    }

    /// A cooperative peer (in-order data, and after every event an ACK of everything
    /// the stack sent, with the window it currently offers) and any application reads,
    /// writes and timers: in the end, with the window open, the send buffer drains
    /// completely, i.e. every byte written is sent (exactly as written) and acknowledged.
    #[test]
    fn cooperative_peer_gets_everything_written(
        setup in setup(),
        events in prop::collection::vec(prop_oneof![
            3 => (0..6000u16).prop_map(ConnEvent::Write),
            2 => (0..6000u16).prop_map(ConnEvent::Read),
            3 => time_step().prop_map(ConnEvent::Time),
            1 => window().prop_map(|window| ConnEvent::Peer(PeerAct::AckAll { window })),
            2 => (0..2000u16, window()).prop_map(|(len, window)| ConnEvent::Peer(PeerAct::Data { len, fin: false, window })),
        ], 1..50),
    ) {
        let mut c = ConnHarness::new(setup, 4);
        let mut window = 65535;
        for ev in &events {
            c.apply(ev);
            if let ConnEvent::Peer(PeerAct::AckAll { window: w } | PeerAct::Data { window: w, .. }) = ev {
                window = *w;
            }
            c.apply(&ConnEvent::Peer(PeerAct::AckAll { window }));
        }
        let mut rounds = 0;
        loop {
            let info = c.world.stack.tcp_info(c.handle).expect("the connection is alive");
            prop_assert_eq!(info.state, tunstack::TcpState::Established);
            let acked = info.snd_una.0.wrapping_sub(info.iss.0.wrapping_add(1));
            let written = c.world.tuples[c.tuple].app_sent;
            if u64::from(acked) == written {
                break;
            }
            rounds += 1;
            prop_assert!(rounds < 500, "{} of {written} bytes acknowledged after {rounds} rounds: {info:?}", acked);
            c.apply(&ConnEvent::Peer(PeerAct::AckAll { window: 65535 }));
            c.apply(&ConnEvent::Time(TimeStep::Deadline));
        }
        c.finish();
    }
}
