//! Futex parking: how a waiter of a [`Gil`](crate::Gil) sleeps, and how it is woken.

use core::sync::atomic::Ordering::Relaxed;

use gil_core::{AtomicU32, Park, Waiter};

/// Spins briefly, then sleeps on the waiter's own state word with a futex (`atomic-wait`).
///
/// A handoff to a thread that is still spinning costs a swap and a cache miss, and no system
/// call: the waiter marks its word [`Waiter::ASLEEP`] only as it goes to sleep. A handoff to a
/// sleeping thread costs a futex wake, which takes tens of microseconds to run on a small VM.
/// The spin covers short holds, such as a blocking region that returns at once; after it the
/// waiter sleeps and uses no CPU.
///
/// Waking needs only the address of the word: `atomic_wait::wake_one` accepts a dangling
/// pointer, so the granting thread may wake after the woken thread has already seen its grant,
/// returned, and freed the node.
///
/// [`Gil`](crate::Gil) uses it; it also serves a bare [`gil_core::RawGil`] on `std`:
///
/// ```
/// use gil_core::RawGil;
/// use gil_std::FutexPark;
///
/// static RAW: RawGil<FutexPark> = RawGil::new();
/// RAW.lock().unwrap();
/// // SAFETY: locked just above on this thread.
/// unsafe { RAW.unlock() };
/// ```
#[derive(Debug)]
pub struct FutexPark;

const PARKED: u32 = Waiter::<FutexPark>::PARKED;
const ASLEEP: u32 = Waiter::<FutexPark>::ASLEEP;

/// [`SPINS`] rounds of `spin_loop` while `word` is `parked`. Returns whether it changed.
fn spin(word: &AtomicU32, parked: u32) -> bool {
    for _ in 0..SPINS {
        // Relaxed: only a hint to stop spinning; the core rereads the word with Acquire.
        if word.load(core::sync::atomic::Ordering::Relaxed) != parked {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Rounds of `spin_loop` before sleeping. Measured on the development VM (AMD EPYC, where one
/// round is a `PAUSE` of about 25 ns): 64 rounds take 1.6–1.7 µs, a tenth of a futex
/// wake-to-run there (~19 µs). A first choice, to be tuned against W2 (handoff latency) once
/// the lab measures it.
pub(crate) const SPINS: u32 = 64;

impl Park for FutexPark {
    type Parker = ();
    type Unparker = *const AtomicU32;

    #[inline]
    fn parker() {}

    #[inline]
    fn unparker(_: &(), word: &AtomicU32) -> *const AtomicU32 {
        word
    }

    fn park(_: &(), word: &AtomicU32) {
        // Spin first, while nothing needs to wake us; then say that we sleep. Relaxed: the
        // compare-exchange only marks the word (the core's swap of it is ordered before or
        // after, and tells whether to wake us), and the core rereads it with Acquire.
        // (Back from a spurious wake-up, the word is still ASLEEP: sleep again at once.)
        if word.load(Relaxed) != ASLEEP {
            if spin(word, PARKED) {
                return;
            }
            if word
                .compare_exchange(PARKED, ASLEEP, Relaxed, Relaxed)
                .is_err()
            {
                return;
            }
        }
        // Returns at once if the word is no longer ASLEEP, so a grant between the mark and the
        // sleep is not lost.
        atomic_wait::wait(word, ASLEEP);
    }

    #[inline]
    fn unpark(unparker: *const AtomicU32) {
        atomic_wait::wake_one(unparker);
    }

    /// Sleeps on `word` (a lock's breaker word, for a lender) while it holds `value`.
    fn park_word(word: &AtomicU32, value: u32) {
        atomic_wait::wait(word, value);
    }

    fn unpark_word(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }
}
