//! The network simulator (`tunstack_tests::sim`, over the core's link model
//! `tunstack::link`): whole transfers through a bottleneck with loss, reordering,
//! duplication and corruption, deterministic and seeded. No root.

/// tunstack against tunstack under each standard condition.
mod against_self;
/// tunstack against smoltcp, each direction, under each standard condition.
mod against_smoltcp;
/// The simulator itself: seeds, conditions, guard rails, determinism, bit flips.
mod model;
/// Paths with delay and loss per congestion control (BBR, CUBIC, NewReno), the slow
/// reader (`tunstack_tests::paths`).
mod paths;
/// Many seeds, smaller transfers, harsher conditions.
mod sweep;
