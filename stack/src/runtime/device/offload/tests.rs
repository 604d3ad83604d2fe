use proptest::prelude::*;

use super::*;
use crate::wire::checksum::verify;

const ACK: u8 = 0x10;

/// A TCP segment (IPv4 with DF, or IPv6) with a timestamp option and correct checksums.
fn tcp_pkt(v6: bool, sport: u16, id: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ip_len = if v6 { 40 } else { 20 };
    let tcp_len = 32;
    let len = ip_len + tcp_len + payload.len();
    let mut p = vec![0u8; len];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        write_v4_checksum(&mut p[..20]);
    }
    let t = &mut p[ip_len..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&40000u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&7777u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    // NOP NOP timestamps
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 9]);
    t[32..].copy_from_slice(payload);
    let sum = accumulate(pseudo_sum(&p, v6, len - ip_len), &p[ip_len..]);
    p[ip_len + 16..ip_len + 18].copy_from_slice(&finish(sum).to_be_bytes());
    p
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Both checksums of a segment verify.
fn checksums_ok(p: &[u8]) -> bool {
    let h = tcp_headers(p).expect("a TCP packet");
    let ip_ok = h.v6 || verify(accumulate(0, &p[..h.ip_len]));
    ip_ok && verify(accumulate(pseudo_sum(p, h.v6, h.total - h.ip_len), &p[h.ip_len..h.total]))
}

fn ingest_all(hdr: &VnetHdr, pkt: &[u8], max_len: usize) -> Result<Vec<Vec<u8>>, RxError> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut copy = pkt.to_vec();
    ingest(hdr, &mut copy, max_len, &mut scratch, true, |s| out.push(s.to_vec()))?;
    // Without checksums, the same packets once their partial checksums are completed.
    let mut lazy = Vec::new();
    let mut copy = pkt.to_vec();
    let done = ingest(hdr, &mut copy, max_len, &mut scratch, false, |s| lazy.push(s.to_vec()))?;
    if let Some((start, offset)) = done.partial {
        for p in &mut lazy {
            complete_checksum(p, start, offset).unwrap();
        }
    }
    assert_eq!(lazy, out, "completing the partial checksums later gives the same packets");
    Ok(out)
}

fn coalesce(pkts: &[Vec<u8>]) -> (Vec<(VnetHdr, Vec<u8>)>, Coalescer) {
    let mut c = Coalescer::new();
    let mut out = Vec::new();
    let mut emit = |b: &[u8]| out.push((VnetHdr::parse(b).unwrap(), b[VNET_HDR_LEN..].to_vec()));
    for p in pkts {
        c.push(p, &mut emit);
    }
    c.flush(&mut emit);
    (out, c)
}

/// A super-segment as the kernel hands it over: whole lengths, pseudo-header sum in
/// the checksum field, NEEDS_CSUM.
fn super_segment(v6: bool, seq: u32, flags: u8, payload: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
    let mut p = tcp_pkt(v6, 80, 100, seq, flags, payload);
    let ipl = if v6 { 40 } else { 20 };
    let ps = fold(pseudo_sum(&p, v6, p.len() - ipl));
    p[ipl + 16..ipl + 18].copy_from_slice(&ps.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (ipl + 32) as u16,
        gso_size: mss,
        csum_start: ipl as u16,
        csum_offset: 16,
    };
    (hdr, p)
}

#[test]
fn header_round_trip() {
    let h = VnetHdr { flags: 1, gso_type: 4, hdr_len: 72, gso_size: 1428, csum_start: 40, csum_offset: 16 };
    assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
    assert_eq!(VnetHdr::parse(&[0; 9]), None);
}

#[test]
fn split_with_odd_gso_size() {
    for v6 in [false, true] {
        let payload = data(5000, 3);
        let (hdr, sup) = super_segment(v6, 0xffff_fc00, ACK | TCP_PSH | TCP_FIN, &payload, 999);
        let segs = ingest_all(&hdr, &sup, 1500).unwrap();
        assert_eq!(segs.len(), 6, "5000 bytes in 999-byte segments");
        let ipl = if v6 { 40 } else { 20 };
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(checksums_ok(s), "segment {i} checksums (v6 {v6})");
            let seq = u32::from_be_bytes(s[ipl + 4..ipl + 8].try_into().unwrap());
            assert_eq!(seq, 0xffff_fc00u32.wrapping_add(999 * i as u32), "sequence number wraps");
            let flags = s[ipl + 13];
            if i == 5 {
                assert_eq!(flags, ACK | TCP_PSH | TCP_FIN);
                assert_eq!(s.len() - ipl - 32, 5000 - 5 * 999);
            } else {
                assert_eq!(flags, ACK, "PSH/FIN only on the last");
                assert_eq!(s.len() - ipl - 32, 999);
            }
            if !v6 {
                assert_eq!(u16::from_be_bytes([s[4], s[5]]), 100 + i as u16, "IPv4 id advances");
            }
            // The same as the core would have been sent by a peer segment by segment.
            let want = tcp_pkt(v6, 80, 100 + i as u16, seq, flags, &s[ipl + 32..]);
            assert_eq!(s, &want);
            joined.extend_from_slice(&s[ipl + 32..]);
        }
        assert_eq!(joined, payload);
    }
}

#[test]
fn split_keeps_cwr_on_the_first_only_and_short_super_segment_passes() {
    let (hdr, sup) = super_segment(false, 1, ACK | TCP_CWR, &data(300, 1), 200);
    let segs = ingest_all(&hdr, &sup, 1500).unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0][33], ACK | TCP_CWR);
    assert_eq!(segs[1][33], ACK);
    // Payload no longer than gso_size: one segment, with a full checksum.
    let (hdr, sup) = super_segment(true, 1, ACK, &data(100, 1), 200);
    let segs = ingest_all(&hdr, &sup, 1500).unwrap();
    assert_eq!(segs, [tcp_pkt(true, 80, 100, 1, ACK, &data(100, 1))]);
}

#[test]
fn needs_csum_is_completed() {
    for v6 in [false, true] {
        let want = tcp_pkt(v6, 80, 1, 1, ACK, &data(333, 9));
        let mut p = want.clone();
        let ipl = if v6 { 40 } else { 20 };
        let ps = fold(pseudo_sum(&p, v6, p.len() - ipl));
        p[ipl + 16..ipl + 18].copy_from_slice(&ps.to_be_bytes());
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: ipl as u16, csum_offset: 16, ..VnetHdr::default() };
        assert_eq!(ingest_all(&hdr, &p, 1500).unwrap(), [want.as_slice()]);
        // Without NEEDS_CSUM (or with DATA_VALID) the packet passes untouched.
        let valid = VnetHdr { flags: F_DATA_VALID, ..VnetHdr::default() };
        assert_eq!(ingest_all(&valid, &want, 1500).unwrap(), [want.as_slice()]);
    }
}

#[test]
fn bad_csum_offsets_are_refused() {
    let p = tcp_pkt(false, 80, 1, 1, ACK, &data(10, 0));
    let len = p.len() as u16;
    for (start, offset) in [(len, 0), (len - 1, 0), (20, len), (u16::MAX, u16::MAX), (0, len - 1)] {
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: start, csum_offset: offset, ..VnetHdr::default() };
        assert_eq!(ingest_all(&hdr, &p, 1500), Err(RxError::BadCsumOffsets), "start {start} offset {offset}");
    }
    assert!(complete_checksum(&mut [], 0, 0).is_err());
}

#[test]
fn malformed_gso_is_refused() {
    let (hdr, sup) = super_segment(false, 1, ACK, &data(3000, 1), 1000);
    let udp = VnetHdr { gso_type: GSO_UDP, ..hdr };
    assert_eq!(ingest_all(&udp, &sup, 1500), Err(RxError::UnsupportedGso));
    let zero = VnetHdr { gso_size: 0, ..hdr };
    assert_eq!(ingest_all(&zero, &sup, 1500), Err(RxError::BadGsoPacket));
    let family = VnetHdr { gso_type: GSO_TCPV6, ..hdr };
    assert_eq!(ingest_all(&family, &sup, 1500), Err(RxError::BadGsoPacket));
    assert_eq!(ingest_all(&hdr, &sup[..30], 1500), Err(RxError::BadGsoPacket), "truncated");
    assert_eq!(ingest_all(&hdr, &sup, 500), Err(RxError::TooLong), "segments longer than the MTU");
    let mut not_tcp = sup.clone();
    not_tcp[9] = 17;
    assert_eq!(ingest_all(&hdr, &not_tcp, 1500), Err(RxError::BadGsoPacket));
    let ecn = VnetHdr { gso_type: GSO_TCPV4 | GSO_ECN, ..hdr };
    assert_eq!(ingest_all(&ecn, &sup, 1500).unwrap().len(), 3);
}

/// A UDP super-datagram as the kernel hands it over with USO: one IP and UDP header
/// for all the payload, the UDP checksum field holding the pseudo-header sum.
fn udp_super(v6: bool, payload: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
    } else {
        ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
    };
    let mut p = vec![0u8; 48 + payload.len()];
    let repr = crate::wire::UdpRepr { src_port: 5353, dst_port: 53, payload };
    let n = crate::wire::emit_udp(&mut p, src, dst, &repr).unwrap();
    p.truncate(n);
    let ip_len = if v6 { 40 } else { 20 };
    let ps = fold(pseudo_sum_of(&p, v6, n - ip_len, proto::UDP));
    p[ip_len + 6..ip_len + 8].copy_from_slice(&ps.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: (ip_len + 8) as u16,
        gso_size: mss,
        csum_start: ip_len as u16,
        csum_offset: 6,
    };
    (hdr, p)
}

/// USO: a super-datagram is cut into datagrams of `gso_size` bytes that parse with
/// valid checksums and carry the payload in order; the last may be short.
#[test]
fn udp_super_datagrams_are_cut() {
    for v6 in [false, true] {
        let payload = data(1000, 7);
        let (hdr, sup) = udp_super(v6, &payload, 300);
        let dgrams = ingest_all(&hdr, &sup, 1500).unwrap();
        assert_eq!(dgrams.len(), 4);
        let mut joined = Vec::new();
        for (i, d) in dgrams.iter().enumerate() {
            let p = crate::wire::parse(d).unwrap_or_else(|e| panic!("datagram {i} ({v6}): {e:?}"));
            let crate::wire::Transport::Udp(u) = p.transport else { panic!("not UDP") };
            assert_eq!((u.src_port, u.dst_port), (5353, 53));
            assert_eq!(u.payload.len(), if i < 3 { 300 } else { 100 });
            joined.extend_from_slice(u.payload);
        }
        assert_eq!(joined, payload);
    }
    let (hdr, sup) = udp_super(false, &data(1000, 7), 300);
    assert_eq!(ingest_all(&hdr, &sup, 200), Err(RxError::TooLong));
    assert_eq!(ingest_all(&VnetHdr { gso_size: 0, ..hdr }, &sup, 1500), Err(RxError::BadGsoPacket));
    let mut tcp = sup.clone();
    tcp[9] = 6;
    assert_eq!(ingest_all(&hdr, &tcp, 1500), Err(RxError::BadGsoPacket));
    assert_eq!(ingest_all(&hdr, &sup[..24], 1500), Err(RxError::BadGsoPacket), "truncated");
}

/// One UDP datagram 10.0.0.2:53 -> 10.0.0.1:5353 (or the IPv6 pair) with IPv4
/// identification `id` and valid checksums.
fn udp_pkt(v6: bool, id: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        ("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap())
    } else {
        ("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())
    };
    let mut p = vec![0u8; 48 + payload.len()];
    let n = crate::wire::emit_udp(&mut p, src, dst, &crate::wire::UdpRepr { src_port: 53, dst_port: 5353, payload })
        .unwrap();
    p.truncate(n);
    if !v6 {
        p[4..6].copy_from_slice(&id.to_be_bytes());
        write_v4_checksum(&mut p[..20]);
    }
    p
}

/// USO on send: same-flow datagrams of one size (the last may be shorter) become one
/// `GSO_UDP_L4` super-datagram that cuts back into them; a TCP segment or another flow
/// in between ends it; without `with_udp` nothing is merged.
#[test]
fn udp_datagrams_coalesce_and_cut_back() {
    for v6 in [false, true] {
        let dgrams: Vec<Vec<u8>> =
            (0..4u16).map(|i| udp_pkt(v6, 100 + i, &data(if i < 3 { 300 } else { 120 }, i as u8))).collect();
        let mut c = Coalescer::with_udp();
        let mut out = Vec::new();
        let mut emit = |b: &[u8]| out.push((VnetHdr::parse(b).unwrap(), b[VNET_HDR_LEN..].to_vec()));
        for d in &dgrams {
            c.push(d, &mut emit);
        }
        c.flush(&mut emit);
        assert_eq!(out.len(), 1, "one super-datagram");
        let (hdr, sup) = &out[0];
        assert_eq!((hdr.gso_type, hdr.gso_size, hdr.flags), (GSO_UDP_L4, 300, F_NEEDS_CSUM));
        assert_eq!(ingest_all(hdr, sup, 1500).unwrap(), dgrams, "cut back into the datagrams");
        let mut plain = Coalescer::new();
        let mut n = 0;
        for d in &dgrams {
            plain.push(d, &mut |b: &[u8]| {
                assert_eq!(VnetHdr::parse(b).unwrap().gso_type, GSO_NONE);
                n += 1;
            });
        }
        plain.flush(&mut |_: &[u8]| n += 1);
        assert_eq!(n, 4);
    }
    // A longer datagram after the first cannot join; nor can a datagram after a short one.
    let mut c = Coalescer::with_udp();
    let mut kinds = Vec::new();
    let mut emit = |b: &[u8]| kinds.push(VnetHdr::parse(b).unwrap().gso_type);
    for (i, len) in [200usize, 300, 100, 100, 50, 60].into_iter().enumerate() {
        c.push(&udp_pkt(false, i as u16, &data(len, 1)), &mut emit);
    }
    c.flush(&mut emit);
    assert_eq!(kinds, [GSO_NONE, GSO_UDP_L4, GSO_UDP_L4, GSO_NONE]);
}

#[test]
fn coalescer_merges_runs_and_passes_the_rest() {
    let mss = 1000;
    let a: Vec<Vec<u8>> = (0..3u32)
        .map(|i| {
            tcp_pkt(false, 80, i as u16, 5000 + i * mss, if i == 2 { ACK | TCP_PSH } else { ACK }, &data(1000, i as u8))
        })
        .collect();
    let mut udp = a[0].clone();
    udp[9] = 17;
    let other_flow = tcp_pkt(false, 81, 0, 1, ACK, &data(1000, 7));
    let pure_ack = tcp_pkt(false, 80, 0, 8000, ACK, &[]);
    let next = tcp_pkt(false, 80, 0, 8000, ACK, &data(1000, 1));
    let gap = tcp_pkt(false, 80, 1, 9500, ACK, &data(1000, 1));
    let input =
        [a.clone(), vec![udp.clone(), other_flow.clone(), pure_ack.clone(), next.clone(), gap.clone()]].concat();
    let (out, c) = coalesce(&input);
    assert_eq!(out.len(), 6);
    assert_eq!(out[0].0.gso_type, GSO_TCPV4);
    assert_eq!(out[0].0.gso_size, 1000);
    assert_eq!(out[0].0.flags, F_NEEDS_CSUM);
    assert_eq!(ingest_all(&out[0].0, &out[0].1, 1500).unwrap(), a);
    for (o, want) in out[1..].iter().zip([&udp, &other_flow, &pure_ack, &next, &gap]) {
        assert_eq!(o.0, VnetHdr::default());
        assert_eq!(&o.1, want);
    }
    assert_eq!((c.merged_packets, c.merged_segments), (1, 3));
}

#[test]
fn coalescer_ignores_ipv4_ids_of_atomic_datagrams() {
    // The core sends every IPv4 datagram with id 0 and DF.
    let segs: Vec<Vec<u8>> = (0..4u32).map(|i| tcp_pkt(false, 80, 0, i * 500, ACK, &data(500, 1))).collect();
    let (out, _) = coalesce(&segs);
    assert_eq!(out.len(), 1);
    let back = ingest_all(&out[0].0, &out[0].1, 1500).unwrap();
    assert_eq!(back.len(), 4);
    for (i, (b, s)) in back.iter().zip(&segs).enumerate() {
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), i as u16);
        assert_eq!(b[20..], s[20..]);
        assert!(checksums_ok(b));
    }
}

#[test]
fn coalescer_stops_at_64k() {
    let segs: Vec<Vec<u8>> = (0..100u32).map(|i| tcp_pkt(true, 80, 0, i * 1400, ACK, &data(1400, i as u8))).collect();
    let (out, _) = coalesce(&segs);
    assert!(out.len() >= 3);
    for (h, p) in &out {
        assert!(p.len() - 40 <= 65535);
        assert!(h.gso_type == GSO_TCPV6 || h.gso_type == GSO_NONE);
    }
    let back: Vec<Vec<u8>> = out.iter().flat_map(|(h, p)| ingest_all(h, p, 1500).unwrap()).collect();
    assert_eq!(back, segs);
}

/// One flow's segments: payload lengths, PSH on the last of a write, a possible FIN.
fn flows() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        any::<bool>(),
        1usize..=1460,
        prop::collection::vec((0usize..=1460, any::<bool>(), 0u8..4, any::<bool>()), 1..40),
        any::<u32>(),
    )
        .prop_map(|(v6, mss, segs, seq0)| {
            let mut seq = seq0;
            let mut out = Vec::new();
            for (i, (len, psh, sport, gap)) in segs.into_iter().enumerate() {
                let len = len.min(mss);
                let flags = if psh { ACK | TCP_PSH } else { ACK };
                if gap {
                    seq = seq.wrapping_add(1);
                }
                // Consecutive IPv4 ids, as the kernel's splitting gives them.
                out.push(tcp_pkt(v6, 80 + u16::from(sport / 3), i as u16, seq, flags, &data(len, i as u8)));
                seq = seq.wrapping_add(len as u32);
            }
            out
        })
}

proptest! {
    /// split(merge(x)) == x for any sequence of segments.
    #[test]
    fn split_merge_round_trips(pkts in flows()) {
        let (out, c) = coalesce(&pkts);
        prop_assert!(c.merged_segments as usize <= pkts.len());
        let mut back = Vec::new();
        for (h, p) in &out {
            back.extend(ingest_all(h, p, 2000).unwrap());
        }
        prop_assert_eq!(back, pkts);
    }

    /// Arbitrary headers and bytes: no panic, nothing longer than the limit comes out.
    #[test]
    fn arbitrary_vnet_input_never_panics(
        hdr in prop::array::uniform10(any::<u8>()),
        body in prop::collection::vec(any::<u8>(), 0..3000),
        max_len in 0usize..2000,
    ) {
        let hdr = VnetHdr::parse(&hdr).unwrap();
        if let Ok(segs) = ingest_all(&hdr, &body, max_len) {
            for s in &segs {
                prop_assert!(s.len() <= max_len);
            }
        }
        let (_, _) = coalesce(&[body.clone(), body]);
    }

    /// A valid super-segment under arbitrary header fields: no panic, and whatever
    /// comes out is well-formed.
    #[test]
    fn valid_packet_arbitrary_header(
        v6 in any::<bool>(),
        len in 0usize..4000,
        flags in any::<u8>(),
        gso_type in any::<u8>(),
        gso_size in any::<u16>(),
        csum_start in any::<u16>(),
        csum_offset in any::<u16>(),
        cut in 0usize..100,
    ) {
        let (_, mut p) = super_segment(v6, 1, ACK, &data(len, 1), 1);
        p.truncate(p.len().saturating_sub(cut));
        let hdr = VnetHdr { flags, gso_type, hdr_len: 0, gso_size, csum_start, csum_offset };
        if let Ok(segs) = ingest_all(&hdr, &p, 1500) {
            if gso_type & !GSO_ECN != GSO_NONE && cut == 0 {
                for s in &segs {
                    prop_assert!(checksums_ok(s));
                }
            }
        }
    }
}
