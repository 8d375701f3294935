//! Which thread owns a `Gil`: enough to refuse a self-deadlocking re-acquire and to make
//! `ensure` reentrant.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::sync::thread_token as current_thread;

/// The owning thread's token, or 0.
///
/// Only ever compared with the *calling* thread's token, so Relaxed is enough: a thread always
/// sees its own last store, and no other thread ever stores its token. A thread that exits
/// without releasing (by leaking its guard) leaves a stale token that another thread may later
/// reuse. That thread then sees "I hold it" for a lock it does not hold, and acquire panics
/// where it would otherwise deadlock for ever on the leaked lock.
#[derive(Debug)]
pub(crate) struct Owner(AtomicUsize);

impl Owner {
    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    #[inline]
    pub(crate) fn set_current(&self) {
        self.0.store(current_thread(), Relaxed);
    }

    #[inline]
    pub(crate) fn clear(&self) {
        self.0.store(0, Relaxed);
    }

    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.0.load(Relaxed) == current_thread()
    }
}
