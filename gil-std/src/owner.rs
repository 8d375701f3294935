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

/// What a thread is in the middle of with a lock, for a frame of the lock's slow paths that
/// runs code the lock does not control (an event hook) or that waits for the lock. While such a
/// frame is under way, the thread's hold of that lock may be half-way through a change (set
/// aside, released, queued): what runs inside must not take, drop or use a guard of that lock,
/// nor wait for it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Doing {
    /// The lock's event hook runs.
    Hook,
    /// The thread waits for the lock (to take it, or to take it back).
    Wait,
}

// DOING: the frames under way on the calling thread, innermost last, each with the address of
// its lock. An entry lives exactly as long as the frame that made it, which borrows the lock, so
// an address here always names a lock that is alive and in place. HOOKS: how many of them are
// hooks, so that the guards' paths, which ask at every nested guard, look no further while no
// hook runs (one read of a thread-local without a destructor).
thread_locals! {
    static DOING: core::cell::RefCell<Vec<(usize, Doing)>> =
        const { core::cell::RefCell::new(Vec::new()) };
    static HOOKS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

fn address<L>(lock: &L) -> usize {
    core::ptr::from_ref(lock) as usize
}

/// Whether a frame of `what` for `lock` is under way on the calling thread, however deep:
/// a hook of another lock run inside this lock's hook is still inside it.
pub(crate) fn is_doing<L>(lock: &L, what: Doing) -> bool {
    let me = address(lock);
    DOING
        .try_with(|d| d.borrow().contains(&(me, what)))
        .unwrap_or(false)
}

/// Whether a hook of `lock` runs on the calling thread, at any depth.
#[inline]
pub(crate) fn is_in_hook<L>(lock: &L) -> bool {
    HOOKS.with(core::cell::Cell::get) != 0 && is_doing(lock, Doing::Hook)
}

/// A frame of `what` for `lock` on the calling thread, from `enter` until it is dropped (also on
/// unwinding). Not `Send`: it ends on the thread it began on.
pub(crate) struct Frame {
    entry: (usize, Doing),
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Frame {
    pub(crate) fn enter<L>(lock: &L, what: Doing) -> Self {
        let entry = (address(lock), what);
        DOING.with(|d| d.borrow_mut().push(entry));
        if what == Doing::Hook {
            HOOKS.with(|h| h.set(h.get() + 1));
        }
        Self {
            entry,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // The innermost entry of its kind: frames end in the reverse order of their start.
        let _ = DOING.try_with(|d| {
            let mut d = d.borrow_mut();
            if let Some(i) = d.iter().rposition(|&f| f == self.entry) {
                d.remove(i);
            }
        });
        if self.entry.1 == Doing::Hook {
            let _ = HOOKS.try_with(|h| h.set(h.get() - 1));
        }
    }
}

/// Runs `f` (the hook of `lock`) as a [`Doing::Hook`] frame, for `is_in_hook`; the frame ends
/// with `f`, also when it panics.
pub(crate) fn in_hook<L>(lock: &L, f: impl FnOnce()) {
    let _frame = Frame::enter(lock, Doing::Hook);
    f();
}
