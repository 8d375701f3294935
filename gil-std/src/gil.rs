//! The `Gil`: acquiring, waiting, closing, statistics.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use gil_core::{Enqueued, RawGil, TryAcquireError, WaitState, Waiter};

use crate::guard::{EnsureGuard, GilGuard};
use crate::owner::Owner;
use crate::park::FutexPark;

pub(crate) type Raw = RawGil<FutexPark>;
pub(crate) type Node = Waiter<FutexPark>;

/// A global interpreter lock: one thread inside at a time, handed on in FIFO order.
///
/// Take it with [`acquire`](Gil::acquire), which returns a [`GilGuard`]. While holding it, call
/// [`GilGuard::checkpoint`] often: when another thread asks for the lock, the checkpoint hands
/// it over and takes it back in turn. Around blocking work, release it with
/// [`GilGuard::allow_threads`] or [`GilGuard::unlocked`].
///
/// ```
/// use gil_std::Gil;
///
/// static GIL: Gil = Gil::new();
///
/// let mut guard = GIL.acquire();
/// for _ in 0..1_000 {
///     // ... interpreter work ...
///     guard.checkpoint();
/// }
/// let bytes = guard.allow_threads(|| std::fs::read("/dev/null")); // no lock held in here
/// drop(guard);
/// assert!(bytes.unwrap().is_empty());
/// ```
pub struct Gil {
    pub(crate) raw: Raw,
    pub(crate) owner: Owner,
    pub(crate) counters: Counters,
}

/// Figures gathered on the slow paths only; the uncontended path counts nothing.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) forced_drops: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) wait_nanos: AtomicU64,
}

/// What a [`Gil`] has done so far; see [`Gil::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Handoffs of the lock from one thread directly to a waiting one (wraps at `u32::MAX`).
    pub switches: u32,
    /// Drop requests honoured: checkpoints that handed the lock to a waiter.
    pub forced_drops: u64,
    /// Acquisitions (including takings-back after a yield or a blocking region) that waited.
    pub contended: u64,
    /// Total time those acquisitions waited.
    pub wait_time: Duration,
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

impl Gil {
    /// A new, open, unlocked lock. `const`, so it can be a `static`; many independent locks
    /// can coexist (one per interpreter).
    pub const fn new() -> Self {
        Self {
            raw: RawGil::new(),
            owner: Owner::new(),
            counters: Counters {
                forced_drops: AtomicU64::new(0),
                contended: AtomicU64::new(0),
                wait_nanos: AtomicU64::new(0),
            },
        }
    }

    /// Takes the lock, waiting in FIFO order behind every thread already waiting.
    ///
    /// # Panics
    ///
    /// - If this thread already holds this lock: that would wait for itself for ever. Use
    ///   [`ensure`](Gil::ensure) where code may run with the lock already held.
    /// - If the lock is closed. Use [`acquire_checked`](Gil::acquire_checked) to get an error
    ///   instead.
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
    #[inline]
    pub fn acquire_checked(&self) -> Result<GilGuard<'_>, AcquireError> {
        if self.raw.try_acquire().is_ok() {
            return Ok(self.owned());
        }
        self.acquire_slow()
    }

    #[cold]
    fn acquire_slow(&self) -> Result<GilGuard<'_>, AcquireError> {
        self.refuse_reentry();
        let start = Instant::now();
        let node = pin!(Node::new());
        // SAFETY: the node is pinned on this frame, and `wait` does not return while it is
        // queued. This thread does not hold the lock (checked above).
        let state = match unsafe { self.raw.enqueue(node.as_ref()) } {
            Enqueued::Acquired => return Ok(self.owned()),
            Enqueued::Closed => return Err(AcquireError::Closed),
            Enqueued::Queued => node.as_ref().wait(),
        };
        self.count_wait(start);
        match state {
            WaitState::Granted => Ok(self.owned()),
            _ => Err(AcquireError::Closed),
        }
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
        match self.raw.try_acquire() {
            Ok(()) => Some(self.owned()),
            Err(TryAcquireError::WouldBlock | TryAcquireError::Closed) => None,
        }
    }

    /// Takes the lock, or nothing if this thread holds it already: for code that may be
    /// called both with and without the lock (callbacks, foreign threads). Nests to any depth.
    ///
    /// A nested guard (this thread already held the lock) can run checkpoints but cannot open a
    /// blocking region; see [`EnsureGuard`].
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
        if self.owner.is_current() {
            EnsureGuard::nested(self)
        } else {
            EnsureGuard::acquired(self.acquire())
        }
    }

    /// Closes the lock: every thread waiting in [`acquire`](Gil::acquire) or
    /// [`acquire_checked`](Gil::acquire_checked) is woken with [`AcquireError::Closed`] (a
    /// panic for `acquire`), and later acquirers get it at once. The holder, and threads
    /// coming back from a yield or a blocking region, carry on and finish normally. Idempotent.
    ///
    /// ```
    /// use gil_std::{AcquireError, Gil};
    ///
    /// let gil = Gil::new();
    /// gil.close();
    /// assert_eq!(gil.acquire_checked().err(), Some(AcquireError::Closed));
    /// assert!(gil.try_acquire().is_none());
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether [`close`](Gil::close) was called.
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Whether threads are queued for the lock. A snapshot, for decisions that tolerate a stale
    /// answer (such as whether to yield at all).
    pub fn has_waiters(&self) -> bool {
        self.raw.has_waiters()
    }

    /// Whether the calling thread holds this lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.owner.is_current()
    }

    /// Asks the holder to hand the lock to the longest waiter at its next checkpoint.
    /// Callable from any thread, with or without the lock.
    pub fn request_drop(&self) {
        self.raw.request_drop();
    }

    /// What the lock has done so far. The counters are gathered on the slow paths only, so
    /// reading them costs the hot paths nothing.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            switches: self.raw.switches(),
            forced_drops: c.forced_drops.load(Relaxed),
            contended: c.contended.load(Relaxed),
            wait_time: Duration::from_nanos(c.wait_nanos.load(Relaxed)),
        }
    }

    /// Marks the calling thread as the owner and makes its guard. Call right after taking.
    #[inline]
    pub(crate) fn owned(&self) -> GilGuard<'_> {
        self.owner.set_current();
        GilGuard::new(self)
    }

    fn refuse_reentry(&self) {
        if self.owner.is_current() {
            panic!(
                "gil: acquire() called on a thread that already holds this Gil, which would wait \
                 for itself for ever; use Gil::ensure() where code may run with the lock held"
            );
        }
    }

    pub(crate) fn count_wait(&self, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.contended.fetch_add(1, Relaxed);
        self.counters.wait_nanos.fetch_add(nanos, Relaxed);
    }
}

#[cold]
#[track_caller]
fn closed_panic() -> ! {
    panic!("gil: acquire() on a closed Gil; use acquire_checked() to handle shutdown");
}

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
