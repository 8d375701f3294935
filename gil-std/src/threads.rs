//! Threads as a runtime sees them: registration (the started / exited events of Ruby's GVL
//! instrumentation) and per-thread wait and hold figures.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Sub;
use std::time::Duration;

use crate::gil::Gil;
use crate::hooks::Event;

/// What the calling thread has done with any [`Gil`] so far: a server takes one before and one
/// after a request and exports the difference as that request's figures.
///
/// Counted on the slow paths only: `wait_time` and `contended` from every wait for a lock,
/// `forced_drops` from every checkpoint that handed over, and `hold_time` only under locks
/// whose [hold timing](Gil::set_hold_timing) is on.
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

/// A thread registered with a [`Gil`]'s event hook, made by [`Gil::register_thread`]: the hook
/// saw [`Event::ThreadStarted`] when it was made and sees [`Event::ThreadExited`] when it is
/// dropped — at the end of the thread's work, or when the thread unwinds.
#[must_use = "the thread counts as exited as soon as this is dropped"]
pub struct ThreadRegistration<'a> {
    gil: &'a Gil,
    _not_send: PhantomData<*const ()>,
}

impl Gil {
    /// Registers the calling thread with this lock's event hook: reports
    /// [`Event::ThreadStarted`] now and [`Event::ThreadExited`] when the returned value is
    /// dropped. A runtime calls it first thing in each thread it starts (Ruby reports these for
    /// every Ruby thread); without a hook installed it costs one relaxed load each way.
    ///
    /// Registration is explicit because a lock cannot know on its own when a thread that used
    /// it exits, nor soundly reach a lock that is not `'static` from a thread's exit.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use gil_std::{Event, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// static SEEN: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    ///
    /// GIL.set_event_hook(Some(&|_gil, event| SEEN.lock().unwrap().push(event)));
    /// std::thread::spawn(|| {
    ///     let _registered = GIL.register_thread();
    ///     drop(GIL.acquire());
    /// })
    /// .join()
    /// .unwrap();
    /// GIL.set_event_hook(None);
    ///
    /// use Event::*;
    /// assert_eq!(*SEEN.lock().unwrap(), [ThreadStarted, Got, Released, ThreadExited]);
    /// ```
    pub fn register_thread(&self) -> ThreadRegistration<'_> {
        self.emit(Event::ThreadStarted);
        ThreadRegistration {
            gil: self,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ThreadRegistration<'_> {
    fn drop(&mut self) {
        self.gil.emit(Event::ThreadExited);
    }
}

impl fmt::Debug for ThreadRegistration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadRegistration").finish_non_exhaustive()
    }
}
