//! Futex parking: how a waiter of a [`Gil`](crate::Gil) sleeps, and how it is woken.

use core::sync::atomic::Ordering::Relaxed;
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

use gil_core::{AtomicU32, Park, Waiter};

/// Rounds of `spin_loop` before a futex waiter sleeps, and between two looks at the clock while
/// staying awake (`sync::StayAwake`): a small part of a futex wake-to-run, so a waiter that
/// sleeps after them has lost little (docs/benchmarks.md, "The constants").
pub(crate) const SPINS: u32 = 64;

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

const AWAKE: u32 = Waiter::<FutexPark>::AWAKE;
const ASLEEP: u32 = Waiter::<FutexPark>::ASLEEP;

/// The step before a futex sleep: spin [`SPINS`] rounds while nothing needs to wake us, then
/// say that we sleep. Returns whether to sleep (the word is `ASLEEP`); `false`: it changed
/// (granted, offered, closed), look again. Back from a spurious wake-up the word is still
/// `ASLEEP`: sleep again at once.
///
/// Relaxed loads: they only decide when to stop spinning; the core rereads the word with
/// Acquire.
fn ready_to_sleep(word: &AtomicU32) -> bool {
    if word.load(Relaxed) == ASLEEP {
        return true;
    }
    for _ in 0..SPINS {
        if word.load(Relaxed) != AWAKE {
            return false;
        }
        core::hint::spin_loop();
    }
    gil_core::mark_asleep(word)
}

/// How long before its deadline a waiter with one stops sleeping and spins instead: a futex
/// timeout fires late by the thread's timer slack and the wake-up after it, so a waiter that
/// slept to the deadline itself would come back that late (docs/benchmarks.md, "The
/// constants"). Spinning the last stretch costs up to this much CPU time per wait that reaches
/// its deadline; a grant wakes the waiter as usual.
#[cfg(target_os = "linux")]
pub(crate) const SPIN_BEFORE_DEADLINE: Duration = Duration::from_micros(200);

/// Waits like [`FutexPark::park`] while `word` says queued, but not past `deadline`: the
/// waiter's own timed futex wait, which a grant's `wake_one` ends like an untimed one. Sleeps
/// until [`SPIN_BEFORE_DEADLINE`] before the deadline, then spins to it. May return early or
/// spuriously; the caller rereads the word and the time.
#[cfg(target_os = "linux")]
pub(crate) fn park_until(word: &AtomicU32, deadline: Instant) {
    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
        return;
    };
    let Some(sleep) = left.checked_sub(SPIN_BEFORE_DEADLINE) else {
        // The last stretch: spin while nothing is handed over, up to the deadline. Relaxed:
        // only a hint to stop; the core rereads the word with Acquire.
        let mut awake = crate::sync::StayAwake::until(deadline);
        while matches!(word.load(Relaxed), AWAKE | ASLEEP) && awake.round() {}
        return;
    };
    if ready_to_sleep(word) {
        futex_wait_for(word, ASLEEP, sleep);
    }
}

/// Sleeps while `word` holds `value`, for at most `timeout` (a private futex wait, which
/// `atomic_wait::wake_one` on the same word ends). Returns early on a wake, a signal, a
/// changed word, or spuriously.
#[cfg(target_os = "linux")]
fn futex_wait_for(word: &AtomicU32, value: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10⁹: fits in any `c_long`.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the word at `word`, a live `AtomicU32` (the kernel compares it
    // with `value` atomically), and the relative timeout, a live `timespec`; it writes nothing.
    // The last two arguments are unused by FUTEX_WAIT. The result (0, or -1 with ETIMEDOUT,
    // EAGAIN or EINTR) needs no handling: every return means "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            core::ptr::from_ref(word),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            value,
            core::ptr::from_ref(&timeout),
            core::ptr::null::<u32>(),
            0u32,
        );
    }
}

impl Park for FutexPark {
    type Parker = super::ParkSlot;
    type Unparker = super::Wake;

    #[inline]
    fn parker() -> super::ParkSlot {
        super::ParkSlot::thread()
    }

    #[inline]
    fn unparker(parker: &super::ParkSlot, word: &AtomicU32) -> super::Wake {
        super::Wake {
            word,
            task: parker.task_slot(),
        }
    }

    fn park(_: &super::ParkSlot, word: &AtomicU32) {
        if ready_to_sleep(word) {
            // Returns at once if the word is no longer ASLEEP, so a grant between the mark and
            // the sleep is not lost.
            atomic_wait::wait(word, ASLEEP);
        }
    }

    #[inline]
    fn unpark(mut unparker: super::Wake) {
        if !unparker.wake_task() {
            atomic_wait::wake_one(unparker.word);
        }
    }

    /// Sleeps on `word` (a lock's breaker word, for a lender) while it holds `value`.
    fn park_word(word: &AtomicU32, value: u32) {
        atomic_wait::wait(word, value);
    }

    fn unpark_word(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }
}
