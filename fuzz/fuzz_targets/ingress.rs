//! The whole ingress path: raw packets, structured segments, API calls and time steps
//! against a stack with listeners and live connections; invariants after every step, no
//! leaked socket at the end (see `tunstack_tests::fuzzing::ingress`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunstack_tests::fuzzing::ingress(data);
});
