//! Shared pieces of gil's models, stress tests, benchmarks and the `gil-lab` binary.
//!
//! - [`adversary`] — the red team: input bytes become a safe-API program on several threads,
//!   judged by oracles (mutual exclusion, guards that prove their hold, no unexpected panic,
//!   no hang, no stray drop request).
//! - [`model`] — the reference model of gil-core, and the real core driven side by side.
//! - [`scenario`] — real threads on a `gil_std::Gil` doing what input bytes say (fuzzing).
//! - [`torture`] — many threads doing a seeded random mix of every operation, then a close.
//! - [`w1`] — W1 (docs/workloads.md): uncontended acquire + release and checkpoint, gil
//!   against peers.
//! - [`lab`] — W2–W5, the peers, CPython, and the timelines: what `gil-lab` runs.

#[cfg(not(loom))]
pub mod adversary;
#[cfg(not(loom))]
pub mod lab;
pub mod model;
pub mod scenario;
pub mod torture;
pub mod w1;

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
