//! The `offload` fuzz target's checks (`tunstack_tests::fuzzing::offload`) on mutations
//! of its seeds: cutting super-segments and completing checksums never panics nor
//! emits past the MTU, cut segments carry valid checksums, and coalescing the result and
//! cutting it again gives it back.

use proptest::prelude::*;
use tunstack_tests::fuzzing;

proptest! {
    #![proptest_config(crate::config(2000))]

    #[test]
    fn mutated_offload_seeds(
        seed in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in 0usize..64,
        mode in prop::option::of(any::<u8>()),
    ) {
        let seeds = fuzzing::seeds("offload");
        let mut input = seeds[seed % seeds.len()].1.clone();
        for (at, byte) in edits {
            let i = at.index(input.len());
            input[i] = byte;
        }
        input.truncate(input.len().saturating_sub(cut));
        if let Some(m) = mode {
            input[0] = m | 1;
        }
        fuzzing::offload(&input);
    }

    #[test]
    fn arbitrary_offload_input(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        fuzzing::offload(&data);
    }
}
