//! The `Gil` and its guards: the lock, composed of gil-core's `RawGil` and the services of
//! this crate, and the only place that names them together.
//!
//! - this file: the lock's state, acquiring, closing, statistics;
//! - `hold`: the one owner of a thread's hold: begins, ends, sets aside and resumes it, counts
//!   its guards, lets it go for a region and takes it back, and refuses what would break it;
//! - [`guard`]: the guards, and what they do while held;
//! - `handover`: the checkpoint, and the hand-overs and loans inside it;
//! - `region`: how a thread back from a blocking region waits (the core's `Return`);
//! - `waiting`: how a thread waits in the core's composites (its `WaitPolicy`);
//! - `future`: the async acquire;
//! - `runtime`: what a runtime hooks in (pending calls, breaker handlers, the event hook,
//!   interrupts, thread registration);
//! - `services`: the state of those services, made on first use.

mod future;
mod guard;
mod handover;
mod hold;
mod region;
mod runtime;
mod services;
mod waiting;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use gil_core::{RawGil, TryLockError, Waited};

pub use future::{AcquireFuture, RelockFuture, UnlockedAsync};
pub use guard::{EnsureGuard, GilGuard, Holds, Unlocked};
pub(crate) use hold::{HoldState, SetAside, reentered_panic};
pub use runtime::{BreakerHandler, EventHook, PendingCall, PendingCalls, ThreadRegistration};
pub(crate) use waiting::{LOAN_SPIN, WaitFor, Waiting};
not_modelled! {
    pub(crate) use waiting::Deadline;
}

use crate::bits::{WATCH_TIMING, Watch};
use crate::clock::{Timer, now_nanos};
use crate::hooks::Event;
use crate::owner::Owner;
use crate::sync::{LazyBox, REAL_ATOMICS, Raw};
use crate::threads::ThreadStats;
use services::Services;

/// A global interpreter lock: one thread inside at a time, handed on in FIFO order.
///
/// Take it with [`acquire`](Gil::acquire), which returns a [`GilGuard`]. While holding it, call
/// [`GilGuard::checkpoint`] often: when another thread asks for the lock, the checkpoint hands
/// it over and takes it back in turn. Around blocking work, release it with
/// [`GilGuard::allow_threads`] or [`GilGuard::unlock`].
///
/// ```
/// use gil_std::Gil;
///
/// static GIL: Gil = Gil::new();
///
/// let mut guard = GIL.acquire();
/// for _ in 0..1_000 {
///     // ... interpreter work ...
///     guard.checkpoint().unwrap();
/// }
/// let bytes = guard.allow_threads(|| std::fs::read("/dev/null")); // no lock held in here
/// drop(guard);
/// assert!(bytes.unwrap().is_empty());
/// ```
// `repr(C)`: the layout is part of what a handoff costs (see the layout check below).
#[repr(C)]
pub struct Gil {
    /// Written at every hold and release, on the same cache line as `raw`'s lock word: a
    /// thread taking the lock has just fetched that line, so marking itself the owner costs no
    /// second trip between cores. A layout check below says the two share the line and nothing
    /// else is on it.
    pub(crate) owner: Owner,
    /// The lock word, the breaker and the queue: every handoff reads and writes them (all but
    /// the queue's absence count, which only regions touch, on the first line with `owner`).
    pub(crate) raw: Raw,
    /// Keeps everything below off the first 128 bytes (x86 fetches lines in adjacent pairs),
    /// which are `raw`'s and `owner`'s alone.
    _apart: Apart,
    /// The switch interval, the slice's start and the threads waiting timed: what the clock
    /// reads while it lists the lock.
    pub(crate) timer: Timer,
    /// What the hold paths must do besides taking and releasing (`bits::WATCH_*`). One relaxed
    /// load on each hold and release when nothing is watched.
    pub(crate) watch: Watch,
    /// The holder's counts: its extra guards, its checkpoints, and the holds set aside.
    /// Written only by `hold`, and only by the thread holding the lock.
    pub(crate) hold: HoldState,
    /// Whether threads with credit come back from blocking regions by asking for a loan
    /// ([`Gil::set_fast_return`]).
    pub(crate) fast_return: AtomicBool,
    /// Hooks, pending calls, breaker handlers, the deadlock table and the counters: made on
    /// first use (see [`Services`]).
    services: LazyBox<Services>,
}

// The owner and the lock word share the first cache line of a `Gil` (gil-core lays its lock
// word first), and nothing but the lock is in its first 128 bytes (x86 fetches lines in
// adjacent pairs). On a line with `watch`, which both sides of a loan read at every hold and
// release, the owner would cost each loan two more trips between cores.
// (Only with the hardware's atomics: the facade's stand-ins are laid out otherwise.)
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(Gil, owner) == 0);
    assert!(!REAL_ATOMICS || offset_of!(Gil, raw) + size_of::<u32>() <= 64);
    assert!(!REAL_ATOMICS || offset_of!(Gil, raw) + size_of::<Raw>() <= 128);
    assert!(!REAL_ATOMICS || offset_of!(Gil, timer) >= 128);
    assert!(!REAL_ATOMICS || size_of::<Gil>() <= 256);
};

/// An empty field aligned to 128 bytes: the field after it starts on a pair of lines of its
/// own.
#[derive(Debug)]
#[repr(align(128))]
struct Apart;

/// What a [`Gil`] has done so far; see [`Gil::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Handoffs of the lock from one thread directly to a waiting one (wraps at `u32::MAX`).
    pub switches: u32,
    /// Drop requests honoured: checkpoints that handed the lock to a waiter.
    pub forced_drops: u64,
    /// Drop requests the clock thread made: its backstop for a holder whose checkpoints are too
    /// far apart for it to time its own slice (see [`GilGuard::checkpoint`]). The clock asks
    /// once per slice; while a request is still unanswered it does not ask again.
    pub clock_requests: u64,
    /// Loans: checkpoints that lent the lock to a thread back from a blocking region with
    /// credit (see [`GilGuard::allow_threads`]), counted as each loan is made.
    pub loans: u64,
    /// Acquisitions (including takings-back after a yield or a blocking region) that waited.
    /// A lender getting its loan back is one only if it had to sleep for it (see `loans`).
    pub contended: u64,
    /// Total time those acquisitions waited. Not timed: the waits of loans a thread back from
    /// a blocking region asked for (they end at the holder's next checkpoint, within
    /// microseconds by design, and a clock read at the grant would hold up the lender), and a
    /// lender's time without the lock while its loan is out, unless it had to sleep.
    pub wait_time: Duration,
    /// Total time the lock was held, counted only while [`Gil::set_hold_timing`] is on (zero
    /// otherwise): timing a hold reads the clock twice, which the uncontended path must not
    /// pay for by default.
    pub hold_time: Duration,
}

/// Why the lock was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcquireError {
    /// The time limit passed first.
    Timeout,
    /// The lock is closed ([`Gil::close`]).
    Closed,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcquireError::Timeout => "timed out waiting for the GIL",
            AcquireError::Closed => "the GIL is closed",
        })
    }
}

impl std::error::Error for AcquireError {}

/// A switch interval out of the accepted range; see [`Gil::set_switch_interval`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SwitchIntervalError(pub Duration);

impl fmt::Display for SwitchIntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a switch interval of {:?} is out of range: it must be from {:?} to {:?}",
            self.0,
            Gil::MIN_SWITCH_INTERVAL,
            Gil::MAX_SWITCH_INTERVAL
        )
    }
}

impl std::error::Error for SwitchIntervalError {}

impl Gil {
    /// The switch interval of [`Gil::new`]: 5 ms, as CPython's.
    pub const DEFAULT_SWITCH_INTERVAL: Duration = Duration::from_millis(5);
    /// The shortest switch interval accepted: 10 µs. A handoff to a sleeping thread takes
    /// tens of microseconds, so shorter intervals would be spent switching.
    pub const MIN_SWITCH_INTERVAL: Duration = Duration::from_micros(10);
    /// The longest switch interval accepted: one hour.
    pub const MAX_SWITCH_INTERVAL: Duration = Duration::from_secs(3600);

    crate::sync::const_fn! {
        /// A new, open, unlocked lock with the default switch interval (5 ms). `const`, so it
        /// can be a `static`; many independent locks can coexist (one per interpreter).
        /// (Under `--cfg loom` it is not `const`: loom's atomics are not.)
        pub fn new() -> Self {
            Self::with_switch_interval(Self::DEFAULT_SWITCH_INTERVAL)
        }
    }

    crate::sync::const_fn! {
        /// A new lock whose holder is asked to hand over once another thread has waited `interval`
        /// with nobody switching in.
        ///
        /// # Panics
        ///
        /// If `interval` is outside [`MIN_SWITCH_INTERVAL`](Gil::MIN_SWITCH_INTERVAL) ..=
        /// [`MAX_SWITCH_INTERVAL`](Gil::MAX_SWITCH_INTERVAL) — at compile time in a `static`.
        ///
        /// ```
        /// use std::time::Duration;
        /// use gil_std::Gil;
        ///
        /// static FAST: Gil = Gil::with_switch_interval(Duration::from_micros(500));
        /// assert_eq!(FAST.switch_interval(), Duration::from_micros(500));
        /// ```
        pub fn with_switch_interval(interval: Duration) -> Self {
            let nanos = match Self::checked_interval(interval) {
                Ok(nanos) => nanos,
                Err(_) => panic!("gil: a switch interval must be from 10 µs to one hour"),
            };
            Self {
                raw: RawGil::new(),
                owner: Owner::new(),
                _apart: Apart,
                timer: Timer::new(nanos),
                watch: Watch::new(),
                hold: HoldState::new(),
                fast_return: AtomicBool::new(true),
                services: LazyBox::new(),
            }
        }
    }

    const fn checked_interval(interval: Duration) -> Result<u64, SwitchIntervalError> {
        let min = Self::MIN_SWITCH_INTERVAL.as_nanos();
        let max = Self::MAX_SWITCH_INTERVAL.as_nanos();
        let nanos = interval.as_nanos();
        if nanos < min || nanos > max {
            return Err(SwitchIntervalError(interval));
        }
        Ok(nanos as u64) // at most an hour of nanoseconds: fits
    }

    /// The switch interval: how long a thread waits, with nobody switching in, before the
    /// holder is asked to hand over.
    pub fn switch_interval(&self) -> Duration {
        self.timer.interval()
    }

    /// Changes the switch interval, also while threads run (like `sys.setswitchinterval`).
    /// Takes effect at once, for the holder of the moment too.
    ///
    /// # Errors
    ///
    /// [`SwitchIntervalError`] if `interval` is outside
    /// [`MIN_SWITCH_INTERVAL`](Gil::MIN_SWITCH_INTERVAL) ..=
    /// [`MAX_SWITCH_INTERVAL`](Gil::MAX_SWITCH_INTERVAL); the interval is then unchanged.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// assert_eq!(gil.switch_interval(), Duration::from_millis(5));
    /// gil.set_switch_interval(Duration::from_millis(1)).unwrap();
    /// assert!(gil.set_switch_interval(Duration::ZERO).is_err());
    /// assert_eq!(gil.switch_interval(), Duration::from_millis(1));
    /// ```
    pub fn set_switch_interval(&self, interval: Duration) -> Result<(), SwitchIntervalError> {
        let nanos = Self::checked_interval(interval)?;
        self.timer.set_interval(nanos);
        Ok(())
    }

    /// Takes the lock, waiting in FIFO order behind every thread already waiting.
    ///
    /// # Panics
    ///
    /// - If this thread already holds this lock: that would wait for itself for ever. Use
    ///   [`ensure`](Gil::ensure) where code may run with the lock already held.
    /// - If the lock is closed. Use [`acquire_checked`](Gil::acquire_checked) to get an error
    ///   instead.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// let guard = GIL.acquire();
    /// assert!(GIL.is_held_by_current_thread());
    /// drop(guard); // released; the longest waiter, if any, has it now
    /// assert!(!GIL.is_held_by_current_thread());
    /// ```
    ///
    /// ```should_panic
    /// let gil = gil_std::Gil::new();
    /// let _outer = gil.acquire();
    /// let _inner = gil.acquire(); // panics: "... use Gil::ensure() ..."
    /// ```
    #[inline]
    pub fn acquire(&self) -> GilGuard<'_> {
        match self.acquire_checked() {
            Ok(guard) => guard,
            Err(_) => closed_panic(),
        }
    }

    /// Like [`acquire`](Gil::acquire), but a closed lock is an error instead of a panic.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Closed`] if the lock is closed, or is closed while this thread waits.
    ///
    /// # Panics
    ///
    /// If this thread already holds this lock.
    ///
    /// ```
    /// use gil_std::{AcquireError, Gil};
    ///
    /// let gil = Gil::new();
    /// assert!(gil.acquire_checked().is_ok());
    /// assert!(gil.close().is_empty());
    /// assert_eq!(gil.acquire_checked().err(), Some(AcquireError::Closed));
    /// ```
    #[inline]
    pub fn acquire_checked(&self) -> Result<GilGuard<'_>, AcquireError> {
        self.acquire_within(None)
    }

    /// The acquire paths' shared body: one CAS when the lock is free, else queue and wait (up
    /// to `timeout`, when there is one). A closed lock fails in `enqueue`, on the slow path.
    #[inline]
    fn acquire_within(&self, timeout: Option<Duration>) -> Result<GilGuard<'_>, AcquireError> {
        if self.raw.try_lock().is_ok() {
            return Ok(self.owned());
        }
        self.acquire_slow(timeout)
    }

    #[cold]
    fn acquire_slow(&self, timeout: Option<Duration>) -> Result<GilGuard<'_>, AcquireError> {
        // A timeout too long to represent is no timeout.
        let deadline = timeout.and_then(|t| crate::sync::now().checked_add(t));
        let mut waiting = self.begin_wait(WaitFor::Turn, deadline, false);
        // This thread does not hold the lock (`begin_wait` checked).
        let waited = self.raw.lock_with(&mut waiting);
        if waiting.reentered() {
            let _ = waiting.done(Waited::GaveUp);
            reentered_panic();
        }
        waiting.done(waited)?;
        Ok(self.owned())
    }

    /// Takes the lock, waiting up to `timeout` in FIFO order.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if the time passed first — a grant that races with the
    /// timeout is never lost: the lock is then taken. [`AcquireError::Closed`] if the lock is,
    /// or becomes, closed.
    ///
    /// # Panics
    ///
    /// If this thread already holds this lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gil_std::{AcquireError, Gil};
    ///
    /// let gil = Gil::new();
    /// let held = gil.acquire();
    /// std::thread::scope(|s| {
    ///     let other = s.spawn(|| gil.try_acquire_for(Duration::from_millis(10)).map(drop));
    ///     assert_eq!(other.join().unwrap(), Err(AcquireError::Timeout));
    /// });
    /// drop(held);
    /// assert!(gil.try_acquire_for(Duration::from_millis(10)).is_ok());
    /// ```
    pub fn try_acquire_for(&self, timeout: Duration) -> Result<GilGuard<'_>, AcquireError> {
        self.acquire_within(Some(timeout))
    }

    /// A wait for a hold begins (a fresh acquire, or a region's end in line): refuses a thread
    /// that holds the lock already (or is in its hook), reports `Event::Wants` unless the caller
    /// did (it asked for a loan first), and returns this lock's [`Waiting`] policy, its wait
    /// timed from now.
    pub(crate) fn begin_wait(
        &self,
        turn: WaitFor,
        deadline: Option<Instant>,
        announced: bool,
    ) -> Waiting<'_> {
        self.refuse_reentry();
        if !announced {
            self.emit(Event::Wants);
        }
        Waiting::new(self, turn, Some(crate::sync::now()), deadline, false)
    }

    /// Takes the lock if it is free and nobody is waiting for it; never waits.
    ///
    /// Returns `None` if another thread holds it, threads are queued, the lock is closed, or
    /// this thread already holds it.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let guard = gil.try_acquire().expect("free");
    /// assert!(gil.try_acquire().is_none(), "held, even by this very thread");
    /// drop(guard);
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Option<GilGuard<'_>> {
        match self.raw.try_lock() {
            Ok(()) => Some(self.owned()),
            Err(TryLockError::WouldBlock | TryLockError::Closed) => None,
        }
    }

    /// Takes the lock, or nothing if this thread holds it already: for code that may be
    /// called both with and without the lock (callbacks, foreign threads). Nests to any depth.
    ///
    /// A nested guard (this thread already held the lock) joins the hold: the hold ends when
    /// its last guard is dropped, in whatever order they go. It can run checkpoints but cannot
    /// open a blocking region, and no region opens while it lives; see [`EnsureGuard`].
    ///
    /// # Panics
    ///
    /// If the lock is closed and this thread does not hold it.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// fn callback() {
    ///     let _g = GIL.ensure(); // works whether or not the caller held the lock
    ///     assert!(GIL.is_held_by_current_thread());
    /// }
    ///
    /// callback();
    /// let outer = GIL.acquire();
    /// callback();
    /// drop(outer);
    /// assert!(!GIL.is_held_by_current_thread());
    /// ```
    pub fn ensure(&self) -> EnsureGuard<'_> {
        if self.holds_here() {
            if !cfg!(bite = "nested-ensure-releases") {
                self.join_hold();
            }
            EnsureGuard::nested(self)
        } else {
            EnsureGuard::acquired(self.acquire())
        }
    }

    /// Closes the lock: every thread waiting in [`acquire`](Gil::acquire) or
    /// [`acquire_checked`](Gil::acquire_checked) is woken with [`AcquireError::Closed`] (a
    /// panic for `acquire`), and later acquirers get it at once. The holder, and threads
    /// coming back from a yield or a blocking region, carry on and finish normally.
    ///
    /// The [pending calls](Gil::add_pending_call) not yet run are handed back, in order: a
    /// holder can [`run`](PendingCalls::run) them, anyone else can take them out; later calls
    /// are refused with [`PendingCallError::Closed`](crate::PendingCallError::Closed).
    /// Closing again hands back nothing.
    ///
    /// ```
    /// use gil_std::{AcquireError, Gil};
    ///
    /// let gil = Gil::new();
    /// assert!(gil.close().is_empty(), "no calls were pending");
    /// assert_eq!(gil.acquire_checked().err(), Some(AcquireError::Closed));
    /// assert!(gil.try_acquire().is_none());
    /// ```
    pub fn close(&self) -> PendingCalls {
        let calls = self.close_calls();
        // Quietly: the closed-out tasks' wakers run on a waker thread, as this thread may hold
        // the lock, and a waker that polls inline would find it held.
        if cfg!(bite = "a-close-wakes-inline") {
            self.raw.close();
        } else {
            crate::owner::quietly(|| self.raw.close());
        }
        if let Some(services) = self.services()
            && !cfg!(bite = "a-close-keeps-the-watch")
        {
            services.tasks.vacate(&self.raw);
        }
        calls
    }

    /// Whether some thread holds the lock. A snapshot, for decisions that tolerate a stale
    /// answer; [`is_held_by_current_thread`](Gil::is_held_by_current_thread) is exact for the
    /// calling thread.
    ///
    /// ```
    /// let gil = gil_std::Gil::new();
    /// assert!(!gil.is_locked());
    /// let guard = gil.acquire();
    /// assert!(gil.is_locked());
    /// drop(guard);
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether [`close`](Gil::close) was called.
    ///
    /// ```
    /// let gil = gil_std::Gil::new();
    /// assert!(!gil.is_closed());
    /// assert!(gil.close().is_empty());
    /// assert!(gil.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Whether threads are queued for the lock. A snapshot, for decisions that tolerate a stale
    /// answer (such as whether to yield at all).
    ///
    /// ```
    /// let gil = gil_std::Gil::new();
    /// let _held = gil.acquire();
    /// assert!(!gil.has_waiters(), "holding is not waiting");
    /// ```
    pub fn has_waiters(&self) -> bool {
        self.raw.has_waiters()
    }

    /// Whether the holder's next checkpoint would do something: a drop request to answer, a
    /// loan to lend, [pending calls](Gil::add_pending_call) or a [runtime bit](Gil::raise) to
    /// run, an [interrupt](crate::InterruptHandle) to report — or the end of its slice, which
    /// this call then asks for. One relaxed load and a branch when nothing is pending.
    ///
    /// For code that runs inside a callback of a runtime, where a checkpoint is not safe (a
    /// Lua hook, say, whose binding expects callbacks to return in the reverse order of their
    /// entry, which another thread's callbacks run meanwhile would break): it asks, makes the
    /// runtime yield at a safe point, and the caller outside the callback checkpoints. Call it on the thread that holds the lock: while threads wait in
    /// line, its calls are counted towards the holder's look at the clock, as checkpoints are.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let mut guard = gil.acquire();
    /// assert!(!gil.wants_checkpoint(), "nothing pending");
    /// gil.add_pending_call(|_| ()).unwrap();
    /// assert!(gil.wants_checkpoint(), "a call to run");
    /// guard.checkpoint().unwrap(); // runs it
    /// assert!(!gil.wants_checkpoint());
    /// ```
    #[inline]
    pub fn wants_checkpoint(&self) -> bool {
        let pending = self.raw.breaker().pending();
        pending != 0 && self.wants_checkpoint_slow(pending)
    }

    /// Whether the calling thread holds this lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.holds_here()
    }

    /// Asks the holder to hand the lock to the longest waiter at its next checkpoint.
    /// Callable from any thread, with or without the lock. The clock does this on its own once
    /// somebody has waited a switch interval; call it to ask sooner.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let mut guard = gil.acquire();
    /// gil.request_drop();
    /// guard.checkpoint().unwrap(); // nobody waits: cleared, and the holder keeps the lock
    /// assert!(gil.is_held_by_current_thread());
    /// ```
    pub fn request_drop(&self) {
        self.raw.request_drop();
        self.emit(Event::DropRequested);
    }

    /// What the lock has done so far. The counters are gathered on the slow paths only, so
    /// the hot paths pay nothing for them.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// drop(gil.acquire()); // uncontended: nothing to count
    /// let stats = gil.stats();
    /// assert_eq!((stats.switches, stats.forced_drops, stats.contended), (0, 0, 0));
    /// ```
    pub fn stats(&self) -> Stats {
        let lock = Stats {
            switches: self.raw.switches(),
            clock_requests: self.timer.requests(),
            ..Stats::default()
        };
        let Some(services) = self.services() else {
            return lock;
        };
        let c = &services.counters;
        Stats {
            forced_drops: c.forced_drops.load(Relaxed),
            loans: c.sum(|s| &s.loans),
            contended: c.sum(|s| &s.contended),
            wait_time: Duration::from_nanos(c.sum(|s| &s.wait_nanos)),
            hold_time: Duration::from_nanos(c.hold_nanos.load(Relaxed)),
            ..lock
        }
    }

    /// Switches timing of holds on or off, for [`Stats::hold_time`]. Off by default: with it
    /// on, every acquire and release reads the clock. A hold already under way when timing is
    /// switched on is not counted.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// gil.set_hold_timing(true);
    /// let g = gil.acquire();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// drop(g);
    /// assert!(gil.stats().hold_time >= std::time::Duration::from_millis(2));
    /// ```
    pub fn set_hold_timing(&self, on: bool) {
        if on {
            let counters = &self.services_or_new().counters;
            counters.timing_since.store(now_nanos(), Relaxed);
        }
        self.watch.set(WATCH_TIMING, on);
    }

    /// Switches the fast return from blocking regions on or off (on by default; see
    /// docs/design.md, "Fast return from blocking"). Off, every thread back from a blocking
    /// region queues in strict FIFO order.
    ///
    /// With it on, a thread coming back from a blocking region that has credit — earned at its
    /// fair share of the time it spent blocked, spent while it holds out of turn — asks for a
    /// loan, and the holder's next checkpoint lends it the lock; the holder gets it back as
    /// soon as that thread blocks again, and its switch interval runs on meanwhile. An
    /// I/O-bound thread then gets the lock back within microseconds instead of a switch
    /// interval (the convoy effect). A thread whose ask is not answered while it stays awake
    /// (the holder is not running, or does not checkpoint) waits its turn in line, as does one
    /// that blocks briefly and computes long: it spends more than it earns.
    ///
    /// ```
    /// let gil = gil_std::Gil::new(); // fast return on
    /// let mut guard = gil.acquire();
    /// guard.allow_threads(|| ()); // nobody else waits: taken straight back
    /// assert_eq!(gil.stats().loans, 0);
    /// ```
    pub fn set_fast_return(&self, on: bool) {
        self.fast_return.store(on, Relaxed);
    }

    /// Counts an acquisition that waited `waited`.
    pub(crate) fn count_wait(&self, waited: Duration) {
        self.count_wait_nanos(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts an acquisition that waited `nanos` nanoseconds.
    pub(crate) fn count_wait_nanos(&self, nanos: u64) {
        self.services_or_new().counters.count_wait(nanos);
        ThreadStats::count(|t| {
            t.contended += 1;
            t.wait_time += Duration::from_nanos(nanos);
        });
    }
}

#[cold]
#[track_caller]
fn closed_panic() -> ! {
    panic!("gil: acquire() on a closed Gil; use acquire_checked() to handle shutdown");
}

impl Gil {
    /// The services' state, if any service was used.
    #[inline]
    pub(crate) fn services(&self) -> Option<&Services> {
        self.services.get()
    }

    /// The services' state, made now if no service was used yet.
    #[inline]
    pub(crate) fn services_or_new(&self) -> &Services {
        self.services.get_or_make(Services::new)
    }
}

impl Drop for Gil {
    fn drop(&mut self) {
        // Only threads count in with the clock, and the last to leave unlisted the lock while it
        // still borrowed it; a future, even one leaked while it waited, never lists it.
        debug_assert!(
            !crate::clock::is_listed(&self.timer),
            "gil: a Gil was dropped while the clock listed it"
        );
    }
}

// A panic that unwinds through a hold releases the lock (the guard's drop) and leaves every
// field consistent: the breaker, queue and counters change only in steps that cannot panic
// halfway, and the hooks and handlers behind the pointers are `'static` callbacks that are only
// called, never changed in place. So `catch_unwind(|| gil.acquire() ...)` needs no
// `AssertUnwindSafe`, as with `std::sync::Mutex`; what the lock protects is the user's, in
// `GilCell`s, which are not unwind-safe on their own.
impl std::panic::RefUnwindSafe for Gil {}
impl std::panic::UnwindSafe for Gil {}

impl Default for Gil {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Gil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gil")
            .field("raw", &self.raw)
            .field("stats", &self.stats())
            .finish()
    }
}
