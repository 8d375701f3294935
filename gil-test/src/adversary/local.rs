//! What the fuzzer keeps per thread, beside the lock's own thread-locals: who the thread is,
//! the guards user code kept in a thread-local, the hooks running on it, and what it held when
//! its current step began.

use std::cell::{Cell, RefCell};

use gil_std::{EnsureGuard, Gil, GilGuard};

use super::program::Lock;

/// A guard user code keeps in a thread-local past its own return (a hook, a pending call, a
/// waker): it goes on proving the hold on this thread, or should.
pub(crate) enum Kept {
    Guard(GilGuard<'static>),
    Ensure(EnsureGuard<'static>),
}

impl Kept {
    pub(crate) fn gil(&self) -> &'static Gil {
        match self {
            Kept::Guard(g) => g.gil(),
            Kept::Ensure(e) => e.gil(),
        }
    }
}

thread_local! {
    /// The thread's id in the run (workers 1..; 0 for a thread the run did not start).
    static ME: Cell<usize> = const { Cell::new(0) };
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
    /// Guards ever kept on this thread: a step during which it grew may end in a documented
    /// panic (a region or a checkpoint that finds its own thread holding again).
    static KEPT_EVER: Cell<u64> = const { Cell::new(0) };
    /// The locks whose event hooks run on this thread, innermost last.
    static HOOKS: RefCell<Vec<Lock>> = const { RefCell::new(Vec::new()) };
    /// The resources (`Res` bits) this thread held when its current step began, for the
    /// lock-order edges of what user code waits for.
    static HELD: Cell<u8> = const { Cell::new(0) };
}

/// The id of the thread that drops the tasks left at the end of a run.
pub(crate) const JANITOR: usize = 100;

/// The id of the thread of the final checks.
pub(crate) const CHECKER: usize = 101;

/// The id of the helper threads of a slot.
pub(crate) const SLOT_HELPER: usize = 1000;

/// The thread `id` names, for a person: workers by their index in the program.
pub(crate) fn who(id: usize) -> String {
    match id {
        0 => "a thread outside the run".to_owned(),
        JANITOR => "the janitor".to_owned(),
        CHECKER => "the final check".to_owned(),
        SLOT_HELPER => "a slot's helper thread".to_owned(),
        worker => format!("thread {}", worker - 1),
    }
}

pub(crate) fn me() -> usize {
    ME.with(Cell::get)
}

pub(crate) fn set_me(id: usize) {
    ME.with(|m| m.set(id));
}

/// Keeps `guard` in this thread's thread-local.
pub(crate) fn keep(guard: Kept) {
    // Dropped here if the thread-local is gone (the thread is exiting): the guard then ends
    // as it would have a moment later.
    let _ = KEPT.try_with(|k| k.borrow_mut().push(guard));
    let _ = KEPT_EVER.try_with(|n| n.set(n.get() + 1));
}

pub(crate) fn kept_ever() -> u64 {
    KEPT_EVER.try_with(Cell::get).unwrap_or(0)
}

/// Takes every kept guard out, oldest first.
pub(crate) fn take_kept() -> Vec<Kept> {
    KEPT.try_with(|k| std::mem::take(&mut *k.borrow_mut()))
        .unwrap_or_default()
}

/// Puts guards taken out with [`take_kept`] back, before any kept since.
pub(crate) fn put_back_kept(mut guards: Vec<Kept>) {
    let _ = KEPT.try_with(|k| {
        let mut k = k.borrow_mut();
        guards.append(&mut k);
        *k = guards;
    });
}

/// The lock of each guard kept, and whether it is held by this thread.
pub(crate) fn kept_locks(lock_of: impl Fn(&Gil) -> Option<Lock>) -> Vec<(Lock, bool)> {
    KEPT.try_with(|k| {
        k.borrow()
            .iter()
            .filter_map(|g| lock_of(g.gil()).map(|l| (l, g.gil().is_held_by_current_thread())))
            .collect()
    })
    .unwrap_or_default()
}

/// Drops every kept guard, newest first.
pub(crate) fn drop_kept() {
    let mut guards = take_kept();
    while let Some(g) = guards.pop() {
        drop(g);
    }
}

/// How many rounds [`drain_kept`] drops guards in before it gives up.
const DRAIN_ROUNDS: usize = 8;

/// Drops the kept guards until none are left — a hook run by a drop may keep another — before
/// the thread exits: dropped by the thread-local's destructor, a guard would release its lock
/// with the lock's own thread-locals gone, and a panic there aborts the process. Returns the
/// guards still kept after [`DRAIN_ROUNDS`] rounds (hooks that keep a guard at every release),
/// for the caller to leak.
pub(crate) fn drain_kept() -> Vec<Kept> {
    for _ in 0..DRAIN_ROUNDS {
        if KEPT.try_with(|k| k.borrow().is_empty()).unwrap_or(true) {
            return Vec::new();
        }
        drop_kept();
    }
    take_kept()
}

/// Runs `f` as the hook of `lock`.
pub(crate) fn in_hook<R>(lock: Lock, f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = HOOKS.try_with(|h| h.borrow_mut().pop());
        }
    }
    let _ = HOOKS.try_with(|h| h.borrow_mut().push(lock));
    let _leave = Leave;
    f()
}

/// Whether a hook of `lock` runs on this thread (innermost or further out).
pub(crate) fn in_hook_of(lock: Lock) -> bool {
    HOOKS
        .try_with(|h| h.borrow().contains(&lock))
        .unwrap_or(false)
}

/// How deep hooks are nested on this thread.
pub(crate) fn hook_depth() -> usize {
    HOOKS.try_with(|h| h.borrow().len()).unwrap_or(0)
}

pub(crate) fn held() -> u8 {
    HELD.try_with(Cell::get).unwrap_or(0)
}

pub(crate) fn set_held(mask: u8) {
    let _ = HELD.try_with(|h| h.set(mask));
}
