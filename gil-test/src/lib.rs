//! Shared helpers for gil's models, stress tests, benchmarks and the `gil-lab` binary.
