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
