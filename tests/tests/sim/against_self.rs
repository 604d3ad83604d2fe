//! tunstack against tunstack on the simulated network (`tunstack_tests::sim`): a 10 MB
//! transfer under each standard condition (100 Mbit/s, RTT 20 ms; see the module
//! documentation), every byte checked by SHA-256, the connection closed by both sides.
//! Each test prints its goodput row (`--nocapture`); nothing asserts on times or speeds.

use tunstack_tests::sim::*;

fn self_run(condition: Condition) {
    run_and_check(&Scenario::new(Peer::Ours, Peer::Ours, condition));
}

#[test]
fn self_clean() {
    self_run(Condition::clean());
}

#[test]
fn self_loss_1() {
    self_run(Condition::loss(1));
}

#[test]
fn self_loss_5() {
    self_run(Condition::loss(5));
}

#[test]
fn self_loss_10() {
    self_run(Condition::loss(10));
}

#[test]
fn self_loss_20() {
    self_run(Condition::loss(20));
}

#[test]
fn self_mixed() {
    self_run(Condition::mixed());
}

#[test]
fn self_congested() {
    self_run(Condition::congested());
}

/// The IPv6 case: same stack, mixed impairments. Some corrupted bits land in fields no
/// IPv6 checksum covers (traffic class, flow label, hop limit); those packets are valid
/// and must be accepted, every other corrupted packet must be dropped.
#[test]
fn self_ipv6_mixed() {
    run_and_check(&Scenario::new(Peer::Ours, Peer::Ours, Condition::mixed()).ipv6());
}
