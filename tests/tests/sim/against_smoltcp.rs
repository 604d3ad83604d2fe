//! tunstack against smoltcp 0.14 (TCP socket with CUBIC, 256 KiB buffers) on the
//! simulated network (`tunstack_tests::sim`): 10 MB under each standard condition, ours
//! sending (ours is the client) and ours receiving (smoltcp is the client), every byte
//! checked by SHA-256, the connection closed by both sides. Each test prints its goodput
//! row (`--nocapture`); nothing asserts on times or speeds.

use tunstack_tests::sim::*;

fn ours_sends(condition: Condition) {
    run_and_check(&Scenario::new(Peer::Ours, Peer::Smoltcp, condition));
}

fn ours_receives(condition: Condition) {
    run_and_check(&Scenario::new(Peer::Smoltcp, Peer::Ours, condition));
}

#[test]
fn ours_sends_clean() {
    ours_sends(Condition::clean());
}

#[test]
fn ours_sends_loss_1() {
    ours_sends(Condition::loss(1));
}

#[test]
fn ours_sends_loss_5() {
    ours_sends(Condition::loss(5));
}

#[test]
fn ours_sends_loss_10() {
    ours_sends(Condition::loss(10));
}

#[test]
fn ours_sends_loss_20() {
    ours_sends(Condition::loss(20));
}

#[test]
fn ours_sends_mixed() {
    ours_sends(Condition::mixed());
}

#[test]
fn ours_sends_congested() {
    ours_sends(Condition::congested());
}

#[test]
fn ours_receives_clean() {
    ours_receives(Condition::clean());
}

#[test]
fn ours_receives_loss_1() {
    ours_receives(Condition::loss(1));
}

#[test]
fn ours_receives_loss_5() {
    ours_receives(Condition::loss(5));
}

#[test]
fn ours_receives_loss_10() {
    ours_receives(Condition::loss(10));
}

#[test]
fn ours_receives_loss_20() {
    ours_receives(Condition::loss(20));
}

#[test]
fn ours_receives_mixed() {
    ours_receives(Condition::mixed());
}

#[test]
fn ours_receives_congested() {
    ours_receives(Condition::congested());
}

#[test]
fn ours_sends_ipv6_mixed() {
    run_and_check(&Scenario::new(Peer::Ours, Peer::Smoltcp, Condition::mixed()).ipv6());
}

#[test]
fn ours_receives_ipv6_mixed() {
    run_and_check(&Scenario::new(Peer::Smoltcp, Peer::Ours, Condition::mixed()).ipv6());
}

/// The simulator itself, with smoltcp on both ends: if this fails, suspect the
/// simulator before tunstack.
#[test]
fn reference_smoltcp_both_ends_mixed() {
    run_and_check(&Scenario::new(Peer::Smoltcp, Peer::Smoltcp, Condition::mixed()));
}
