//! Device and configuration tests. Those that create a TUN device run on a thread that
//! first moves itself into a fresh, anonymous network namespace (`unshare(CLONE_NEWNET)`),
//! so nothing touches the host's namespace; the namespace disappears with the thread.
//! They need root and /dev/net/tun, and say why they skip otherwise.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use super::device::{open_error, Device, TunDevice};
use super::ifconfig::Ifconfig;
use super::setup::{configure, validate};
use super::*;

/// Run `f` on a thread of its own inside a new network namespace. Returns false (after
/// printing why) when the environment cannot do that.
/// Skip a TUN test with a printed reason, or fail it when CI demands that TUN tests run
/// (`TUNSTACK_REQUIRE_E2E=1`, set by `.ci/run`).
fn skip(test: &str, reason: &str) -> bool {
    if std::env::var("TUNSTACK_REQUIRE_E2E").is_ok_and(|v| v == "1") {
        panic!("{test} cannot run here ({reason}) but TUNSTACK_REQUIRE_E2E=1 requires it");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

pub(crate) fn in_fresh_netns(test: &str, f: impl FnOnce() + Send + 'static) -> bool {
    if !sys::is_root() {
        return skip(test, "needs root (CAP_NET_ADMIN) to create TUN devices");
    }
    if !Path::new("/dev/net/tun").exists() {
        return skip(test, "/dev/net/tun does not exist");
    }
    let worker = thread::spawn(move || {
        sys::unshare_netns()?;
        f();
        Ok::<(), io::Error>(())
    });
    match worker.join() {
        Ok(Ok(())) => true,
        Ok(Err(e)) => skip(test, &format!("unshare(CLONE_NEWNET) failed: {e}")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn proc_net(file: &str) -> String {
    std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap()
}

/// Wait (bounded) until the device has a packet, then return it; skips packets that
/// `want` rejects (the kernel sends IPv6 router solicitations and MLD reports on a fresh
/// link). Panics after 5 s or 100 unwanted packets.
fn recv_matching(dev: &TunDevice, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let start = StdInstant::now();
    let mut buf = [0u8; 2048];
    let mut skipped = 0;
    while start.elapsed() < Duration::from_secs(5) && skipped < 100 {
        let ready = sys::poll2(Some(dev.fd()), None, 100).unwrap();
        if !ready.a {
            continue;
        }
        match dev.recv(Instant::ZERO, &mut buf) {
            Ok(n) if want(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => skipped += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("TUN read: {e}"),
        }
    }
    panic!("no matching packet on the TUN device ({skipped} others seen)");
}

/// RFC 1071 internet checksum, for the hand-built packets below.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const HOST4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

fn host_addrs() -> Vec<IpNet> {
    vec![IpNet::new(HOST4.into(), 24).unwrap(), IpNet::new(HOST6.into(), 64).unwrap()]
}

#[test]
fn configure_device_and_read_back() {
    in_fresh_netns("configure_device_and_read_back", || {
        let dev = TunDevice::create("tstk0", 1500).unwrap();
        assert_eq!(dev.name(), "tstk0");
        // Non-blocking: nothing has been sent on the link yet (it is down).
        assert!(sys::is_nonblocking(dev.fd()).unwrap());
        let mut buf = [0u8; 64];
        assert_eq!(dev.recv(Instant::ZERO, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);

        configure("tstk0", 1400, &host_addrs()).unwrap();
        let ifc = Ifconfig::new("tstk0").unwrap();
        assert_eq!(ifc.mtu().unwrap(), 1400);
        assert_eq!(ifc.ipv4_addr().unwrap(), HOST4);
        assert_eq!(ifc.ipv4_netmask().unwrap(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(ifc.is_up().unwrap());
        let index = ifc.index().unwrap();
        assert!(index > 0);

        // if_inet6: address, ifindex, prefix length, scope, flags, name (all hex).
        let want_addr: String = HOST6.octets().iter().map(|b| format!("{b:02x}")).collect();
        let inet6 = proc_net("if_inet6");
        let line = inet6
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() == 6 && f[0] == want_addr)
            .unwrap_or_else(|| panic!("{HOST6} not in if_inet6:\n{inet6}"));
        assert_eq!(u32::from_str_radix(line[1], 16).unwrap(), index);
        assert_eq!(line[2], "40"); // /64
        assert_eq!(line[5], "tstk0");

        // The kernel routes both prefixes onto the device.
        let route = proc_net("route");
        let v4_route = route.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).any(|f| {
            let ip = |s: &str| Ipv4Addr::from(u32::from_str_radix(s, 16).unwrap().to_ne_bytes());
            f[0] == "tstk0" && ip(f[1]) == Ipv4Addr::new(10, 77, 0, 0) && ip(f[7]) == Ipv4Addr::new(255, 255, 255, 0)
        });
        assert!(v4_route, "no 10.77.0.0/24 route on tstk0:\n{route}");
        let route6 = proc_net("ipv6_route");
        let want_net: String =
            Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0).octets().iter().map(|b| format!("{b:02x}")).collect();
        let v6_route = route6
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() == 10 && f[0] == want_net && f[1] == "40" && f[9] == "tstk0");
        assert!(v6_route, "no fd77::/64 route on tstk0:\n{route6}");
    });
}

#[test]
fn kernel_sends_prefix_traffic_into_the_device() {
    in_fresh_netns("kernel_sends_prefix_traffic_into_the_device", || {
        let dev = TunDevice::create("tstk1", 1500).unwrap();
        configure("tstk1", 1500, &host_addrs()).unwrap();

        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        sock.send_to(b"over tun v4", (PEER4, 9)).unwrap();
        let pkt = recv_matching(&dev, |p| p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 17 && p[16..20] == PEER4.octets());
        assert_eq!(&pkt[12..16], &HOST4.octets());
        assert_eq!(&pkt[28..], b"over tun v4");

        let sock6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
        sock6.send_to(b"over tun v6", (PEER6, 9)).unwrap();
        let pkt = recv_matching(&dev, |p| p.len() >= 48 && p[0] >> 4 == 6 && p[6] == 17 && p[24..40] == PEER6.octets());
        assert_eq!(&pkt[8..24], &HOST6.octets());
        assert_eq!(&pkt[48..], b"over tun v6");
    });
}

#[test]
fn packets_written_to_the_device_reach_the_kernel() {
    in_fresh_netns("packets_written_to_the_device_reach_the_kernel", || {
        let dev = TunDevice::create("tstk2", 1500).unwrap();
        configure("tstk2", 1500, &host_addrs()).unwrap();

        // ICMP echo request (RFC 792) from the peer's address to the host's.
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        icmp.extend_from_slice(b"ping through tun");
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let total = (20 + icmp.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&PEER4.octets());
        ip.extend_from_slice(&HOST4.octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&icmp);
        dev.send(Instant::ZERO, &ip).unwrap();

        let reply = recv_matching(&dev, |p| p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 1 && p[20] == 0);
        assert_eq!(&reply[12..16], &HOST4.octets());
        assert_eq!(&reply[16..20], &PEER4.octets());
        assert_eq!(&reply[24..26], &[0x12, 0x34]); // identifier echoed
        assert_eq!(&reply[28..], b"ping through tun");
    });
}

#[test]
fn second_open_of_a_busy_device_is_addr_in_use() {
    in_fresh_netns("second_open_of_a_busy_device_is_addr_in_use", || {
        let _first = TunDevice::create("tstk3", 1500).unwrap();
        let err = TunDevice::create("tstk3", 1500).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("tstk3 is in use"), "{err}");
    });
}

#[test]
fn closing_the_descriptor_removes_the_device() {
    in_fresh_netns("closing_the_descriptor_removes_the_device", || {
        let dev = TunDevice::create("tstk4", 1500).unwrap();
        configure("tstk4", 1500, &host_addrs()).unwrap();
        let ifc = Ifconfig::new("tstk4").unwrap();
        assert!(ifc.index().is_ok());
        drop(dev);
        let err = ifc.index().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        // ...and the name is free again.
        let again = TunDevice::create("tstk4", 1500).unwrap();
        assert_eq!(again.name(), "tstk4");
    });
}

#[test]
fn name_of_another_kind_of_interface_is_invalid_input() {
    in_fresh_netns("name_of_another_kind_of_interface_is_invalid_input", || {
        // A fresh namespace always has "lo".
        let err = TunDevice::create("lo", 1500).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    });
}

#[test]
fn template_name_gets_a_number() {
    in_fresh_netns("template_name_gets_a_number", || {
        let a = TunDevice::create("tstk%d", 1500).unwrap();
        let b = TunDevice::create("tstk%d", 1500).unwrap();
        assert!(a.name().starts_with("tstk") && b.name().starts_with("tstk"));
        assert_ne!(a.name(), b.name());
        assert!(Ifconfig::new(b.name()).unwrap().index().is_ok());
    });
}

#[test]
fn two_ipv6_host_addresses() {
    in_fresh_netns("two_ipv6_host_addresses", || {
        let _dev = TunDevice::create("tstk5", 1500).unwrap();
        let second: Ipv6Addr = "fd78::1".parse().unwrap();
        let addrs = vec![IpNet::new(HOST6.into(), 64).unwrap(), IpNet::new(second.into(), 64).unwrap()];
        configure("tstk5", 1500, &addrs).unwrap();
        let inet6 = proc_net("if_inet6");
        for a in [HOST6, second] {
            let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
            assert!(inet6.lines().any(|l| l.starts_with(&hex) && l.ends_with("tstk5")), "{a} missing:\n{inet6}");
        }
        // Without an IPv4 host address the device has none.
        let err = Ifconfig::new("tstk5").unwrap().ipv4_addr().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    });
}

#[test]
fn over_long_name_is_invalid_input() {
    // Checked before /dev/net/tun is opened: needs no privileges.
    let err = TunDevice::create("a-very-long-tun-name", 1500).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("at most 15"), "{err}");
    let err = TunDevice::create("tun/0", 1500).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn open_errors_say_how_to_fix() {
    let e = open_error("tun0", io::Error::from_raw_os_error(libc::ENOENT));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("modprobe tun") && e.to_string().contains("mknod /dev/net/tun c 10 200"), "{e}");
    for errno in [libc::EPERM, libc::EACCES] {
        let e = open_error("tun0", io::Error::from_raw_os_error(errno));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("CAP_NET_ADMIN") && e.to_string().contains("setcap cap_net_admin+ep"), "{e}");
    }
    let e = open_error("tun7", io::Error::from_raw_os_error(libc::EBUSY));
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    assert!(e.to_string().contains("TUN device tun7 is in use by another process"), "{e}");
    let e = open_error("tun0", io::Error::from_raw_os_error(libc::EINVAL));
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

fn cfg_with(host_addrs: Vec<IpNet>) -> RuntimeConfig {
    RuntimeConfig { host_addrs, ..RuntimeConfig::default() }
}

fn check(c: &RuntimeConfig) -> io::Result<()> {
    validate(&c.tun_name, c.mtu, &c.host_addrs, &c.stack.addrs)
}

#[test]
fn default_config_is_valid() {
    check(&RuntimeConfig::default()).unwrap();
}

#[test]
fn prefixes_longer_than_the_address_do_not_parse() {
    // A prefix longer than the address cannot even be expressed (`IpNet` refuses it),
    // so the runtime never sees one.
    for bad in ["10.0.0.1/33", "fd00::1/129", "10.0.0.1/255"] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad}");
    }
    for good in ["10.0.0.1/32", "10.0.0.1/0", "fd00::1/128"] {
        check(&cfg_with(vec![good.parse().unwrap()])).unwrap();
    }
}

#[test]
fn host_address_equal_to_a_stack_address_is_invalid_input() {
    for addr in ["10.0.0.2", "fd00::2"] {
        let e = check(&cfg_with(vec![IpNet::new(addr.parse().unwrap(), 24).unwrap()])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("stack's addresses"), "{e}");
    }
}

#[test]
fn unusable_addresses_are_invalid_input() {
    for addr in ["0.0.0.0", "224.0.0.1", "127.0.0.1", "255.255.255.255", "::", "ff02::1", "::1"] {
        let e = check(&cfg_with(vec![IpNet::new(addr.parse().unwrap(), 8).unwrap()])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{addr}");
    }
    let mut c = RuntimeConfig::default();
    c.stack.addrs.clear();
    assert_eq!(check(&c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    c.stack.addrs = vec!["0.0.0.0".parse().unwrap()];
    assert_eq!(check(&c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let dup = cfg_with(vec!["fd00::1/64".parse().unwrap(), "fd00::1/64".parse().unwrap()]);
    assert_eq!(check(&dup).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn second_ipv4_host_address_is_unsupported() {
    let c = cfg_with(vec!["10.0.0.1/24".parse().unwrap(), "10.0.1.1/24".parse().unwrap()]);
    let e = check(&c).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    // Several IPv6 addresses are fine.
    let c = cfg_with(vec!["fd00::1/64".parse().unwrap(), "fd01::1/64".parse().unwrap()]);
    check(&c).unwrap();
}

#[test]
fn mtu_limits() {
    let mut c = RuntimeConfig { mtu: 67, ..RuntimeConfig::default() };
    assert_eq!(check(&c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    c.mtu = 65536;
    assert_eq!(check(&c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // IPv6 present: at least 1280 (RFC 8200 5).
    c.mtu = 1279;
    let e = check(&c).unwrap_err();
    assert!(e.to_string().contains("1280"), "{e}");
    c.mtu = 1280;
    check(&c).unwrap();
    // IPv4 only: 576 is fine.
    let c = RuntimeConfig {
        mtu: 576,
        host_addrs: vec!["10.0.0.1/24".parse().unwrap()],
        stack: Config { addrs: vec!["10.0.0.2".parse().unwrap()], ..Config::default() },
        ..RuntimeConfig::default()
    };
    check(&c).unwrap();
}

#[test]
fn runtime_new_rejects_bad_config_before_creating_anything() {
    let c = cfg_with(vec!["10.0.0.2/24".parse().unwrap()]);
    let e = Runtime::new(c).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let c = RuntimeConfig { tun_name: "name-that-is-too-long".into(), ..RuntimeConfig::default() };
    assert_eq!(Runtime::new(c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

/// A runtime on `name` with the default addresses and the given impairment.
fn impaired_runtime(name: &str, impair: Impairment) -> Runtime {
    Runtime::new(RuntimeConfig { tun_name: name.into(), impair: Some(impair), ..RuntimeConfig::default() }).unwrap()
}

#[test]
fn bad_impairment_is_invalid_input_before_creating_anything() {
    let c =
        RuntimeConfig { impair: Some(Impairment { loss: 2.0, ..Impairment::default() }), ..RuntimeConfig::default() };
    let e = Runtime::new(c).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("loss"), "{e}");
}

/// Every packet duplicated and delayed in both directions: one datagram from the kernel
/// reaches the stack twice, one reply reaches the kernel twice. The delayed copies are
/// released by the runtime thread's timer, also those queued from an application thread.
#[test]
fn impaired_runtime_duplicates_and_delays_both_ways() {
    in_fresh_netns("impaired_runtime_duplicates_and_delays_both_ways", || {
        let impair = Impairment { duplicate: 1.0, delay: Duration::from_millis(30), seed: 5, ..Impairment::default() };
        let rt = impaired_runtime("tsim0", impair);
        let stack_addr = (Ipv4Addr::new(10, 0, 0, 2), 7100);
        let sock = crate::net::UdpSocket::bind(&rt, stack_addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let kernel = UdpSocket::bind((Ipv4Addr::new(10, 0, 0, 1), 0)).unwrap();
        kernel.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

        kernel.send_to(b"twice", stack_addr).unwrap();
        let mut buf = [0u8; 64];
        for copy in 0..2 {
            let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("copy {copy} at the stack: {e}"));
            assert_eq!(&buf[..n], b"twice");
            assert_eq!(from, kernel.local_addr().unwrap());
            if copy == 0 {
                sock.send_to(b"back", from).unwrap();
            }
        }
        for copy in 0..2 {
            let (n, _) = kernel.recv_from(&mut buf).unwrap_or_else(|e| panic!("copy {copy} at the kernel: {e}"));
            assert_eq!(&buf[..n], b"back");
        }
        let stats = rt.impairment_stats().expect("impairment configured");
        assert!(stats.rx.duplicated >= 1 && stats.tx.duplicated >= 1, "{stats}");
        assert_eq!(stats.rx.lost + stats.tx.lost, 0);
        assert!(stats.tx.delivered >= 2, "{stats}");
    });
}

#[test]
fn impaired_runtime_with_total_loss_delivers_nothing() {
    in_fresh_netns("impaired_runtime_with_total_loss_delivers_nothing", || {
        let rt = impaired_runtime("tsim1", Impairment { loss: 1.0, ..Impairment::default() });
        let stack_addr = (Ipv4Addr::new(10, 0, 0, 2), 7101);
        let sock = crate::net::UdpSocket::bind(&rt, stack_addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let kernel = UdpSocket::bind((Ipv4Addr::new(10, 0, 0, 1), 0)).unwrap();
        for _ in 0..5 {
            kernel.send_to(b"lost", stack_addr).unwrap();
        }
        let mut buf = [0u8; 64];
        assert_eq!(sock.recv_from(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let stats = rt.impairment_stats().unwrap();
        assert!(stats.rx.lost >= 5, "{stats}");
        assert_eq!(stats.rx.delivered, 0);
        assert_eq!(rt.stats().rx_packets, 0, "the core saw nothing");
    });
}

/// Kernel TCP sockets of this namespace in SYN-SENT (state 02 in /proc/net/tcp).
fn kernel_syn_sent() -> usize {
    proc_net("tcp").lines().skip(1).filter(|l| l.split_whitespace().nth(3) == Some("02")).count()
}

/// Connections that complete together wake one accepting thread, which passes the turn
/// on: every blocked accept gets one. Each acceptor takes one connection and leaves, so
/// a wake that reached only one of them would leave the others asleep with connections
/// in the queue. The core's lock is held while the kernel sends its SYNs, so that they
/// (and then the handshakes' last ACKs) reach the core in one batch.
#[test]
fn connections_completing_together_reach_every_blocked_accept() {
    in_fresh_netns("connections_completing_together_reach_every_blocked_accept", || {
        const N: usize = 4;
        let guard_time = Duration::from_secs(10);
        let stack_ip = Ipv4Addr::new(10, 77, 0, 2);
        let rt = Runtime::new(RuntimeConfig {
            tun_name: "tswt0".into(),
            host_addrs: vec![IpNet::new(HOST4.into(), 24).unwrap()],
            stack: Config { addrs: vec![stack_ip.into()], ..Config::default() },
            ..RuntimeConfig::default()
        })
        .unwrap();
        let listener = crate::net::TcpListener::bind(&rt, (stack_ip, 7200)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let acceptors: Vec<_> = (0..N)
            .map(|_| {
                let l = listener.try_clone().unwrap();
                let tx = tx.clone();
                thread::spawn(move || {
                    let _ = tx.send(l.accept().map(|(s, _)| s));
                })
            })
            .collect();
        let start = StdInstant::now();
        while rt.counters().waits < N as u64 {
            assert!(start.elapsed() < guard_time, "acceptors did not block: {:?}", rt.counters());
            thread::sleep(Duration::from_millis(1));
        }

        let core = rt.handle.engine.lock_any();
        let clients: Vec<_> = (0..N)
            .map(|_| thread::spawn(move || std::net::TcpStream::connect_timeout(&(stack_ip, 7200).into(), guard_time)))
            .collect();
        while kernel_syn_sent() < N {
            assert!(start.elapsed() < guard_time, "the kernel did not send its SYNs");
            thread::sleep(Duration::from_millis(1));
        }
        drop(core);

        let kernel: Vec<_> = clients.into_iter().map(|c| c.join().unwrap().expect("kernel connect")).collect();
        for i in 0..N {
            let accepted = rx.recv_timeout(guard_time).unwrap_or_else(|_| panic!("only {i} of {N} accepts returned"));
            accepted.expect("accept");
        }
        for a in acceptors {
            a.join().unwrap();
        }
        drop(kernel);
    });
}

/// `RuntimeConfig::offload`: the device is opened with the virtio-net header and TSO,
/// and the runtime's handle reports its counters; when the kernel refuses, the plain
/// device is used (with a warning) and nothing else changes.
#[test]
fn offload_device_and_its_fallback() {
    in_fresh_netns("offload_device_and_its_fallback", || {
        let config = RuntimeConfig {
            tun_name: "tsoff0".into(),
            host_addrs: vec!["10.0.0.1/24".parse().unwrap()],
            stack: Config { addrs: vec!["10.0.0.2".parse().unwrap()], ..Config::default() },
            offload: true,
            ..RuntimeConfig::default()
        };
        let (dev, name, handles) = super::tun_device_with(&config, device::TunOffloadDevice::create).unwrap();
        assert_eq!(name, "tsoff0");
        assert!(handles.offload.is_some());
        assert!(dev.describe().contains("offload"), "{}", dev.describe());
        drop(dev);

        let refuse = |_: &str, _: usize| -> io::Result<device::TunOffloadDevice> {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        };
        let (dev, name, handles) = super::tun_device_with(&config, refuse).unwrap();
        assert_eq!(name, "tsoff0");
        assert!(handles.offload.is_none());
        assert_eq!(dev.describe(), "tsoff0");
        drop(dev);

        let rt = Runtime::new(config).unwrap();
        assert!(rt.offload_stats().is_some());
        assert!(rt.device_description().contains("offload"));
        assert_eq!(rt.offload_stats().unwrap().rx_dropped, 0);
    });
}

/// `Runtime::with_queues` over two in-memory queues whose "kernel" ignores ownership:
/// the peer (a sans-IO stack driven here) puts its packets on the queues alternately, so
/// about half of them reach the shard that does not own them and are handed over. Echo
/// through 12 connections, both shards accepting, and the hand-off counters agree.
#[test]
fn two_in_memory_queues_hand_packets_to_their_owner() {
    use crate::net::TcpListener;
    use crate::runtime::device::MemDevice;
    use std::io::{Read, Write};

    let (a0, b0) = MemDevice::pair(1500).unwrap();
    let (a1, b1) = MemDevice::pair(1500).unwrap();
    let stack_cfg = Config::default().with(|c| {
        c.addrs = vec!["10.0.0.2".parse().unwrap()];
        c.seed = 5;
    });
    let rt = Runtime::with_queues(vec![Box::new(b0), Box::new(b1)], stack_cfg).unwrap();
    assert_eq!(rt.shards(), 2);
    assert!(!rt.steering());
    let listener = TcpListener::bind(&rt, "10.0.0.2:7").unwrap();
    let server = thread::spawn(move || {
        for _ in 0..12 {
            let (mut s, _) = listener.accept().unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    s.write_all(&buf[..n]).unwrap();
                }
            });
        }
    });
    // The peer, stepped by hand on this thread against a wall clock.
    let mut peer = Stack::new(Config::default().with(|c| {
        c.addrs = vec!["10.0.0.1".parse().unwrap()];
        c.seed = 6;
    }));
    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let queues = [a0, a1];
    let mut next = 0;
    let mut buf = vec![0u8; 1500];
    let mut pump = |peer: &mut Stack| {
        let t = now();
        for q in &queues {
            while let Ok(n) = q.recv(t, &mut buf) {
                let _ = peer.input(t, &buf[..n]);
            }
        }
        if peer.poll_timeout().is_some_and(|d| d <= t) {
            peer.handle_timeout(t);
        }
        while let Some(n) = peer.poll_transmit(t, &mut buf) {
            queues[next].send(t, &buf[..n]).unwrap();
            next ^= 1;
        }
    };
    let conns: Vec<_> =
        (0..12).map(|_| peer.tcp_connect(now(), "10.0.0.2:7".parse().unwrap(), None).unwrap()).collect();
    let deadline = StdInstant::now() + Duration::from_secs(20);
    let mut sent = vec![false; conns.len()];
    let mut echoed = vec![Vec::new(); conns.len()];
    while echoed.iter().any(|e| e.len() < 100) {
        assert!(StdInstant::now() < deadline, "echoes: {:?}", echoed.iter().map(Vec::len).collect::<Vec<_>>());
        pump(&mut peer);
        for (i, &c) in conns.iter().enumerate() {
            if !sent[i] && peer.tcp_poll_connect(c) == Ok(true) {
                peer.tcp_send(c, &[i as u8; 100]).unwrap();
                sent[i] = true;
            }
            let mut b = [0u8; 256];
            if let Ok(n) = peer.tcp_recv(c, &mut b) {
                echoed[i].extend_from_slice(&b[..n]);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    for (i, e) in echoed.iter().enumerate() {
        assert_eq!(e, &vec![i as u8; 100]);
    }
    server.join().unwrap();
    let per_shard = rt.shard_counters();
    assert!(per_shard.iter().all(|c| c.handoffs_out > 0 && c.handoffs_in > 0), "{per_shard:?}");
    let total = rt.counters();
    assert_eq!(total.handoffs_out, total.handoffs_in);
    let mut accepted = Vec::new();
    rt.inspect_each(|s| accepted.push(s.stats().tcp_passive_opens));
    assert_eq!(accepted.iter().sum::<u64>(), 12);
    assert!(accepted.iter().all(|&n| n > 0), "both shards accepted: {accepted:?}");
}
