//! One established connection hit by checksum-valid segments near its window edges, odd
//! options, every flag combination, interleaved with reads, writes and timers (see
//! `tunstack_tests::fuzzing::tcp_segments`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunstack_tests::fuzzing::tcp_segments(data);
});
