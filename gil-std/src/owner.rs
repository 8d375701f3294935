//! Which thread owns a `Gil`, enough to refuse a self-deadlocking re-acquire and to make
//! `ensure` reentrant; and what each thread is in the middle of with a lock (its frames: hooks
//! running, waits, holds set aside), which the lock asks before it lets the thread take, use or
//! wait for a guard, or run the user's code.

use std::cell::Cell;
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
/// runs code the lock does not control (an event hook), waits for the lock, or has set the
/// thread's hold of it aside. While such a frame is under way, the thread's hold of that lock
/// may be half-way through a change (set aside, released, queued): what runs inside must not
/// take or use a guard of that lock, nor wait for it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Doing {
    /// The lock's event hook runs.
    Hook = 1,
    /// The thread waits for the lock (to take it, or to take it back).
    Wait = 2,
    /// The thread has set its hold of the lock aside, other guards of it alive, and lets
    /// others hold (a hand-over, a loan, a region of a nested guard): the frame counts those
    /// guards until the hold takes them back.
    SetAside = 3,
    /// A `SetAside` frame whose hold the thread has taken the lock for again, for an
    /// initialiser that runs on the hold's behalf (`Blocking::get_or_init`): its guards still
    /// count there, and the thread may take the lock (see [`Resuming`]).
    Resumed = 0,
}

/// Most frames a thread may have under way at once (hooks inside hooks, waits inside wakers,
/// holds of several locks set aside). One more is refused, before anything changes.
const MAX_FRAMES: usize = 32;

/// The frames under way on a thread, innermost last. No destructor: a thread's exit runs the
/// destructors of other thread-locals in an order nobody chooses, and a lock taken or released
/// in one of them must find these as they were.
struct Frames {
    len: Cell<usize>,
    /// Each frame: its lock's address, with its `Doing` in the two low bits (a lock is aligned
    /// to more than that), and for `SetAside`, the guards it holds aside.
    entries: [Cell<(usize, u32)>; MAX_FRAMES],
    /// How many of them are `Hook`s, so that the guards' paths, which ask at every nested
    /// guard, look no further while no hook runs.
    hooks: Cell<u32>,
    /// How many keep the thread quiet: the `SetAside` frames, and `quietly`'s. While any does,
    /// the thread runs no code of the user's (`is_quiet`).
    quiet: Cell<u32>,
}

// An entry lives exactly as long as the frame that made it, which borrows the lock, so an
// address here always names a lock that is alive and in place.
thread_locals! {
    static FRAMES: Frames = const {
        Frames {
            len: Cell::new(0),
            entries: [const { Cell::new((0, 0)) }; MAX_FRAMES],
            hooks: Cell::new(0),
            quiet: Cell::new(0),
        }
    };
}

/// The key of a frame of `what` for `lock`.
fn key<L>(lock: &L, what: Doing) -> usize {
    let at = core::ptr::from_ref(lock) as usize;
    debug_assert_eq!(at & 3, 0, "a lock aligned to at least 4");
    at | what as usize
}

/// The index of the innermost frame of `what` for `lock` on the calling thread.
fn innermost<L>(lock: &L, what: Doing) -> Option<usize> {
    let key = key(lock, what);
    FRAMES.with(|f| {
        (0..f.len.get())
            .rev()
            .find(|&i| f.entries[i].get().0 == key)
    })
}

/// Whether a frame of `what` for `lock` is under way on the calling thread, however deep:
/// a hook of another lock run inside this lock's hook is still inside it.
pub(crate) fn is_doing<L>(lock: &L, what: Doing) -> bool {
    innermost(lock, what).is_some()
}

/// Whether a hook of `lock` runs on the calling thread, at any depth.
#[inline]
pub(crate) fn is_in_hook<L>(lock: &L) -> bool {
    FRAMES.with(|f| f.hooks.get()) != 0 && is_doing(lock, Doing::Hook)
}

/// Whether the calling thread has a hold set aside with other guards of it alive, and so runs
/// no code of the user's: a hook or a waker could reach one of those guards (or what a leaked
/// one proved, with no guard to check) while another thread holds the lock.
#[inline]
pub(crate) fn is_quiet() -> bool {
    !cfg!(bite = "a-quiet-thread-runs-user-code") && FRAMES.with(|f| f.quiet.get()) != 0
}

/// Runs `f` with the calling thread quiet (`is_quiet`), also when it panics: the tasks `f`
/// wakes are woken by a waker thread. For a thread that holds a lock and wakes a task waiting
/// for it: a waker that polls its task inline would find this thread holding the lock.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    struct Loud;
    impl Drop for Loud {
        fn drop(&mut self) {
            FRAMES.with(|f| f.quiet.set(f.quiet.get() - 1));
        }
    }
    FRAMES.with(|f| f.quiet.set(f.quiet.get() + 1));
    let _loud = Loud;
    f()
}

/// The index of the innermost `SetAside` or `Resumed` frame for `lock`.
fn innermost_set_aside<L>(lock: &L) -> Option<usize> {
    let (aside, resumed) = (key(lock, Doing::SetAside), key(lock, Doing::Resumed));
    FRAMES.with(|f| {
        (0..f.len.get()).rev().find(|&i| {
            let key = f.entries[i].get().0;
            key == aside || key == resumed
        })
    })
}

/// Whether the calling thread has a hold of `lock` set aside, resumed or not.
pub(crate) fn has_set_aside<L>(lock: &L) -> bool {
    innermost_set_aside(lock).is_some()
}

/// Counts `by` more (or, negative, fewer) guards in the innermost `SetAside` (or `Resumed`)
/// frame for `lock` on the calling thread; returns whether there is one. A guard of the hold
/// that frame sets aside, joined or dropped while it is aside, counts there.
pub(crate) fn count_set_aside<L>(lock: &L, by: i32) -> bool {
    let Some(i) = innermost_set_aside(lock) else {
        return false;
    };
    FRAMES.with(|f| {
        let (key, count) = f.entries[i].get();
        let count = count
            .checked_add_signed(by)
            .expect("gil: the guards of a hold set aside miscounted");
        f.entries[i].set((key, count));
    });
    true
}

/// Refuses unless the calling thread has room for `frames` more frames: for a step that will
/// need them after it has changed what cannot be undone (a region, which waits for the lock
/// at its end), asked before it begins.
///
/// # Panics
///
/// If the thread has too many frames under way (see `sync::refusal`).
pub(crate) fn make_room(frames: usize) {
    if FRAMES.with(|f| f.len.get()) + frames > MAX_FRAMES {
        crate::sync::refusal(format_args!(
            "gil: more than {MAX_FRAMES} hooks, waits and holds set aside under way on one \
             thread"
        ));
    }
}

/// Whether the calling thread has guards of a hold of `lock` set aside (in a `SetAside` or
/// `Resumed` frame that counts some): a region may not open then, on whichever hold it is
/// asked, since those guards would be alive while others hold the lock.
pub(crate) fn set_aside_guards_alive<L>(lock: &L) -> bool {
    let (aside, resumed) = (key(lock, Doing::SetAside), key(lock, Doing::Resumed));
    FRAMES.with(|f| {
        (0..f.len.get()).any(|i| {
            let (key, count) = f.entries[i].get();
            (key == aside || key == resumed) && count != 0
        })
    })
}

/// A frame of `what` for `lock` on the calling thread, from `enter` until it is dropped (also on
/// unwinding). Not `Send`: it ends on the thread it began on.
pub(crate) struct Frame {
    index: usize,
    key: usize,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Frame {
    /// # Panics
    ///
    /// If the thread has `MAX_FRAMES` frames under way already, before it changes anything.
    pub(crate) fn enter<L>(lock: &L, what: Doing) -> Self {
        Self::with_count(lock, what, 0)
    }

    /// A `SetAside` frame for `lock`, holding `guards` aside.
    pub(crate) fn set_aside<L>(lock: &L, guards: u32) -> Self {
        Self::with_count(lock, Doing::SetAside, guards)
    }

    fn with_count<L>(lock: &L, what: Doing, count: u32) -> Self {
        let key = key(lock, what);
        make_room(1);
        let index = FRAMES.with(|f| {
            let index = f.len.get();
            f.entries[index].set((key, count));
            f.len.set(index + 1);
            match what {
                Doing::Hook => f.hooks.set(f.hooks.get() + 1),
                Doing::SetAside => f.quiet.set(f.quiet.get() + 1),
                Doing::Wait | Doing::Resumed => {}
            }
            index
        });
        Self {
            index,
            key,
            _not_send: core::marker::PhantomData,
        }
    }

    /// The guards this `SetAside` frame holds aside now.
    pub(crate) fn count(&self) -> u32 {
        FRAMES.with(|f| f.entries[self.index].get().1)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            let len = f.len.get();
            // Frames end in the reverse order of their start; should one not, it is taken out
            // from the middle all the same.
            debug_assert_eq!(self.index + 1, len, "gil: frames ended out of order");
            debug_assert_eq!(
                f.entries[self.index].get().0,
                self.key,
                "gil: a frame resumed"
            );
            for i in self.index..len - 1 {
                f.entries[i].set(f.entries[i + 1].get());
            }
            f.len.set(len - 1);
            match self.key & 3 {
                1 => f.hooks.set(f.hooks.get() - 1),
                3 => f.quiet.set(f.quiet.get() - 1),
                _ => {}
            }
        });
    }
}

/// The innermost `SetAside` frame for a lock, switched to `Resumed` while the thread takes the
/// lock again on that hold's behalf, and back when dropped (also on unwinding). The thread
/// stays quiet (`is_quiet`) until [`holding`](Resuming::holding): while it waits for the lock
/// it holds nothing, and the guards set aside could be reached.
pub(crate) struct Resuming {
    index: usize,
    /// Whether the thread holds the lock now: not quiet for this frame.
    holding: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Resuming {
    /// Resumes the innermost `SetAside` frame for `lock`; `None` if there is none.
    pub(crate) fn begin<L>(lock: &L) -> Option<Self> {
        let index = innermost(lock, Doing::SetAside)?;
        FRAMES.with(|f| {
            let (key, count) = f.entries[index].get();
            f.entries[index].set((key & !3 | Doing::Resumed as usize, count));
        });
        Some(Self {
            index,
            holding: false,
            _not_send: core::marker::PhantomData,
        })
    }

    /// The thread holds the lock (`true`) or is about to let it go (`false`): the user's code
    /// may run on it while it holds.
    pub(crate) fn holding(&mut self, holding: bool) {
        if self.holding != holding {
            self.holding = holding;
            FRAMES.with(|f| {
                let quiet = f.quiet.get();
                f.quiet.set(if holding { quiet - 1 } else { quiet + 1 });
            });
        }
    }
}

impl Drop for Resuming {
    fn drop(&mut self) {
        self.holding(false);
        FRAMES.with(|f| {
            let (key, count) = f.entries[self.index].get();
            f.entries[self.index].set((key & !3 | Doing::SetAside as usize, count));
        });
    }
}

/// Runs `f` (the hook of `lock`) as a [`Doing::Hook`] frame, for `is_in_hook`; the frame ends
/// with `f`, also when it panics.
pub(crate) fn in_hook<L>(lock: &L, f: impl FnOnce()) {
    let _frame = Frame::enter(lock, Doing::Hook);
    f();
}
