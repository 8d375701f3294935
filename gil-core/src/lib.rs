//! The core of a global interpreter lock: a fair, FIFO, direct-handoff lock with drop requests,
//! for `no_std` and without allocation.
//!
//! - [`RawGil`] — the lock word, the FIFO waiter queue, handoff, checkpoints, close.
//! - [`Waiter`] — a queue node, owned and pinned by the waiting thread.
//! - [`Breaker`] — the word of flags a holder checks at each checkpoint: drop requests, bits for
//!   `gil-std`, bits for the runtime.
//! - [`Park`] — how a waiter sleeps; [`SpinPark`] spins with one of `spin`'s relax strategies.
//! - [`WaitPolicy`] — what a waiting thread does between its looks, for the composites that wait
//!   (`lock_with`, `checkpoint_with`, …): a caller's clock, timeouts and statistics plug in here.
//!
//! The core never reads a clock: timed preemption (a waiter that waited a switch interval asks
//! for a drop) lives in `gil-std`, or on bare metal in a timer interrupt that calls
//! [`RawGil::request_drop`].
//!
//! Built with `--cfg loom`, all atomics are loom's, so the lock — and user code around it — can
//! be model-checked. `docs/design.md` in the repository gives the protocol and every ordering.
//!
//! ```
//! use gil_core::RawGil;
//!
//! static GIL: RawGil = RawGil::new();
//!
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| {
//!             GIL.lock().unwrap();
//!             // SAFETY: this thread owns the lock.
//!             unsafe {
//!                 GIL.checkpoint();
//!                 GIL.unlock();
//!             }
//!         });
//!     }
//! });
//! assert!(!GIL.is_locked());
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[macro_use]
mod sync;

mod breaker;
#[cfg(feature = "models")]
pub mod model;
mod park;
mod queue;
mod raw;
mod wait;

pub use breaker::Breaker;
pub use park::{Park, SpinPark, mark_asleep};
pub use queue::{WaitState, Waiter};
pub use raw::{Absence, Closed, RawGil, TryLockError};
pub use sync::AtomicU32;
pub use wait::{Back, Handover, PollPolicy, Return, Step, WaitPolicy, Waited};
