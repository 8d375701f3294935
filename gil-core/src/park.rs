//! How a queued waiter sleeps until it is handed the lock, and how it is woken.

use core::marker::PhantomData;

use spin::relax::RelaxStrategy;

use crate::queue::{ASLEEP, AWAKE};
use crate::sync::{AtomicU32, Ordering::Relaxed};

/// A waiting strategy: how a thread queued on a [`RawGil`](crate::RawGil) sleeps until it is
/// handed the lock, and how the thread that hands it over wakes it.
///
/// The core decides *who* owns the lock; a `Park` decides only how to wait for that decision.
/// Each queued [`Waiter`](crate::Waiter) has a state word, which holds
/// [`Waiter::AWAKE`](crate::Waiter::AWAKE) while the waiter is queued and awake. A strategy
/// that sleeps first says so: it changes the word to [`Waiter::ASLEEP`](crate::Waiter::ASLEEP)
/// with a compare-exchange, and sleeps only while the word holds that. The core changes the word
/// ("granted", "offered", "closed", or back to "awake" for a spurious wake-up of
/// `RawGil::wake_last_polled`) with a swap, and calls [`unpark`](Park::unpark), with the
/// [`Unparker`](Park::Unparker) it took from the waiter while the waiter was still queued, only
/// if the swap found the waiter asleep. A handoff to a waiter that is still spinning so costs no
/// wake-up call.
///
/// `gil-core` ships [`SpinPark`] for bare metal; `gil-std` adds futex parking.
///
/// A strategy that sleeps without marking the word `ASLEEP`, or never wakes a parked thread,
/// makes the lock hang, but cannot make it unsound: ownership is decided by the core alone.
pub trait Park {
    /// Per-waiter data the waker needs, such as a thread handle. Lives in the waiter node.
    type Parker: Sync;

    /// What the granting thread keeps to wake a waiter after the waiter's node may already be
    /// gone (the woken thread may see its grant, return and free the node before `unpark` runs).
    /// It must therefore not borrow the node: a thread handle, or a raw address used only as a
    /// futex key, not dereferenced.
    type Unparker;

    /// Creates the per-waiter data; called on the waiting thread when its node is made.
    fn parker() -> Self::Parker;

    /// Takes what is needed to wake this waiter later. Called while the waiter is still queued
    /// (its node alive), just before its state word changes.
    fn unparker(parker: &Self::Parker, word: &AtomicU32) -> Self::Unparker;

    /// Waits while `word` holds [`Waiter::AWAKE`](crate::Waiter::AWAKE) or
    /// [`Waiter::ASLEEP`](crate::Waiter::ASLEEP). Before sleeping (anything that needs
    /// [`unpark`](Park::unpark) to end), move the word from `AWAKE` to `ASLEEP` with a
    /// compare-exchange, and sleep only if it succeeded or the word already was `ASLEEP`. May
    /// return early or spuriously: the core rechecks the word and parks again.
    fn park(parker: &Self::Parker, word: &AtomicU32);

    /// Wakes a waiter whose state word has just changed from [`Waiter::ASLEEP`](crate::Waiter::ASLEEP).
    fn unpark(unparker: Self::Unparker);

    /// Waits while `word` holds `value`: a lender waiting for its loan to come back
    /// (`RawGil::wait_loan_back`), on the lock's breaker
    /// word. May return early or spuriously; the core rereads the word. The default spins one
    /// relax step, for strategies that never sleep.
    #[inline]
    fn park_word(word: &AtomicU32, value: u32) {
        let _ = (word, value);
        crate::sync::relax::<spin::relax::Spin>();
    }

    /// Wakes every thread in [`park_word`](Park::park_word) on `word` (there is at most one,
    /// the lender). The default does nothing, for strategies that never sleep.
    #[inline]
    fn unpark_word(word: &AtomicU32) {
        let _ = word;
    }
}

/// The one step a waiter takes before it sleeps: marks its state `word` asleep, so that the
/// core's grant wakes it. Returns whether to sleep: `true` if the word is now
/// [`Waiter::ASLEEP`](crate::Waiter::ASLEEP) (marked here, or already, back from a spurious
/// wake-up), `false` if the core changed it meanwhile (granted, offered, closed): look again.
///
/// A [`Park`] strategy's `park`, and a poll's sleep, call it after they registered whatever
/// [`unpark`](Park::unpark) wakes.
///
/// ```
/// use gil_core::{AtomicU32, Waiter, mark_asleep};
///
/// let word = AtomicU32::new(Waiter::<gil_core::SpinPark>::AWAKE);
/// assert!(mark_asleep(&word));
/// assert!(mark_asleep(&word), "still asleep");
/// ```
#[inline]
pub fn mark_asleep(word: &AtomicU32) -> bool {
    // Relaxed: only a mark. The core's swap of the word is ordered before or after it, and
    // tells the core whether to wake; the waiter rereads the word with Acquire.
    matches!(
        word.compare_exchange(AWAKE, ASLEEP, Relaxed, Relaxed),
        Ok(_) | Err(ASLEEP)
    )
}

/// Busy-waiting with one of `spin`'s relax strategies between looks at the state word.
///
/// For bare metal and interrupt-driven systems without a scheduler, where a waiter has nothing
/// better to do than poll. `R` is [`spin::relax::Spin`] (a CPU spin-loop hint) by default;
/// [`spin::relax::Loop`] spins without a hint. Under `--cfg loom` every relax step is a loom
/// yield, whatever `R` is, so user models that use `SpinPark` terminate.
///
/// ```
/// use gil_core::{RawGil, SpinPark};
///
/// static GIL: RawGil<SpinPark> = RawGil::new();
/// GIL.lock().unwrap();
/// // SAFETY: this thread took the lock just above.
/// unsafe { GIL.unlock() };
/// ```
pub struct SpinPark<R: RelaxStrategy = spin::relax::Spin>(PhantomData<R>);

impl<R: RelaxStrategy> Park for SpinPark<R> {
    type Parker = ();
    type Unparker = ();

    #[inline]
    fn parker() {}

    #[inline]
    fn unparker(_: &(), _: &AtomicU32) {}

    #[inline]
    fn park(_: &(), _: &AtomicU32) {
        // One relax step and back to the core's loop, which rereads the state word. Never
        // asleep, so never woken: `unpark` is not called.
        crate::sync::relax::<R>();
    }

    #[inline]
    fn unpark(_: ()) {}
}
