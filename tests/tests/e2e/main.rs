//! The TUN end-to-end tests: the only tests that need root. Each one creates its own
//! network namespace (`ts-*`, see `tunstack_tests::netns`), runs the stack on a TUN
//! device inside it and talks to it from the kernel's side (std sockets, curl, ping,
//! the `demo` binary). Without root, TUN support or `ip`, every test here prints why it
//! skips and passes; with `TUNSTACK_REQUIRE_E2E=1` (CI, `tests/run` as root) it fails
//! instead. Every other test of the workspace runs without root.
//!
//! ```sh
//! cargo build -p demo && sudo TUNSTACK_REQUIRE_E2E=1 cargo test -p tunstack-tests --test e2e
//! ```

mod e2e_util;

/// Real applications on the async API (hyper, axum, copy_bidirectional).
mod async_api;
/// Malformed packets written into the device, each counted under its drop reason.
mod bad_input;
/// The `demo` binary itself: serving, exiting cleanly on signals, scans and knocking
/// with nmap/nc/hping3, the gateway between three namespaces.
mod demo_bin;
/// Port forwarding both ways (demo forward's relays), integrity by hashes.
mod forward;
/// SYN floods, IP fragments, path MTU from injected ICMP errors.
mod hostile;
/// curl against the demo HTTP server.
mod http;
/// TCP through the runtime's impaired link (loss, reordering, corruption, duplication).
mod impaired;
/// What a user watches: the dashboard in headless Chromium, a pcap read by tshark.
mod observe;
/// The TUN device with TCP segmentation and checksum offload, bulk both ways.
mod offload;
/// Multi-queue runtimes: a stack per queue, hand-offs between them.
mod shards;
/// The kernel's TCP against the stack, both ways, IPv4 and IPv6.
mod tcp;
/// ping and UDP echo.
mod udp_icmp;
