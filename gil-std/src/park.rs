//! Futex parking: how a waiter of a [`Gil`](crate::Gil) sleeps, and how it is woken.

use std::time::{Duration, Instant};

use gil_core::{AtomicU32, Park};

/// Spins briefly, then sleeps on the waiter's own state word with a futex (`atomic-wait`).
///
/// A handoff to a thread that is still spinning costs a store and a cache miss. A handoff to a
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

impl FutexPark {
    /// Spins while `word` is `parked`, for up to `awake`, reading the clock every [`SPINS`]
    /// rounds: for waits expected to end within microseconds (a loan). Returns whether the word
    /// changed; if not, the caller sleeps with [`Park::park`].
    pub(crate) fn stay_awake(word: &AtomicU32, parked: u32, awake: Duration) -> bool {
        let until = Instant::now() + awake;
        while !spin(word, parked) {
            if Instant::now() >= until {
                return false;
            }
        }
        true
    }
}

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
const SPINS: u32 = 64;

impl Park for FutexPark {
    type Parker = ();
    type Unparker = *const AtomicU32;

    #[inline]
    fn parker() {}

    #[inline]
    fn unparker(_: &(), word: &AtomicU32) -> *const AtomicU32 {
        word
    }

    fn park(_: &(), word: &AtomicU32, parked: u32) {
        if !spin(word, parked) {
            // Returns at once if the word already changed, so a grant between our last look
            // and the sleep is not lost.
            atomic_wait::wait(word, parked);
        }
    }

    #[inline]
    fn unpark(unparker: *const AtomicU32) {
        atomic_wait::wake_one(unparker);
    }
}
