//! The impaired reflector: Linux talking to Linux through the same link model that
//! tunstack's runtime applies to its own TUN link (`tunstack::runtime::impair`). Like
//! the raw TUN ceiling (`server/reflector.rs`) it swaps the addresses of every IPv4
//! packet it reads from the TUN device and writes it back, so the kernel's client talks
//! to a kernel listener in the same namespace through the device; on the way each
//! packet passes one `Impairer` per direction, configured and seeded exactly as the
//! runtime's (`Impairment::rx` for client -> server, the direction the runtime reads
//! from its device, `Impairment::tx` for server -> client). So loss, reordering and
//! delay hit the kernel pair the way they hit tunstack, decision for decision.
//!
//! The loop sleeps in poll(2) until the device is readable or the next held packet is
//! due (millisecond resolution, as the runtime's driver), releases what is due, and
//! reads what is there (non-blocking).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant as WallClock;

use tunstack::link::Impairment;
use tunstack::Instant;

use crate::proto::*;
use crate::server::reflector::reflect;
use crate::server::{control_loop, Control, ServeArgs};

/// Service ports: a TCP packet to one of them goes client -> server.
const SERVICE_PORTS: [u16; 6] = [SINK_PORT, SOURCE_PORT, ECHO_PORT, RR_PORT, HOLD_PORT, HTTP_PORT];

/// Whether an IPv4 packet goes to a service (client -> server), by its TCP destination
/// port; anything that is not TCP counts as client -> server.
fn to_server(pkt: &[u8]) -> bool {
    if pkt.len() < 20 || pkt[9] != 6 {
        return true;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    match pkt.get(ihl + 2..ihl + 4) {
        Some(p) => SERVICE_PORTS.contains(&u16::from_be_bytes([p[0], p[1]])),
        None => true,
    }
}

pub fn serve_impaired(args: &ServeArgs, imp: Impairment) -> io::Result<()> {
    imp.validate()?;
    let dev = tun_tap::Iface::without_packet_info(&args.dev, tun_tap::Mode::Tun)?;
    dev.set_non_blocking()?;
    let fd = dev.as_raw_fd();
    let ctl = std::sync::Arc::new(Control::default());
    std::thread::Builder::new().name("control".into()).spawn(move || control_loop(ctl, || {}, || None))?;
    eprintln!("impaired reflector on {}: {imp}", args.dev);
    let (from, to) = (args.host.octets(), args.addr.octets());
    let mtu = args.mtu.max(1500);
    let mut towards_server = imp.rx(mtu);
    let mut towards_client = imp.tx(mtu);
    let epoch = WallClock::now();
    let clock = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = clock();
        for dir in [&mut towards_server, &mut towards_client] {
            dir.release(now, |pkt, _| {
                // A full device queue drops the packet, as on any link.
                let _ = dev.send(pkt);
            });
        }
        let mut read_any = false;
        loop {
            match dev.recv(&mut buf) {
                Ok(n) => {
                    read_any = true;
                    let pkt = &mut buf[..n];
                    let server_bound = to_server(pkt);
                    if !reflect(pkt, from, to) {
                        continue;
                    }
                    let dir = if server_bound { &mut towards_server } else { &mut towards_client };
                    dir.push(clock(), pkt);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if read_any {
            // Packets without delay are due at once.
            continue;
        }
        let next = [towards_server.next_release(), towards_client.next_release()].into_iter().flatten().min();
        let timeout = match next {
            None => 1000,
            Some(t) => {
                let us = t.total_micros().saturating_sub(clock().total_micros());
                us.div_ceil(1000).min(1000) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, alive for the call.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_by_service_port() {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[22..24].copy_from_slice(&ECHO_PORT.to_be_bytes());
        assert!(to_server(&p));
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        assert!(!to_server(&p));
        p[9] = 1;
        assert!(to_server(&p), "ICMP");
    }
}
