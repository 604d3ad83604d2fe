//! The steering program of a multi-queue TUN device: a small eBPF socket filter
//! (`TUNSETSTEERINGEBPF`) whose return value is the queue the kernel puts a packet on.
//! It computes the shards' ownership rule ([`Shard::tcp_owner`]) so that every TCP
//! segment arrives at the shard that owns its connection, and sends everything else
//! (UDP, IP fragments, ICMP, IPv6 with extension headers before TCP) to queue 0, the
//! rule's owner of UDP and fragments (a packet it gets wrong, such as an ICMP error
//! about a TCP flow, is handed over by the runtime; see `runtime/shards.rs`).
//!
//! The program is assembled here, with the key as immediates. The tests run it through
//! a small interpreter of the instructions it uses and compare with the rule on random
//! packets; the kernel's verifier checks it at load time (`sys::bpf`).
//!
//! ```text
//!   v = byte 0 >> 4;  4: proto == 6, not a fragment, words = src, dst, ports at IHL*4
//!                     6: next header == 6, words = src (4), dst (4), ports at 40
//!                     else: return 0
//!   h = k0; per word h = (h ^ w) * M1; h ^= h >> 32
//!   h = (h ^ k1) * M2; h ^= h >> 33; return (u32) h % queues
//! ```

use crate::shard::{Shard, MIX_M1, MIX_M2};

// eBPF opcodes (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MUL: u8 = 0x20;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const MOD: u8 = 0x90;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const EXIT: u8 = 0x90;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) dst: u8,
    pub(crate) src: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    /// The kernel's layout: code, dst:4 | src:4 (little-endian bit fields), off, imm.
    pub(crate) fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// An assembler with forward labels (jumps are patched when the label is placed).
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(Insn { code, dst, src, off, imm });
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: usize) {
        self.fixups.push((self.code.len(), to));
        self.op(JMP | code | K, dst, 0, 0, imm);
    }
    fn alu64_k(&mut self, op: u8, dst: u8, imm: i32) {
        self.op(ALU64 | op | K, dst, 0, 0, imm);
    }
    fn alu64_x(&mut self, op: u8, dst: u8, src: u8) {
        self.op(ALU64 | op | X, dst, src, 0, 0);
    }
    fn ld_imm64(&mut self, dst: u8, v: u64) {
        self.op(LD | DW | IMM, dst, 0, 0, v as u32 as i32);
        self.op(0, 0, 0, 0, (v >> 32) as u32 as i32);
    }
    /// R0 = the packet's big-endian byte/half/word at `off` (R6 holds the packet).
    fn ld_abs(&mut self, size: u8, off: i32) {
        self.op(LD | size | ABS, 0, 0, 0, off);
    }
    /// One word of the hash: h (R7) absorbs R0.
    fn mix(&mut self) {
        self.alu64_x(XOR, R7, R0);
        self.ld_imm64(R1, MIX_M1);
        self.alu64_x(MUL, R7, R1);
        self.alu64_x(MOV, R0, R7);
        self.alu64_k(RSH, R0, 32);
        self.alu64_x(XOR, R7, R0);
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in self.fixups {
            let target = self.labels[l].expect("every label is placed");
            self.code[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.code
    }
}

/// The steering program for `shard`'s runtime (any shard: the rule does not depend on
/// the index).
pub(crate) fn program(shard: &Shard) -> Vec<Insn> {
    let key = shard.key();
    let mut a = Asm::default();
    let (zero, v4, v6, fin) = (a.label(), a.label(), a.label(), a.label());
    a.alu64_x(MOV, R6, R1); // LD_ABS and LD_IND take the packet from R6
    a.ld_abs(B, 0);
    a.alu64_k(RSH, R0, 4);
    a.jump(JEQ, R0, 4, v4);
    a.jump(JEQ, R0, 6, v6);
    a.place(zero);
    a.alu64_k(MOV, R0, 0);
    a.op(JMP | EXIT, 0, 0, 0, 0);

    // IPv4: TCP, not a fragment (MF or an offset, RFC 791 3.1).
    a.place(v4);
    a.ld_abs(B, 9);
    a.jump(JNE, R0, 6, zero);
    a.ld_abs(H, 6);
    a.alu64_k(AND, R0, 0x3fff);
    a.jump(JNE, R0, 0, zero);
    a.ld_abs(B, 0);
    a.alu64_k(AND, R0, 0x0f);
    a.alu64_k(LSH, R0, 2);
    a.alu64_x(MOV, R8, R0);
    a.ld_imm64(R7, key.0);
    a.ld_abs(W, 12); // the peer's address
    a.mix();
    a.ld_abs(W, 16); // ours
    a.mix();
    a.op(LD | W | IND, 0, R8, 0, 0); // ports, after the header
    a.mix();
    a.jump(JA, 0, 0, fin);

    // IPv6: TCP right after the fixed header.
    a.place(v6);
    a.ld_abs(B, 6);
    a.jump(JNE, R0, 6, zero);
    a.ld_imm64(R7, key.0);
    for off in (8..40).step_by(4) {
        a.ld_abs(W, off);
        a.mix();
    }
    a.ld_abs(W, 40);
    a.mix();

    a.place(fin);
    a.ld_imm64(R1, key.1);
    a.alu64_x(XOR, R7, R1);
    a.ld_imm64(R1, MIX_M2);
    a.alu64_x(MUL, R7, R1);
    a.alu64_x(MOV, R0, R7);
    a.alu64_k(RSH, R0, 33);
    a.alu64_x(XOR, R7, R0);
    a.op(ALU | MOV | X, R0, R7, 0, 0); // the low 32 bits
    a.op(ALU | MOD | K, R0, 0, 0, i32::from(shard.count()));
    a.op(JMP | EXIT, 0, 0, 0, 0);
    a.finish()
}

/// Run `prog` on `packet` as the kernel would for the subset of eBPF the steering
/// program uses (a packet load beyond the end ends the program with 0, as
/// `LD_ABS`/`LD_IND` do). For tests.
#[cfg(test)]
pub(crate) fn interpret(prog: &[Insn], packet: &[u8]) -> u64 {
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    let load = |off: usize, size: u8| -> Option<u64> {
        let n = match size {
            W => 4,
            H => 2,
            _ => 1,
        };
        let b = packet.get(off..off + n)?;
        Some(b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    loop {
        let i = prog[pc];
        pc += 1;
        let (d, s) = (i.dst as usize, i.src as usize);
        let imm = i.imm as i64 as u64;
        match i.code {
            c if c == LD | DW | IMM => {
                r[d] = u64::from(i.imm as u32) | u64::from(prog[pc].imm as u32) << 32;
                pc += 1;
            }
            c if c & 0x07 == LD && c & 0xe0 == ABS => match load(i.imm as usize, c & 0x18) {
                Some(v) => r[0] = v,
                None => return 0,
            },
            c if c & 0x07 == LD && c & 0xe0 == IND => match load(r[s] as usize + i.imm as usize, c & 0x18) {
                Some(v) => r[0] = v,
                None => return 0,
            },
            c if c & 0x07 == ALU64 || c & 0x07 == ALU => {
                let v = if c & X != 0 { r[s] } else { imm };
                let x = r[d];
                let wide = c & 0x07 == ALU64;
                // ALU (32-bit) works on the low halves and zero-extends the result.
                let (x, v) = if wide { (x, v) } else { (x & 0xffff_ffff, v & 0xffff_ffff) };
                let out = match c & 0xf0 {
                    MUL => x.wrapping_mul(v),
                    AND => x & v,
                    LSH => x << v,
                    RSH => x >> v,
                    MOD => x % v,
                    XOR => x ^ v,
                    MOV => v,
                    other => panic!("ALU op {other:#x} not used by the program"),
                };
                r[d] = if wide { out } else { out & 0xffff_ffff };
            }
            c if c == JMP | EXIT => return r[0],
            c if c & 0x07 == JMP => {
                let taken = match c & 0xf0 {
                    JA => true,
                    JEQ => r[d] == imm,
                    JNE => r[d] != imm,
                    other => panic!("jump {other:#x} not used by the program"),
                };
                if taken {
                    pc = (pc as isize + isize::from(i.off)) as usize;
                }
            }
            other => panic!("opcode {other:#x} not used by the program"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::{Rng, SipKey};
    use crate::seq::SeqNum;
    use crate::shard::Shard;
    use crate::wire::{self, TcpFlags, TcpOptions, TcpRepr, UdpRepr};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    fn tcp(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let seg = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: SeqNum(7),
            ack: SeqNum(0),
            flags: TcpFlags::SYN,
            window: 100,
            urgent: 0,
            options: TcpOptions::default(),
            payload: b"data",
        };
        let mut buf = vec![0u8; 200];
        let n = wire::emit_tcp(&mut buf, src.ip(), dst.ip(), &seg).unwrap();
        buf.truncate(n);
        buf
    }

    fn addr(rng: &mut Rng, v6: bool) -> SocketAddr {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.next_u32()))
        };
        SocketAddr::new(ip, rng.next_u32() as u16)
    }

    /// The program and the rule agree on every TCP packet, for several queue counts
    /// and keys, IPv4 (with and without options) and IPv6.
    #[test]
    fn the_program_computes_the_rule() {
        let mut rng = Rng::new(99);
        for count in [2u16, 3, 4, 7, 16, 256] {
            let key = SipKey(rng.next_u64(), rng.next_u64());
            let shard = Shard::new(0, count, key).unwrap();
            let prog = program(&shard);
            let mut seen = vec![false; count as usize];
            for i in 0..2000 {
                let v6 = i % 2 == 1;
                let (peer, us) = (addr(&mut rng, v6), addr(&mut rng, v6));
                let mut pkt = tcp(peer, us);
                if !v6 && i % 4 == 0 {
                    // Four bytes of IPv4 options (NOPs) move the ports.
                    pkt.splice(20..20, [1u8, 1, 1, 1]);
                    pkt[0] = 0x46;
                    let total = (pkt.len() as u16).to_be_bytes();
                    pkt[2..4].copy_from_slice(&total);
                }
                let queue = interpret(&prog, &pkt);
                assert_eq!(queue, u64::from(shard.tcp_owner(us, peer)), "packet {i} {peer} -> {us}");
                seen[queue as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "every queue of {count} gets flows");
        }
    }

    /// UDP, fragments and what is not IP go to queue 0 (the rule's owner of them).
    #[test]
    fn everything_else_goes_to_queue_zero() {
        let shard = Shard::new(0, 4, SipKey(3, 4)).unwrap();
        let prog = program(&shard);
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:5000".parse().unwrap(), "10.0.0.2:53".parse().unwrap());
        let mut buf = vec![0u8; 100];
        let n = wire::emit_udp(
            &mut buf,
            a.ip(),
            b.ip(),
            &UdpRepr { src_port: a.port(), dst_port: b.port(), payload: b"q" },
        )
        .unwrap();
        assert_eq!(interpret(&prog, &buf[..n]), 0);
        // Find a TCP flow that is not queue 0's, then make it a fragment.
        let mut port = 1000u16;
        let pkt = loop {
            let p = tcp(SocketAddr::new(a.ip(), port), b);
            if interpret(&prog, &p) != 0 {
                break p;
            }
            port += 1;
        };
        let mut frag = pkt.clone();
        frag[6] |= 0x20; // more fragments
        assert_eq!(interpret(&prog, &frag), 0);
        assert_eq!(interpret(&prog, &[]), 0);
        assert_eq!(interpret(&prog, &[0x45]), 0, "a truncated packet");
        assert_eq!(interpret(&prog, &[0x20; 40]), 0, "not IPv4 or IPv6");
    }

    #[test]
    fn encoding_is_the_kernels() {
        let i = Insn { code: 0xbf, dst: 6, src: 1, off: -2, imm: 0x1234_5678 };
        assert_eq!(i.encode(), [0xbf, 0x16, 0xfe, 0xff, 0x78, 0x56, 0x34, 0x12]);
    }
}
