//! Shared pieces of gil's models, stress tests, benchmarks and the `gil-lab` binary.
//!
//! - [`w1`] — W1 of DESIGN.md: uncontended acquire + release and checkpoint, gil against peers.

pub mod w1;

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
