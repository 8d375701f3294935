//! `lock_api` traits, so that `lock_api::Mutex<Gil, T>` is a mutex with the GIL's behaviour:
//! FIFO handoff, `bump` as a fair yield, timed locking.

use std::time::{Duration, Instant};

use lock_api::GuardNoSend;

use crate::gil::Gil;

/// A `lock_api` mutex over a [`Gil`] of its own: FIFO direct handoff on unlock, and
/// `MutexGuard::bump` hands the lock to the longest waiter and queues behind everybody.
///
/// ```
/// use gil_std::GilMutex;
///
/// let m = GilMutex::new(vec![1, 2]);
/// m.lock().push(3);
/// let mut guard = m.lock();
/// lock_api::MutexGuard::bump(&mut guard); // nobody waits: keeps the lock
/// assert_eq!(*guard, [1, 2, 3]);
/// drop(guard);
/// assert!(m.try_lock_for(std::time::Duration::from_millis(1)).is_some());
/// ```
pub type GilMutex<T> = lock_api::Mutex<Gil, T>;

// SAFETY: `lock`/`try_lock` return a guard state only after taking the lock on this thread, and
// `unlock` is called with that state by the thread that holds it (lock_api's contract); the
// state is `GuardNoSend`, so a lock_api guard cannot move the lock to another thread.
unsafe impl lock_api::RawMutex for Gil {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Gil = Gil::new();
    type Guard = GuardNoSend;

    #[inline]
    fn lock(&self) -> GuardNoSend {
        std::mem::forget(self.acquire());
        GuardNoSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardNoSend> {
        self.try_acquire().map(|guard| {
            std::mem::forget(guard);
            GuardNoSend::new()
        })
    }

    #[inline]
    unsafe fn unlock(&self, _: GuardNoSend) {
        // The caller holds the lock (lock_api's contract for `unlock`), through the guard
        // `lock` made and forgot: this is that guard's drop.
        self.drop_guard();
    }

    fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

// SAFETY: as for `RawMutex`; `bump` returns with the lock held again.
unsafe impl lock_api::RawMutexFair for Gil {
    #[inline]
    unsafe fn unlock_fair(&self, guard: GuardNoSend) {
        // Every unlock is fair here: with waiters, the lock passes directly to the longest one.
        // SAFETY: forwarded contract.
        unsafe { lock_api::RawMutex::unlock(self, guard) };
    }

    #[inline]
    unsafe fn bump(&self, _: &mut GuardNoSend) {
        self.hand_over();
    }
}

// SAFETY: as for `RawMutex`; a guard state is returned only with the lock taken.
unsafe impl lock_api::RawMutexTimed for Gil {
    type Duration = Duration;
    type Instant = Instant;

    fn try_lock_for(&self, timeout: Duration) -> Option<GuardNoSend> {
        self.try_acquire_for(timeout).ok().map(|guard| {
            std::mem::forget(guard);
            GuardNoSend::new()
        })
    }

    fn try_lock_until(&self, deadline: Instant) -> Option<GuardNoSend> {
        self.try_lock_for(deadline.saturating_duration_since(Instant::now()))
    }
}
