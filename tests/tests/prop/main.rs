//! Property tests (proptest) of the TCP core through the fuzzing harness
//! (`tunstack_tests::fuzzing`). Each module's failure cases are saved next to its source
//! (`<module>.proptest-regressions`) and replayed first. No root.

use proptest::test_runner::{Config, FileFailurePersistence};

/// The configuration of every property here: `cases` random cases, after the saved
/// failures of the module's `.proptest-regressions` file, next to its source. (Explicit:
/// proptest's default would look for them in `tests/tests/proptest-regressions/`, as
/// this binary's root has a `main.rs`.)
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    }
}

/// The TUN offload edge: mutated super-segments never panic and round-trip.
mod offload;
/// A stream cut into overlapping, duplicated, reordered chunks comes out intact.
mod reassembly;
/// Random events against one connection keep the invariants.
mod state_machine;
