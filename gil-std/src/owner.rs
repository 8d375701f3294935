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

// The lock whose event hook runs on the calling thread (its address), or 0: a hook must not
// take or drop a guard of the lock it reports on, which may be half-way through handing
// itself over (see `Gil::refuse_in_hook`).
thread_locals! {
    static IN_HOOK: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Whether the calling thread is inside [`in_hook`] for `lock`.
pub(crate) fn is_in_hook<L>(lock: &L) -> bool {
    let me = core::ptr::from_ref(lock) as usize;
    IN_HOOK.with(|w| w.get() == me)
}

/// Runs `f` (the hook of `lock`) marked as such, for `is_in_hook`; the mark goes with `f`, also
/// when it panics. A hook that takes another lock runs that lock's hook inside: the previous
/// mark is restored after it.
pub(crate) fn in_hook<L>(lock: &L, f: impl FnOnce()) {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0;
            IN_HOOK.with(|w| w.set(before));
        }
    }
    let me = core::ptr::from_ref(lock) as usize;
    let _restore = Restore(IN_HOOK.with(|w| w.replace(me)));
    f();
}
