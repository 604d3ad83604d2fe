//! Placeholder target: arbitrary bytes through the packet parser must never panic.
//! The full targets (differential parse, ingress, tcp_segments) come with the fuzzing
//! issue.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tunstack::wire::parse(data);
});
