//! Watching the stack with other tools: the live dashboard in a real browser (headless
//! Chromium loads `/dashboard` through the TUN device, runs its script, and the DOM it
//! ends up with has the tables filled in from `/dashboard.json`), and a capture written
//! by the `Pcap` middleware, read back by tshark.

use std::time::Duration;

use crate::e2e_util::*;
use demo::{EchoServer, HttpServer};
use tunstack::runtime::{Runtime, RuntimeConfig};
use tunstack_tests::netns::{self, NetNs};

#[test]
fn dashboard_fills_its_tables_in_headless_chromium() {
    if !netns::require_tool("chromium", "chromium") {
        return;
    }
    let Some(ns) = NetNs::new("dash") else { return };
    ns.run(|| {
        let rt = start_runtime();
        HttpServer::start(&rt.handle(), &[STACK_V4], 80).expect("http server");
        let profile = std::env::temp_dir().join(format!("ts-chromium-{}", std::process::id()));
        let profile_arg = format!("--user-data-dir={}", profile.display());
        let out = netns::exec_here(
            &[
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &profile_arg,
                "--virtual-time-budget=5000",
                "--dump-dom",
                "http://10.0.0.2/dashboard",
            ],
            Duration::from_secs(90),
        )
        .expect("chromium ran");
        let _ = std::fs::remove_dir_all(&profile);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        // The script replaced "loading..." with the live status line...
        assert!(dom.contains("tun0 - packets in"), "status line not filled:\n{dom}");
        // ...and filled the socket table: our listener and the browser's own connection.
        assert!(dom.contains("<td>10.0.0.2:80</td><td>*</td><td>LISTEN</td>"), "listener row missing:\n{dom}");
        assert!(dom.contains("<td>ESTABLISHED</td>"), "the browser's connection is missing:\n{dom}");
        // The chart got its lines.
        assert!(dom.contains("<polyline"), "chart not drawn:\n{dom}");
    });
}

#[test]
fn pcap_capture_is_read_by_tshark() {
    if !netns::require_tool("tshark", "tshark") {
        return;
    }
    let Some(ns) = NetNs::new("pcap") else { return };
    ns.run(|| {
        let path = std::env::temp_dir().join(format!("ts-capture-{}.pcap", std::process::id()));
        let rt = Runtime::new(RuntimeConfig::default().with(|c| c.pcap = Some(path.clone()))).expect("runtime");
        netns::wait_ipv6_ready(Duration::from_secs(10));
        EchoServer::start(&rt.handle(), &[STACK_V4], 7).expect("echo server");
        let data = pattern(3, 20_000);
        let c = kernel_connect(std::net::SocketAddr::new(STACK_V4, 7)).unwrap();
        assert_same("echo", &echo_through(&c, &data), &data);
        drop(c);
        std::thread::sleep(Duration::from_millis(300));
        // Dropping the runtime flushes and closes the capture.
        drop(rt);
        let out = netns::exec_here(
            &[
                "tshark",
                "-r",
                path.to_str().unwrap(),
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "tcp.dstport",
                "-e",
                "tcp.len",
            ],
            Duration::from_secs(60),
        )
        .expect("tshark ran");
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        // The handshake, the data both ways, the ACKs and the close: well over 20
        // packets, every one a TCP packet to or from port 7 that tshark could decode.
        assert!(lines.len() > 20, "{} packets:\n{text}", lines.len());
        let to_us = lines.iter().filter(|l| l.starts_with("10.0.0.1\t7\t")).count();
        assert!(to_us > 10, "packets from the kernel to port 7:\n{text}");
        let payload: usize = lines
            .iter()
            .filter(|l| l.starts_with("10.0.0.1\t7\t"))
            .filter_map(|l| l.rsplit('\t').next()?.parse::<usize>().ok())
            .sum();
        assert_eq!(payload, data.len(), "the capture holds every byte the kernel sent");
    });
}
