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

/// Rounds of `spin_loop` between two looks at the clock while staying awake, and before a
/// futex waiter sleeps. Measured on the development VM (AMD EPYC, where one round is a
/// `PAUSE` of about 25 ns): 64 rounds take 1.6–1.7 µs, a tenth of a futex wake-to-run there
/// (~19 µs).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const SPINS: u32 = 64;

/// Staying awake until a deadline, for waits expected to end within microseconds: the two
/// sides of a loan, and a timed waiter's last stretch before its deadline. The caller looks
/// at what it waits for between rounds; each round is one spin hint, and every [`SPINS`]th
/// also reads the clock. Under loom, which has no time, the first round is a yield and the
/// second says stop.
#[derive(Debug)]
pub(crate) struct StayAwake {
    #[cfg_attr(loom, allow(dead_code))]
    until: std::time::Instant,
    rounds: u32,
}

impl StayAwake {
    /// Awake until `until`.
    #[inline]
    pub(crate) fn until(until: std::time::Instant) -> Self {
        Self { until, rounds: 0 }
    }

    /// One round of staying awake. Returns whether to go on (the deadline has not passed).
    #[inline]
    pub(crate) fn round(&mut self) -> bool {
        self.rounds = self.rounds.wrapping_add(1);
        #[cfg(not(loom))]
        {
            core::hint::spin_loop();
            self.rounds % SPINS != 0 || std::time::Instant::now() < self.until
        }
        #[cfg(loom)]
        {
            if self.rounds > 1 {
                return false;
            }
            loom::thread::yield_now();
            true
        }
    }
}

/// Whether a new `Gil` has the fast return on: yes, except under loom, where a model that
/// wants it switches it on (`Gil::set_fast_return`). The loan itself is modelled in gil-core.
pub(crate) const FAST_RETURN: bool = !cfg!(loom);

/// Whether every thread back from a blocking region has credit: under loom, whose executions
/// must not depend on the real clock the credit rule reads (the rule's arithmetic has a
/// property test of its own); never otherwise.
pub(crate) const CREDIT_EVERY_RETURN: bool = cfg!(loom);

/// Whether the clock thread (timed preemption, timeout wake-ups) runs.
pub(crate) const CLOCK: bool = !cfg!(loom);

/// Sleeps like `Parking::park` while `node` is queued, but not past `at`. On Linux the waiter
/// sleeps with a timeout of its own ([`park_until`](crate::park::park_until), a futex wait with
/// a timeout); elsewhere the clock thread wakes it at its deadline, a wake-up later (`ticket`
/// is that wake-up's, for the waiter to cancel when it is done). Under loom, which has no
/// time, a plain park: a model's deadlines have passed before the wait begins.
#[allow(unused_variables)]
pub(crate) fn park_until(
    node: core::pin::Pin<&crate::gil::Node>,
    at: std::time::Instant,
    ticket: &mut Option<u64>,
) {
    #[cfg(all(target_os = "linux", not(loom)))]
    crate::park::park_until(node.word(), at);
    #[cfg(all(not(target_os = "linux"), not(loom)))]
    {
        if ticket.is_none() {
            *ticket = Some(crate::clock::clock().wake_at(at, node.word()));
        }
        <Parking as gil_core::Park>::park(node.parker(), node.word());
    }
    #[cfg(loom)]
    <Parking as gil_core::Park>::park(node.parker(), node.word());
}

/// Declares thread-locals: std's, or loom's under loom, which runs every model thread on one OS
/// thread. `const` before the initialiser asks for std's const initialisation (loom has none).
macro_rules! thread_locals {
    ($(static $name:ident: $t:ty = const $init:block;)*) => {
        $(
            #[cfg(not(loom))]
            std::thread_local!(static $name: $t = const $init);
            #[cfg(loom)]
            loom::thread_local!(static $name: $t = $init);
        )*
    };
    ($(static $name:ident: $t:ty = $init:expr;)*) => {
        $(
            #[cfg(not(loom))]
            std::thread_local!(static $name: $t = $init);
            #[cfg(loom)]
            loom::thread_local!(static $name: $t = $init);
        )*
    };
}

/// A token for the calling thread: the address of a thread-local, unique among live threads
/// and never 0.
#[inline]
pub(crate) fn thread_token() -> usize {
    thread_locals! {
        static TOKEN: u8 = const { 0 };
    }
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
