//! A global interpreter lock for runtimes on `std`.
//!
//! Work in progress: this crate will hold futex parking, timed preemption, blocking regions and
//! the safe `Gil` / `GilGuard` API (see `docs/design.md`). Today it re-exports the core.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub use gil_core as core;
