//! Per-thread figures: what the calling thread has waited for and held, over every lock.

use std::cell::Cell;
use std::ops::Sub;
use std::time::Duration;

/// What the calling thread has done with any [`Gil`](crate::Gil) so far: a server takes one before and one
/// after a request and exports the difference as that request's figures.
///
/// Counted on the slow paths only: `wait_time` and `contended` from every wait for a lock,
/// `forced_drops` from every checkpoint that handed over, and `hold_time` only under locks
/// whose [hold timing](crate::Gil::set_hold_timing) is on.
///
/// ```
/// use gil_std::{Gil, ThreadStats};
///
/// static GIL: Gil = Gil::new();
/// GIL.set_hold_timing(true);
///
/// let before = ThreadStats::current();
/// // ... handle a request ...
/// let guard = GIL.acquire();
/// std::thread::sleep(std::time::Duration::from_millis(1));
/// drop(guard);
/// let request = ThreadStats::current() - before;
/// assert_eq!(request.contended, 0, "nobody else wanted the lock");
/// assert!(request.hold_time >= std::time::Duration::from_millis(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadStats {
    /// Takings of a lock (including after hand-overs and blocking regions) that waited.
    pub contended: u64,
    /// How long those waited in all.
    pub wait_time: Duration,
    /// How long this thread held locks whose hold timing was on.
    pub hold_time: Duration,
    /// Checkpoints of this thread that handed the lock over on a drop request.
    pub forced_drops: u64,
}

thread_local! {
    static MINE: Cell<ThreadStats> = const {
        Cell::new(ThreadStats {
            contended: 0,
            wait_time: Duration::ZERO,
            hold_time: Duration::ZERO,
            forced_drops: 0,
        })
    };
}

impl ThreadStats {
    /// The calling thread's figures so far.
    pub fn current() -> Self {
        MINE.try_with(Cell::get).unwrap_or_default()
    }

    /// Adds to the calling thread's figures.
    pub(crate) fn count(f: impl FnOnce(&mut ThreadStats)) {
        let _ = MINE.try_with(|mine| {
            let mut stats = mine.get();
            f(&mut stats);
            mine.set(stats);
        });
    }
}

impl Sub for ThreadStats {
    type Output = ThreadStats;

    /// The figures between two snapshots of one thread (saturating).
    fn sub(self, earlier: ThreadStats) -> ThreadStats {
        ThreadStats {
            contended: self.contended.saturating_sub(earlier.contended),
            wait_time: self.wait_time.saturating_sub(earlier.wait_time),
            hold_time: self.hold_time.saturating_sub(earlier.hold_time),
            forced_drops: self.forced_drops.saturating_sub(earlier.forced_drops),
        }
    }
}
