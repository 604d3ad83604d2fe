//! Arbitrary bytes through `tunstack::wire::parse`: never a panic, and every accepted
//! packet agrees with etherparse and smoltcp (see `tunstack_tests::fuzzing::parse`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunstack_tests::fuzzing::parse(data);
});
