//! A global interpreter lock for runtimes on `std`: one thread inside at a time, handed on in
//! FIFO order, with checkpoints that give the lock up when others ask and blocking regions
//! that release it around I/O.
//!
//! - [`Gil`] — the lock: [`acquire`](Gil::acquire), [`try_acquire`](Gil::try_acquire),
//!   [`ensure`](Gil::ensure) (reentrant), [`acquire_async`](Gil::acquire_async) (a future in
//!   the same line), [`close`](Gil::close), [`stats`](Gil::stats).
//! - [`GilGuard`] — proof of holding it: [`checkpoint`](GilGuard::checkpoint),
//!   [`hand_over`](GilGuard::hand_over), [`allow_threads`](GilGuard::allow_threads),
//!   [`unlock`](GilGuard::unlock) / [`Unlocked::relock`], and for an `.await`
//!   [`unlock_for_await`](GilGuard::unlock_for_await) / [`UnlockedAsync::relock_async`].
//! - [`GilCell`] — data only the holder of one particular `Gil` can reach; [`GilBound`] for
//!   state that is not `Send` (an `Rc`-based interpreter), under an `unsafe` contract.
//! - [`Blocking`] — waiting for a `std` mutex, rwlock, condition variable, channel or
//!   `OnceLock` while holding the lock, without the deadlock between the two: the lock is let
//!   go only if the wait must block; [`Gil::set_deadlock_detection`] reports the cycles left
//!   among registered threads.
//! - [`GilMutex`] — `lock_api::Mutex<RawGilMutex, T>`: a mutex with the lock's FIFO hand-off,
//!   64 bytes besides the data, and none of a `Gil`'s services.
//! - [`FutexPark`] — how waiters sleep: a short spin, then a futex on their own word.
//! - [`Gil::set_event_hook`] and [`Event`] — instrumentation; [`Recorder`] keeps a timeline of
//!   them; [`Gil::register_thread`] reports threads starting and exiting; [`ThreadStats`] are
//!   the calling thread's wait and hold figures.
//! - Runtime services on the breaker: [`Gil::add_pending_call`] (run by the holder at its next
//!   checkpoint), [`InterruptHandle`] (the interrupted thread's checkpoint returns
//!   [`Interrupted`]; [`GilGuard::allow_threads_with_unblock`] takes an unblock function), and
//!   runtime bits with handlers ([`Gil::set_breaker_handler`], [`Gil::raise`]).
//!
//! Built on [`gil_core`]'s `RawGil`; `docs/design.md` in the repository gives the protocol.
//!
//! ```
//! use std::cell::Cell;
//! use gil_std::{Gil, GilCell};
//!
//! static GIL: Gil = Gil::new();
//! static STEPS: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
//!
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| {
//!             let mut guard = GIL.acquire();
//!             for _ in 0..10_000 {
//!                 STEPS.get(&guard).set(STEPS.get(&guard).get() + 1);
//!                 guard.checkpoint().unwrap(); // hand over if someone asked
//!             }
//!         });
//!     }
//! });
//! assert_eq!(STEPS.get(&GIL.acquire()).get(), 20_000);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[macro_use]
mod sync;

mod bits;
mod blocking;
mod bound;
mod calls;
mod cell;
mod clock;
mod credit;
mod deadlock;
mod gil;
mod handlers;
mod hooks;
mod interrupt;
mod owner;
mod threads;

not_modelled! {
    mod mutex;
    mod trace;
    pub use mutex::{GilMutex, RawGilMutex};
    pub use trace::{Recorder, ThreadTrace, Trace};
}

pub use blocking::Blocking;
pub use bound::GilBound;
pub use calls::PendingCallError;
pub use cell::GilCell;
pub use gil::{
    AcquireError, AcquireFuture, BreakerHandler, EnsureGuard, EventHook, Gil, GilGuard, Holds,
    PendingCall, PendingCalls, RelockFuture, Stats, SwitchIntervalError, ThreadRegistration,
    Unlocked, UnlockedAsync,
};
pub use handlers::NotARuntimeBit;
pub use hooks::Event;
pub use interrupt::{InterruptHandle, Interrupted};
pub use sync::FutexPark;
#[cfg(loom)]
pub use sync::model_time;
pub use threads::ThreadStats;
