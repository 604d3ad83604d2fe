//! The shard routing: two shards of one address and a peer, packets put on either
//! queue; a shard leaves what it does not own to the owner, untouched (see
//! `tunstack_tests::fuzzing::shards`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunstack_tests::fuzzing::shards(data);
});
