//! The TUN device with TCP segmentation and checksum offload (`RuntimeConfig::offload`):
//! bulk both ways at once through the kernel's TCP, integrity by SHA-256, and proof
//! that super-segments were really cut and coalesced.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::e2e_util::*;
use demo::EchoServer;
use tunstack::runtime::{Runtime, RuntimeConfig};
use tunstack_tests::netns::{self, NetNs};

const ECHO_PORT: u16 = 7;

fn offload_echo(stack_ip: IpAddr, len: usize) {
    let Some(ns) = NetNs::new("offload") else { return };
    ns.run_timeout(Duration::from_secs(300), move || {
        let rt = Runtime::new(RuntimeConfig::default().with(|c| c.offload = true)).expect("runtime");
        netns::wait_ipv6_ready(Duration::from_secs(10));
        assert!(rt.offload_stats().is_some(), "the kernel refused TUN offloads: {}", rt.device_description());
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let stream = kernel_connect(SocketAddr::new(stack_ip, ECHO_PORT)).expect("kernel connects");
        let data = pattern(7, len);
        let got = echo_through(&stream, &data);
        assert_same("echoed through the offload device", &got, &data);
        let off = rt.offload_stats().unwrap();
        eprintln!("offload: {off}");
        assert!(off.rx_super_segments > 0, "the kernel sent no super-segments: {off}");
        assert!(off.tx_super_segments > 0, "nothing was coalesced: {off}");
        assert_eq!(off.rx_dropped, 0, "{off}");
        assert_eq!(off.tx_errors, 0, "{off}");
        let stats = rt.stats();
        assert!(stats.tcp_passive_opens >= 1);
    });
}

#[test]
fn offload_echo_64_mib_each_way_ipv4() {
    offload_echo(STACK_V4, 64 << 20);
}

#[test]
fn offload_echo_16_mib_each_way_ipv6() {
    offload_echo(STACK_V6, 16 << 20);
}

/// Offloads behind the runtime's impaired link (2% loss, 2% reordering each way): the
/// loss falls on the segments cut from the kernel's super-segments, so SACK and
/// recovery work on them as on any others.
#[test]
fn offload_echo_through_a_lossy_link() {
    let Some(ns) = NetNs::new("offloadloss") else { return };
    ns.run_timeout(Duration::from_secs(300), || {
        let impair = tunstack::link::Impairment::default().with(|c| {
            c.loss = 0.02;
            c.reorder = 0.02;
            c.seed = 14;
        });
        let config = RuntimeConfig::default().with(|c| {
            c.offload = true;
            c.impair = Some(impair);
        });
        let rt = Runtime::new(config).expect("runtime");
        netns::wait_ipv6_ready(Duration::from_secs(10));
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4, STACK_V6], ECHO_PORT).expect("echo server");
        let stream = kernel_connect(SocketAddr::new(STACK_V4, ECHO_PORT)).expect("kernel connects");
        let data = pattern(8, 8 << 20);
        let got = echo_through(&stream, &data);
        assert_same("echoed through a lossy link with offloads", &got, &data);
        let off = rt.offload_stats().expect("offload device");
        eprintln!("offload: {off}; impairment: {}", rt.impairment_stats().unwrap());
        assert!(off.rx_super_segments > 0, "{off}");
        assert!(rt.stats().tcp_retransmits > 0, "the loss made the stack retransmit");
    });
}

/// UDP segmentation offload where the kernel has it: a kernel socket with
/// `UDP_SEGMENT` hands the device one super-datagram, the device cuts it, and the
/// stack's UDP echo answers every datagram.
#[test]
fn offload_cuts_udp_super_datagrams() {
    use std::os::fd::AsRawFd;
    let Some(ns) = NetNs::new("offloaduso") else { return };
    ns.run_timeout(Duration::from_secs(60), || {
        let rt = Runtime::new(RuntimeConfig::default().with(|c| c.offload = true)).expect("runtime");
        assert!(rt.device_description().contains("USO"), "the kernel took USO: {}", rt.device_description());
        let _server = EchoServer::start(&rt.handle(), &[STACK_V4], ECHO_PORT).expect("echo server");
        let sock = std::net::UdpSocket::bind((HOST_V4, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let gso: libc::c_int = 1000;
        // SAFETY: UDP_SEGMENT reads one int from the pointer, which points to `gso`.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                &gso as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
        let data = pattern(21, 3500);
        sock.send_to(&data, (STACK_V4, ECHO_PORT)).expect("send a super-datagram");
        let mut got = Vec::new();
        let mut buf = [0u8; 2000];
        for i in 0..4 {
            let (n, _) = sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("echo {i}: {e}"));
            assert_eq!(n, if i < 3 { 1000 } else { 500 });
            got.extend_from_slice(&buf[..n]);
        }
        assert_same("UDP echo of a super-datagram", &got, &data);
        let off = rt.offload_stats().unwrap();
        eprintln!("offload: {off}");
        assert!(off.rx_super_segments >= 1, "the kernel sent a super-datagram: {off}");
        assert_eq!(off.rx_dropped, 0, "{off}");
    });
}

/// USO on send: datagrams an async task sends in one burst leave as one
/// `GSO_UDP_L4` super-datagram, which the kernel cuts; the kernel socket gets each.
#[test]
fn offload_sends_udp_bursts_as_super_datagrams() {
    let Some(ns) = NetNs::new("offloadusotx") else { return };
    ns.run_timeout(Duration::from_secs(60), || {
        let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let data = pattern(22, 8 * 1200);
        let sent = data.clone();
        let (off, peer) = tokio_rt.block_on(async move {
            let rt = tunstack::tokio::AsyncRuntime::new(RuntimeConfig::default().with(|c| c.offload = true))
                .expect("async runtime");
            assert!(rt.device_description().contains("USO"), "{}", rt.device_description());
            // The kernel's side of the device has its address once the runtime is up.
            let peer = std::net::UdpSocket::bind((HOST_V4, 0)).unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let to = peer.local_addr().unwrap();
            let sock = tunstack::tokio::UdpSocket::bind(&rt, (STACK_V4, 0)).expect("bind");
            // Eight sends in one poll of this task: the driver writes them together.
            for chunk in sent.chunks(1200) {
                sock.send_to(chunk, to).await.expect("send");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let off = rt.offload_stats().unwrap();
            rt.shutdown().await;
            (off, peer)
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 2000];
        for i in 0..8 {
            let (n, _) = peer.recv_from(&mut buf).unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            assert_eq!(n, 1200);
            got.extend_from_slice(&buf[..n]);
        }
        assert_same("datagrams through a super-datagram", &got, &data);
        eprintln!("offload: {off}");
        assert!(off.tx_super_segments >= 1, "the burst left as a super-datagram: {off}");
        assert_eq!(off.tx_errors, 0, "{off}");
    });
}
