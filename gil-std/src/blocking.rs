//! Waiting for other locks while holding a `Gil`, without the lock-order deadlock between the
//! two: the helpers of [`Blocking`].

use std::sync::{
    LockResult, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
    TryLockResult,
};

use crate::gil::{EnsureGuard, GilGuard, Holds};

/// Blocking calls for a thread that holds a [`Gil`](crate::Gil) — locking a `std` [`Mutex`] or
/// [`RwLock`] — each free of the deadlock
/// between the `Gil` and the other lock: a thread holding the `Gil` that blocks on a mutex
/// whose holder waits for the `Gil` waits for ever. Each helper first tries without blocking;
/// only if it must wait does it let the `Gil` go while it waits (a blocking region), and take
/// it back, in line, once it has what it waited for.
///
/// This breaks the cycle only if every thread that waits for the other lock while holding the
/// `Gil` goes through a helper: a plain `mutex.lock()` under the `Gil` still deadlocks against
/// a thread that holds the mutex and waits for the `Gil`.
///
/// Implemented by [`GilGuard`] (whose region takes any closure) and [`EnsureGuard`] (whose
/// region, possibly nested, is [`EnsureGuard::allow_threads`]). Sealed.
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
///         g.lock(&LOG).unwrap().push(2);
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
    fn lock<'m, T: ?Sized + Send>(&mut self, mutex: &'m Mutex<T>) -> LockResult<MutexGuard<'m, T>> {
        try_then_wait(self, mutex.try_lock(), || mutex.lock())
    }

    /// Locks `rwlock` for reading, as [`lock`](Blocking::lock) does a mutex.
    ///
    /// # Errors
    ///
    /// As [`RwLock::read`]: the lock was poisoned.
    fn read<'l, T: ?Sized + Send + Sync>(
        &mut self,
        rwlock: &'l RwLock<T>,
    ) -> LockResult<RwLockReadGuard<'l, T>> {
        try_then_wait(self, rwlock.try_read(), || rwlock.read())
    }

    /// Locks `rwlock` for writing, as [`lock`](Blocking::lock) does a mutex.
    ///
    /// # Errors
    ///
    /// As [`RwLock::write`]: the lock was poisoned.
    fn write<'l, T: ?Sized + Send + Sync>(
        &mut self,
        rwlock: &'l RwLock<T>,
    ) -> LockResult<RwLockWriteGuard<'l, T>> {
        try_then_wait(self, rwlock.try_write(), || rwlock.write())
    }
}

/// The helpers' one rule: what `tried` got without blocking, else `wait` in a blocking region
/// of `holder`.
fn try_then_wait<G>(
    holder: &mut (impl sealed::Region + ?Sized),
    tried: TryLockResult<G>,
    wait: impl FnOnce() -> LockResult<G> + Send,
) -> LockResult<G> {
    match tried {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(poisoned)) => Err(poisoned),
        Err(TryLockError::WouldBlock) => holder.region(wait),
    }
}

impl Blocking for GilGuard<'_> {}
impl Blocking for EnsureGuard<'_> {}

mod sealed {
    use crate::gil::{EnsureGuard, GilGuard};

    /// The blocking region the helpers wait in.
    pub trait Region {
        fn region<R>(&mut self, f: impl FnOnce() -> R + Send) -> R;
    }

    impl Region for GilGuard<'_> {
        fn region<R>(&mut self, f: impl FnOnce() -> R + Send) -> R {
            self.allow_threads(f)
        }
    }

    impl Region for EnsureGuard<'_> {
        fn region<R>(&mut self, f: impl FnOnce() -> R + Send) -> R {
            self.allow_threads(f)
        }
    }
}
