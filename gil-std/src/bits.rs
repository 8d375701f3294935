//! Every bit gil-std uses, in one table per word, with its owner: the breaker bits gil-core
//! leaves to gil-std ([`Breaker::STD_BITS`]), and the bits of `Gil::watch`.
//!
//! **Breaker** (the holder looks at all of them with one relaxed load at each checkpoint):
//!
//! | bit | name | owner: set by | cleared by | meaning |
//! |---|---|---|---|---|
//! | 5 | [`CALLS`] | pending calls: `add_pending_call`, under the queue's mutex | the runner that finds the queue empty, under that mutex | calls are queued |
//! | 6 | [`INTERRUPT`] | interrupts: `InterruptHandle::interrupt` (and the interrupted thread again when it takes the lock) | the holder's checkpoint | some thread was interrupted |
//! | 7 | [`SLICE_TIMER`] | the clock, listing the lock under its mutex | the clock, unlisting it | threads wait in line: the holder times its own slice |
//!
//! gil-core's bits 0–4 (drop request, loan asked, the loan's own state, one unused) and
//! the runtime's bits 8–31 are documented on [`Breaker`].
//!
//! **Watch** (what the hold paths must do besides taking and releasing; one relaxed load at
//! each hold and release when nothing is watched):
//!
//! | bit | name | owner: set and cleared by | meaning |
//! |---|---|---|---|
//! | 0 | [`WATCH_TIMING`] | `Gil::set_hold_timing` | holds are timed |
//! | 1 | [`WATCH_HOOK`] | `Gil::set_event_hook` (and a hook that panics, removed) | an event hook is installed |
//! | 2 | [`WATCH_SET_ASIDE`] | `Gil::mark_set_aside`: the first hold set aside and the last one back (a hand-over or loan under extra guards, a region of `EnsureGuard::allow_threads`) | some thread's hold is set aside: a guard's use checks that its thread holds |
//! | 3 | [`WATCH_CALLS`] | pending calls, with `CALLS` | the next thread to take the lock runs the queued calls |
//! | 4 | [`WATCH_INTERRUPTS`] | `Gil::interrupt_handle` (never cleared) | a thread taking the lock looks at its interrupt flag |

use core::sync::atomic::Ordering::Relaxed;

use gil_core::{AtomicU32, Breaker};

/// Breaker: pending calls are queued.
pub(crate) const CALLS: u32 = 1 << 5;
/// Breaker: some thread has been interrupted.
pub(crate) const INTERRUPT: u32 = 1 << 6;
/// Breaker: the lock is listed by the clock (threads wait in line), so its holder times its
/// own slice at its checkpoints.
pub(crate) const SLICE_TIMER: u32 = 1 << 7;

/// Watch: holds are timed ([`Gil::set_hold_timing`](crate::Gil::set_hold_timing)).
pub(crate) const WATCH_TIMING: u32 = 1 << 0;
/// Watch: an event hook is installed ([`Gil::set_event_hook`](crate::Gil::set_event_hook)).
pub(crate) const WATCH_HOOK: u32 = 1 << 1;
/// Watch: some hold is set aside with its extra guards (`Gil::mark_set_aside`): by a hand-over
/// or a loan inside a checkpoint under extra guards, or by a region of a guard that may have
/// others ([`EnsureGuard::allow_threads`](crate::EnsureGuard::allow_threads)). Every use of a
/// guard checks that its thread holds the lock.
pub(crate) const WATCH_SET_ASIDE: u32 = 1 << 2;
/// Watch: pending calls are queued; the next thread to take the lock runs them.
pub(crate) const WATCH_CALLS: u32 = 1 << 3;
/// Watch: interrupt handles exist; a thread taking the lock looks at its interrupt flag.
pub(crate) const WATCH_INTERRUPTS: u32 = 1 << 4;

/// The watch word: which of the `WATCH_*` bits are set. Each is set and cleared by its owner
/// (table above) and read, Relaxed, by the hold paths: what a bit announces is published by its
/// owner's own synchronisation (a mutex, a Release store), not by this word.
///
/// gil-core's atomic, which the models replace with theirs, so that they explore its
/// interleavings with the queue of pending calls and the interrupt flags it announces.
#[derive(Debug)]
pub(crate) struct Watch(AtomicU32);

impl Watch {
    crate::sync::const_fn! {
        pub(crate) fn new() -> Self {
            Self(AtomicU32::new(0))
        }
    }

    /// The bits set now.
    #[inline]
    pub(crate) fn load(&self) -> u32 {
        self.0.load(Relaxed)
    }

    /// Whether `bit` is set now.
    #[inline]
    pub(crate) fn has(&self, bit: u32) -> bool {
        self.load() & bit != 0
    }

    /// Sets or clears `bit`.
    pub(crate) fn set(&self, bit: u32, on: bool) {
        if on {
            self.0.fetch_or(bit, Relaxed);
        } else {
            self.0.fetch_and(!bit, Relaxed);
        }
    }
}

const STD_BREAKER: [u32; 3] = [CALLS, INTERRUPT, SLICE_TIMER];
const WATCH: [u32; 5] = [
    WATCH_TIMING,
    WATCH_HOOK,
    WATCH_SET_ASIDE,
    WATCH_CALLS,
    WATCH_INTERRUPTS,
];

/// Whether `bits` are single bits, pairwise disjoint, and all inside `within`.
const fn disjoint(bits: &[u32], within: u32) -> bool {
    let mut seen = 0;
    let mut i = 0;
    while i < bits.len() {
        let bit = bits[i];
        if bit.count_ones() != 1 || bit & seen != 0 || bit & !within != 0 {
            return false;
        }
        seen |= bit;
        i += 1;
    }
    true
}

const _: () = assert!(disjoint(&STD_BREAKER, Breaker::STD_BITS));
const _: () = assert!(disjoint(&WATCH, u32::MAX));
