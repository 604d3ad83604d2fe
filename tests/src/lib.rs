//! Shared helpers for the integration tests.
pub mod link;
pub mod netns;
pub mod sim;
