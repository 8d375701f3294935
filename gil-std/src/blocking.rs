//! Waiting for other locks and other threads while holding a `Gil`, without the deadlock
//! between the two: the helpers of [`Blocking`].

use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use std::sync::{LockResult, OnceLock, PoisonError, TryLockError, TryLockResult};
use std::time::Duration;

use crate::deadlock::Wait;
use crate::gil::{EnsureGuard, GilGuard, Holds};
use crate::sync::{
    Condvar, Mutex, MutexGuard, Receiver, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// Blocking calls for a thread that holds a [`Gil`](crate::Gil) — locking a `std` [`Mutex`] or
/// [`RwLock`], waiting on a [`Condvar`], receiving from a channel, initialising a
/// [`OnceLock`] — each free of the deadlock between the `Gil` and what it waits for: a thread
/// holding the `Gil` that blocks on a mutex whose holder waits for the `Gil` waits for ever,
/// and so does one that waits for a message or a notification that only a thread needing
/// the `Gil` can send. Each helper first tries without blocking; only if it must wait does
/// it let the `Gil` go while it waits (a blocking region), and take it back, in line, once it
/// has what it waited for.
///
/// This breaks the cycle only if every thread that waits for the other lock while holding the
/// `Gil` goes through a helper: a plain `mutex.lock()` under the `Gil` still deadlocks against
/// a thread that holds the mutex and waits for the `Gil`.
///
/// Implemented by [`GilGuard`] (whose region takes any closure) and [`EnsureGuard`] (whose
/// region, possibly nested, is [`EnsureGuard::allow_threads`]). Sealed. Under `--cfg loom` the
/// mutex, rwlock, condition variable and channel are loom's, so a model can use the helpers.
///
/// ```
/// use std::sync::Mutex;
/// use gil_std::{Blocking, Gil};
///
/// static GIL: Gil = Gil::new();
/// static LOG: Mutex<Vec<u32>> = Mutex::new(Vec::new());
///
/// std::thread::scope(|s| {
///     // Takes LOG, then wants the Gil.
///     s.spawn(|| {
///         let mut log = LOG.lock().unwrap();
///         log.push(1);
///         drop(GIL.acquire());
///     });
///     // Holds the Gil, then wants LOG: with `LOG.lock()` this could deadlock.
///     s.spawn(|| {
///         let mut g = GIL.acquire();
///         g.lock_mutex(&LOG).unwrap().push(2);
///     });
/// });
/// assert_eq!(LOG.lock().unwrap().len(), 2);
/// ```
pub trait Blocking: Holds + sealed::Region {
    /// Locks `mutex`: at once if it is free, otherwise with the `Gil` let go while waiting.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`]: the mutex was poisoned (the guard is in the error).
    fn lock_mutex<'m, T: ?Sized + Send>(
        &mut self,
        mutex: &'m Mutex<T>,
    ) -> LockResult<MutexGuard<'m, T>> {
        try_then_wait(
            self,
            Wait::Mutex(Wait::at(mutex)),
            || mutex.try_lock(),
            || mutex.lock(),
        )
    }

    /// Locks `rwlock` for reading, as [`lock`](Blocking::lock_mutex) does a mutex.
    ///
    /// # Errors
    ///
    /// As [`RwLock::read`]: the lock was poisoned.
    fn read_rwlock<'l, T: ?Sized + Send + Sync>(
        &mut self,
        rwlock: &'l RwLock<T>,
    ) -> LockResult<RwLockReadGuard<'l, T>> {
        let wait = Wait::Read(Wait::at(rwlock));
        try_then_wait(self, wait, || rwlock.try_read(), || rwlock.read())
    }

    /// Locks `rwlock` for writing, as [`lock`](Blocking::lock_mutex) does a mutex.
    ///
    /// # Errors
    ///
    /// As [`RwLock::write`]: the lock was poisoned.
    fn write_rwlock<'l, T: ?Sized + Send + Sync>(
        &mut self,
        rwlock: &'l RwLock<T>,
    ) -> LockResult<RwLockWriteGuard<'l, T>> {
        let wait = Wait::Write(Wait::at(rwlock));
        try_then_wait(self, wait, || rwlock.try_write(), || rwlock.write())
    }

    /// Waits on `condvar` as [`Condvar::wait`] does, with the `Gil` let go while waiting:
    /// `guard`'s mutex is released and the thread sleeps until notified (or woken
    /// spuriously), then it takes the mutex back, then the `Gil`.
    ///
    /// Waiting always blocks, so the `Gil` is always let go; to look at a condition first,
    /// use [`wait_while`](Blocking::wait_condvar_while).
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait`]: the mutex was poisoned.
    fn wait_condvar<'m, T: Send>(
        &mut self,
        condvar: &Condvar,
        guard: MutexGuard<'m, T>,
    ) -> LockResult<MutexGuard<'m, T>> {
        let guard = OnThisThread(guard);
        self.region(move |gil| {
            let mut guard = Some(guard.into_inner());
            gil.wait_watched(Wait::Condvar(Wait::at(condvar)), |limit| {
                match wait_once(condvar, guard.take()?, limit) {
                    Ok((back, true)) => {
                        guard = Some(back);
                        None
                    }
                    Ok((back, false)) => Some(Ok(back)),
                    Err(poisoned) => Some(Err(PoisonError::new(poisoned.into_inner().0))),
                }
            })
        })
    }

    /// Waits on `condvar` while `condition` holds, as [`Condvar::wait_while`] does: if it does
    /// not hold to begin with, returns at once and keeps the `Gil`; otherwise waits as
    /// [`wait`](Blocking::wait_condvar) does, the `Gil` let go, until a look finds it no longer holds.
    /// `condition` runs with `guard`'s mutex and the `Gil` held, at the start and after each
    /// wake-up.
    ///
    /// ```
    /// use std::sync::{Condvar, Mutex};
    /// use gil_std::{Blocking, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// static READY: Mutex<bool> = Mutex::new(false);
    /// static CHANGED: Condvar = Condvar::new();
    ///
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let mut g = GIL.acquire();
    ///         let ready = g.lock_mutex(&READY).unwrap();
    ///         let ready = g.wait_condvar_while(&CHANGED, ready, |ready| !*ready).unwrap();
    ///         assert!(*ready);
    ///     });
    ///     // Needs the Gil to say it is ready: a plain `CHANGED.wait` above would keep it.
    ///     s.spawn(|| {
    ///         let mut g = GIL.acquire();
    ///         *g.lock_mutex(&READY).unwrap() = true;
    ///         CHANGED.notify_all();
    ///     });
    /// });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait_while`]: the mutex was poisoned.
    fn wait_condvar_while<'m, T: Send>(
        &mut self,
        condvar: &Condvar,
        mut guard: MutexGuard<'m, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'m, T>> {
        while condition(&mut *guard) {
            guard = self.wait_condvar(condvar, guard)?;
        }
        Ok(guard)
    }

    /// Receives from a channel as [`Receiver::recv`] does: a message already there (or a
    /// hung-up sender) is taken at once, keeping the `Gil`; otherwise the `Gil` is let go
    /// until a message comes.
    ///
    /// The receiver is taken by `&mut`: while the `Gil` is let go no other thread may reach
    /// it, and one that other threads reach under the lock (in a
    /// [`GilCell`](crate::GilCell)) cannot be borrowed mutably.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use gil_std::{Blocking, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// let (send, mut receive) = mpsc::channel();
    /// let mut g = GIL.acquire();
    /// std::thread::spawn(move || {
    ///     // The sender needs the Gil before it can answer.
    ///     let _g = GIL.acquire();
    ///     send.send(42).unwrap();
    /// });
    /// assert_eq!(g.recv_channel(&mut receive), Ok(42));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`]: every sender is gone and the channel is empty.
    fn recv_channel<T: Send>(&mut self, receiver: &mut Receiver<T>) -> Result<T, RecvError> {
        match receiver.try_recv() {
            Ok(message) => Ok(message),
            Err(TryRecvError::Disconnected) => Err(RecvError),
            Err(TryRecvError::Empty) => self.region(move |gil| {
                let wait = Wait::Channel(Wait::at(&*receiver));
                gil.wait_watched(wait, |limit| match limit {
                    None => Some(receiver.recv()),
                    Some(limit) => match receiver.recv_timeout(limit) {
                        Ok(message) => Some(Ok(message)),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Err(RecvError)),
                    },
                })
            }),
        }
    }

    /// Sleeps for `duration` with the `Gil` let go, as [`std::thread::sleep`] does: the host
    /// function `sleep_ms` of an embedded runtime, from a nested guard too — where the lock
    /// may change hands inside the runtime's callbacks (docs/embedding.md: not inside mlua's).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gil_std::{Blocking, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// let outer = GIL.acquire();
    /// let mut inner = GIL.ensure(); // a host function's guard, nested
    /// inner.sleep(Duration::from_millis(1)); // other threads may hold the lock meanwhile
    /// drop(inner);
    /// assert!(GIL.is_held_by_current_thread());
    /// # drop(outer);
    /// ```
    fn sleep(&mut self, duration: std::time::Duration) {
        self.region(move |_| std::thread::sleep(duration));
    }

    /// The value of `cell`, initialised by `init` if it has none, as
    /// [`OnceLock::get_or_init`] does: an initialised cell is read at once, keeping the `Gil`.
    /// Otherwise the `Gil` is let go while this thread waits to initialise the cell (or for
    /// another thread to finish doing so), and `init` runs with the `Gil` held again — in a
    /// hold of its own, so it may take guards with [`Gil::ensure`](crate::Gil::ensure),
    /// checkpoint and open regions. Then the `Gil` is taken back for the caller's guard.
    ///
    /// So an initialiser that lets the `Gil` go cannot deadlock against another thread that
    /// holds the `Gil` and wants the same value: with a plain `get_or_init`, that thread
    /// would wait for the cell while keeping the `Gil` the initialiser needs.
    ///
    /// `init` must be `Send`, as a region's closure is: it is handed to the region, and the
    /// hold it runs in is not the caller's, so it must not reach a guard of the caller's hold
    /// (which could open a region of its own there) or data borrowed under it. It takes what
    /// it needs with [`Gil::ensure`](crate::Gil::ensure).
    ///
    /// ```
    /// use std::sync::OnceLock;
    /// use gil_std::{Blocking, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// static TABLE: OnceLock<Vec<u32>> = OnceLock::new();
    ///
    /// let mut g = GIL.acquire();
    /// let table = g.get_or_init(&TABLE, || {
    ///     assert!(GIL.is_held_by_current_thread());
    ///     (0..4).collect()
    /// });
    /// assert_eq!(table.len(), 4);
    /// ```
    ///
    /// What a cell holds cannot be reached by the initialiser:
    ///
    /// ```compile_fail,E0277
    /// use std::cell::Cell;
    /// use std::sync::OnceLock;
    /// use gil_std::{Blocking, Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static COUNT: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    /// static FIRST: OnceLock<u32> = OnceLock::new();
    ///
    /// let outer = GIL.acquire();
    /// let count: &Cell<u32> = COUNT.get(&outer);
    /// let mut inner = GIL.ensure();
    /// inner.get_or_init(&FIRST, || count.get()); // error: `Cell<u32>` cannot be shared
    /// ```
    ///
    /// # Panics
    ///
    /// If `init` panics (the cell stays empty), and if the `Gil` was closed before `init`
    /// could run.
    fn get_or_init<'c, T: Send + Sync>(
        &mut self,
        cell: &'c OnceLock<T>,
        init: impl FnOnce() -> T + Send,
    ) -> &'c T {
        if let Some(value) = cell.get() {
            return value;
        }
        let mut init = Some(init);
        let pending = &mut init;
        // `init` runs once this thread holds the `Gil` again, and is dropped (if another
        // thread initialised the cell) after the region, also holding it.
        self.region(move |gil| {
            cell.get_or_init(|| {
                let _held = gil.initialiser_hold().unwrap_or_else(|_| {
                    crate::sync::refusal(format_args!(
                        "gil: get_or_init could not run its initialiser: the Gil was closed"
                    ))
                });
                let init = pending
                    .take()
                    .expect("a OnceLock runs its initialiser once");
                init()
            })
        })
    }
}

/// A value a helper moves into its region's closure although it is not `Send` (a
/// `MutexGuard`): the region runs the closure on the calling thread, before it returns (see
/// `sealed::Region`), so the value never goes to another thread. What it may do while the
/// `Gil` is let go is argued where it is made.
struct OnThisThread<T>(T);

// SAFETY: an `OnThisThread` is made only in this file, and only to be moved into the closure
// of `Region::region`, which runs that closure in place on the calling thread. The value
// never changes threads, so nothing tied to its thread (a `MutexGuard`, which must be unlocked
// on the thread that locked it) is broken. The guards wrapped are of `T: Send` data, which
// the mutex, not the `Gil`, protects.
unsafe impl<T> Send for OnThisThread<T> {}

impl<T> OnThisThread<T> {
    /// The value. A method, so that a closure calling it captures the whole wrapper, not the
    /// field.
    fn into_inner(self) -> T {
        self.0
    }
}

/// The lock helpers' one rule: what `try_take` gets without blocking, else wait for it in a
/// blocking region of `holder` — with `take`, or in rounds of `try_take` while deadlock
/// detection watches the wait.
fn try_then_wait<G>(
    holder: &mut (impl sealed::Region + ?Sized),
    wait: Wait,
    try_take: impl Fn() -> TryLockResult<G> + Send + Sync,
    take: impl Fn() -> LockResult<G> + Send + Sync,
) -> LockResult<G> {
    match try_take() {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(poisoned)) => Err(poisoned),
        Err(TryLockError::WouldBlock) => holder.region(|gil| {
            gil.wait_watched(wait, |limit| {
                let Some(limit) = limit else {
                    return Some(take());
                };
                match try_take() {
                    Ok(guard) => Some(Ok(guard)),
                    Err(TryLockError::Poisoned(poisoned)) => Some(Err(poisoned)),
                    Err(TryLockError::WouldBlock) => {
                        std::thread::sleep(limit);
                        None
                    }
                }
            })
        }),
    }
}

/// One wait on `condvar`: until notified, or for at most `limit`. With the guard back, whether
/// the limit passed.
fn wait_once<'m, T>(
    condvar: &Condvar,
    guard: MutexGuard<'m, T>,
    limit: Option<Duration>,
) -> LockResult<(MutexGuard<'m, T>, bool)> {
    match limit {
        None => condvar
            .wait(guard)
            .map(|back| (back, false))
            .map_err(|poisoned| PoisonError::new((poisoned.into_inner(), false))),
        Some(limit) => condvar
            .wait_timeout(guard, limit)
            .map(|(back, waited)| (back, waited.timed_out()))
            .map_err(|poisoned| {
                let (back, waited) = poisoned.into_inner();
                PoisonError::new((back, waited.timed_out()))
            }),
    }
}

impl Blocking for GilGuard<'_> {}
impl Blocking for EnsureGuard<'_> {}

mod sealed {
    use crate::Gil;
    use crate::gil::{EnsureGuard, GilGuard};

    /// The blocking region the helpers wait in, given the lock it lets go. `region` runs `f`
    /// in place, on the calling thread, before it returns: `OnThisThread` relies on it.
    pub trait Region {
        fn region<R>(&mut self, f: impl FnOnce(&Gil) -> R + Send) -> R;
    }

    impl Region for GilGuard<'_> {
        fn region<R>(&mut self, f: impl FnOnce(&Gil) -> R + Send) -> R {
            let gil = self.gil();
            self.allow_threads(|| f(gil))
        }
    }

    impl Region for EnsureGuard<'_> {
        fn region<R>(&mut self, f: impl FnOnce(&Gil) -> R + Send) -> R {
            let gil = self.gil();
            self.in_region_set_aside(|| f(gil))
        }
    }
}
