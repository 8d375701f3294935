//! `lock_api` on a lean raw lock: [`GilMutex<T>`] is a mutex with the GIL's hand-off, and
//! none of a `Gil`'s runtime services.

use core::pin::Pin;
use std::time::{Duration, Instant};

use gil_core::{Park, RawGil, WaitPolicy, Waited};
use lock_api::GuardNoSend;

use crate::gil::Deadline;
use crate::owner::Owner;
use crate::sync::{Node, Parking, Raw};

/// A `lock_api` mutex with the GIL's hand-off: FIFO direct hand-off on unlock (every unlock
/// is fair), and `MutexGuard::bump` hands the lock to the longest waiter and queues behind
/// everybody. A thread that locks it again while it holds it panics instead of waiting for
/// itself.
///
/// It keeps of a [`Gil`](crate::Gil) the core lock and the owner token, and nothing else: no
/// switch interval (nothing would answer its drop requests: a `lock_api` guard has no
/// checkpoint), no blocking regions, hooks, pending calls or statistics. It is 72 bytes
/// besides the data.
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
pub type GilMutex<T> = lock_api::Mutex<RawGilMutex, T>;

/// The raw lock of a [`GilMutex`]: gil-core's lock and the owner token.
// `repr(C)`: the owner token just before the core lock's word, on one cache line.
#[derive(Debug)]
#[repr(C)]
pub struct RawGilMutex {
    owner: Owner,
    raw: Raw,
}

impl RawGilMutex {
    /// The calling thread has just taken the lock.
    #[inline]
    fn owned(&self) -> GuardNoSend {
        self.owner.set_current();
        GuardNoSend::new()
    }

    /// Waits in line, up to `deadline` if there is one.
    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Option<GuardNoSend> {
        if !cfg!(bite = "a-mutex-waits-for-itself") && self.owner.is_current() {
            panic!("gil: a GilMutex locked again by the thread that holds it");
        }
        match self.raw.lock_with(&mut Until(deadline.map(Deadline::new))) {
            Waited::Granted => Some(self.owned()),
            Waited::GaveUp => None,
            Waited::Closed => unreachable!("gil: a GilMutex is never closed"),
        }
    }
}

// The owner token and the core lock, and nothing else: the token and the lock word on the first
// line, the rest of the lock on the next (the queue's absence count, which a `GilMutex` never
// touches).
const _: () = assert!(core::mem::size_of::<RawGilMutex>() <= 128);

/// How a `GilMutex` waits: with the lock's parking, up to a deadline if it has one.
struct Until(Option<Deadline>);

impl WaitPolicy<Parking> for Until {
    fn give_up(&mut self) -> bool {
        self.0.as_ref().is_some_and(Deadline::passed)
    }

    fn park(&mut self, node: Pin<&Node>) {
        match &mut self.0 {
            Some(deadline) => deadline.park(node),
            None => Parking::park(node.parker(), node.word()),
        }
    }
}

// SAFETY: `lock`/`try_lock` return a guard state only after taking the lock on this thread, and
// `unlock` is called with that state by the thread that holds it (lock_api's contract); the
// state is `GuardNoSend`, so a lock_api guard cannot move the lock to another thread.
unsafe impl lock_api::RawMutex for RawGilMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawGilMutex = RawGilMutex {
        raw: RawGil::new(),
        owner: Owner::new(),
    };
    type Guard = GuardNoSend;

    #[inline]
    fn lock(&self) -> GuardNoSend {
        match self.raw.try_lock() {
            Ok(()) => self.owned(),
            Err(_) => self.lock_slow(None).expect("waits with no deadline"),
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardNoSend> {
        self.raw.try_lock().ok().map(|()| self.owned())
    }

    #[inline]
    unsafe fn unlock(&self, _: GuardNoSend) {
        self.owner.clear();
        // SAFETY: the caller holds the lock (lock_api's contract for `unlock`).
        unsafe { self.raw.unlock() };
    }

    fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

// SAFETY: as for `RawMutex`; `bump` returns with the lock held again.
unsafe impl lock_api::RawMutexFair for RawGilMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: GuardNoSend) {
        // Every unlock is fair here: with waiters, the lock passes directly to the longest one.
        // SAFETY: forwarded contract.
        unsafe { lock_api::RawMutex::unlock(self, guard) };
    }

    #[inline]
    unsafe fn bump(&self, _: &mut GuardNoSend) {
        // SAFETY: the caller holds the lock (lock_api's contract); the hand-over returns with
        // it held again.
        if unsafe { self.raw.hand_over_with(&mut ()) } {
            // Others held it meanwhile, and each marked itself the owner.
            self.owner.set_current();
        }
    }
}

// SAFETY: as for `RawMutex`; a guard state is returned only with the lock taken.
unsafe impl lock_api::RawMutexTimed for RawGilMutex {
    type Duration = Duration;
    type Instant = Instant;

    fn try_lock_for(&self, timeout: Duration) -> Option<GuardNoSend> {
        match self.raw.try_lock() {
            Ok(()) => Some(self.owned()),
            // A timeout too long to represent is no timeout.
            Err(_) => self.lock_slow(Instant::now().checked_add(timeout)),
        }
    }

    fn try_lock_until(&self, deadline: Instant) -> Option<GuardNoSend> {
        match self.raw.try_lock() {
            Ok(()) => Some(self.owned()),
            Err(_) => self.lock_slow(Some(deadline)),
        }
    }
}
