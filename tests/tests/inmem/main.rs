//! In-memory interop on a virtual clock (`tunstack_tests::link`): our stack against
//! itself and against smoltcp 0.14, every packet checked by an independent parser. No
//! root, no device, no threads.

/// tunstack against tunstack.
mod against_self;
/// tunstack against smoltcp (and smoltcp against itself, as the harness's reference).
mod against_smoltcp;
