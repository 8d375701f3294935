//! The one place gil-std chooses between the real thing and loom (besides the module list in
//! `lib.rs`, which leaves out the futex and `lock_api` modules under loom).
//!
//! Under `--cfg loom`: waiters park with loom's park/unpark instead of a futex; the owner token
//! is a loom thread-local (loom runs every model thread on one OS thread); and the clock thread
//! is off, since only loom's threads may touch loom's atomics. Timed preemption is therefore
//! not modelled; timeouts are, with deadlines that have already passed.

#[cfg(loom)]
use gil_core::{AtomicU32, Park};

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, atomic::AtomicBool};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, atomic::AtomicBool};

/// Locks `mutex`, ignoring poison: every critical section of gil-std leaves its data
/// consistent before anything in it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` with `guard`'s mutex, ignoring poison as [`lock`] does.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How waiters sleep.
#[cfg(not(loom))]
pub(crate) type Parking = crate::park::FutexPark;
/// How waiters sleep: loom's park/unpark, which loom checks for lost wake-ups.
#[cfg(loom)]
pub(crate) type Parking = LoomPark;

/// Spins while `word` is `parked`, until `until` (`spin_while`): for waits expected to end
/// within microseconds (a loan); if it returns `false`, the caller sleeps. Returns whether the
/// word changed. Under loom, which has no time, returns `false` at once.
#[inline]
pub(crate) fn stay_awake(
    word: &gil_core::AtomicU32,
    parked: u32,
    until: std::time::Instant,
) -> bool {
    #[cfg(not(loom))]
    {
        // Relaxed: only a hint to stop spinning; the caller rereads the word with Acquire.
        spin_while(
            || word.load(core::sync::atomic::Ordering::Relaxed) == parked,
            until,
        )
    }
    #[cfg(loom)]
    {
        let _ = (word, parked, until);
        false
    }
}

/// Spins while `busy()` holds, until `until`, reading the clock every `SPINS` rounds (the
/// futex strategy's spin before it sleeps): for the two sides of a loan, which expect an answer
/// within microseconds. Returns whether `busy()` stopped holding. Under loom, which has no
/// time, looks once more after one yield.
#[inline]
pub(crate) fn spin_while(mut busy: impl FnMut() -> bool, until: std::time::Instant) -> bool {
    #[cfg(not(loom))]
    loop {
        for _ in 0..crate::park::SPINS {
            if !busy() {
                return true;
            }
            core::hint::spin_loop();
        }
        if std::time::Instant::now() >= until {
            return false;
        }
    }
    #[cfg(loom)]
    {
        let _ = until;
        if !busy() {
            return true;
        }
        loom::thread::yield_now();
        !busy()
    }
}

/// Whether the clock thread (timed preemption, timeout wake-ups) runs.
pub(crate) const CLOCK: bool = !cfg!(loom);

/// Whether a waiter with a deadline sleeps with a timeout of its own
/// ([`park_until`](crate::park::park_until), a futex wait with a timeout on Linux). Elsewhere
/// the clock thread wakes it at its deadline, a wake-up later.
pub(crate) const OWN_TIMEOUTS: bool = cfg!(all(target_os = "linux", not(loom)));

/// A token for the calling thread: the address of a thread-local, unique among live threads
/// and never 0.
#[inline]
pub(crate) fn thread_token() -> usize {
    #[cfg(not(loom))]
    std::thread_local!(static TOKEN: u8 = const { 0 });
    #[cfg(loom)]
    loom::thread_local!(static TOKEN: u8 = 0);
    TOKEN.with(|t| core::ptr::from_ref(t) as usize)
}

/// Parking for loom models.
#[cfg(loom)]
#[derive(Debug)]
pub struct LoomPark;

#[cfg(loom)]
impl Park for LoomPark {
    type Parker = loom::thread::Thread;
    type Unparker = loom::thread::Thread;

    fn parker() -> loom::thread::Thread {
        loom::thread::current()
    }
    fn unparker(parker: &loom::thread::Thread, _: &AtomicU32) -> loom::thread::Thread {
        parker.clone()
    }
    fn park(_: &loom::thread::Thread, word: &AtomicU32) {
        use core::sync::atomic::Ordering::Relaxed;
        type Node = gil_core::Waiter<LoomPark>;
        // Relaxed: a marker only (as in `FutexPark`); the core rereads the word with Acquire.
        match word.compare_exchange(Node::PARKED, Node::ASLEEP, Relaxed, Relaxed) {
            Ok(_) | Err(Node::ASLEEP) => loom::thread::park(),
            Err(_) => {}
        }
    }
    fn unpark(unparker: loom::thread::Thread) {
        unparker.unpark();
    }

    /// A futex, for a lender waiting for its loan back: the look at the word and the sign-up
    /// to be woken happen under one mutex, which the wake takes too, so a give-back between
    /// the lender's look and its sleep is not lost (loom's unpark before park makes the park
    /// return). One sleeper slot: a loom model has one lender at a time.
    fn park_word(word: &AtomicU32, value: u32) {
        use core::sync::atomic::Ordering::Relaxed;
        let mut sleeper = crate::sync::lock(&LOAN_SLEEPER);
        // Relaxed: as the kernel's look; the core rereads the word with Acquire.
        if word.load(Relaxed) != value {
            return;
        }
        *sleeper = Some(loom::thread::current());
        drop(sleeper);
        loom::thread::park();
    }

    fn unpark_word(_: &AtomicU32) {
        if let Some(sleeper) = crate::sync::lock(&LOAN_SLEEPER).take() {
            sleeper.unpark();
        }
    }
}

#[cfg(loom)]
loom::lazy_static! {
    /// The lender asleep in `LoomPark::park_word`.
    static ref LOAN_SLEEPER: Mutex<Option<loom::thread::Thread>> = Mutex::new(None);
}
