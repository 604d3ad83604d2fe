//! A virtio-net header and packet through the TUN offload edge: no panic, cut segments
//! carry valid checksums, coalescing and cutting again round-trips (see
//! `tunstack_tests::fuzzing::offload`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunstack_tests::fuzzing::offload(data);
});
