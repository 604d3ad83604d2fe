//! Shared helpers for the integration tests.
pub mod fuzzing;
pub mod link;
pub mod netns;
pub mod paths;
pub mod sim;
