//! A global interpreter lock for runtimes on `std`: one thread inside at a time, handed on in
//! FIFO order, with checkpoints that give the lock up when others ask and blocking regions
//! that release it around I/O.
//!
//! | job | items |
//! |---|---|
//! | take the lock | [`Gil::acquire`], [`try_acquire`](Gil::try_acquire), [`try_acquire_for`](Gil::try_acquire_for), [`acquire_checked`](Gil::acquire_checked) → [`GilGuard`]; [`ensure`](Gil::ensure) (reentrant) → [`EnsureGuard`]; [`acquire_async`](Gil::acquire_async) → [`AcquireFuture`], in the same line; [`close`](Gil::close) |
//! | reach the data | [`GilCell`]: data only the holder of one particular `Gil` reaches; [`GilBound`]: the same for state that is not `Send` (an `Rc`-based interpreter), under an `unsafe` contract |
//! | regions (the lock let go around blocking work) | a closure: [`GilGuard::allow_threads`] ([`allow_threads_with_unblock`](GilGuard::allow_threads_with_unblock) takes an unblock function); by value: [`GilGuard::unlock`] → [`Unlocked::relock`]; across an `.await`: [`GilGuard::unlock_for_await`] → [`UnlockedAsync::relock_async`] |
//! | wait for other locks | [`Blocking`]: [`lock_mutex`](Blocking::lock_mutex), [`read_rwlock`](Blocking::read_rwlock), [`write_rwlock`](Blocking::write_rwlock), [`wait_condvar`](Blocking::wait_condvar), [`recv_channel`](Blocking::recv_channel), [`get_or_init`](Blocking::get_or_init), [`sleep`](Blocking::sleep): the lock is let go only if the wait must block; [`Gil::set_deadlock_detection`] reports the cycles left among registered threads |
//! | hand over | [`GilGuard::checkpoint`]: give the lock up when asked ([`Gil::request_drop`], the switch interval); [`GilGuard::hand_over`] |
//! | runtime services | [`Gil::add_pending_call`] (run by the holder at its next checkpoint); [`InterruptHandle`] (the interrupted thread's checkpoint returns [`Interrupted`]); runtime bits with handlers ([`Gil::set_breaker_handler`], [`Gil::raise`]) |
//! | observe | [`Gil::stats`]; [`Gil::set_event_hook`] and [`Event`]; [`Recorder`] keeps a timeline of them; [`Gil::register_thread`] reports threads starting and exiting; [`ThreadStats`] are the calling thread's figures |
//! | other locks | [`GilMutex`]: `lock_api::Mutex<RawGilMutex, T>`, a mutex with the lock's FIFO hand-off, 72 bytes besides the data, and none of a `Gil`'s services; [`FutexPark`]: how waiters sleep (a short spin, then a futex on their own word), for a bare `gil_core::RawGil` |
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
