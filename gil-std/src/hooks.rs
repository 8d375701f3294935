//! Event hooks: a callback that sees what each thread does with a `Gil` — the instrumentation
//! Ruby's GVL offers, and what the lab's timeline recorder ([`crate::trace`]) is built on.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::bits::WATCH_HOOK;
use crate::gil::Gil;

/// Something a thread did with a [`Gil`], reported to its event hook on that thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The thread could not take the lock at once and starts waiting for it (also when it
    /// comes back from a blocking region or a hand-over and must queue).
    Wants,
    /// The thread now holds the lock.
    Got,
    /// The thread is about to let the lock go (release, hand-over, or a blocking region).
    Released,
    /// A drop request was made: by [`Gil::request_drop`] on the calling thread, or by the
    /// holder itself at the end of its slice. A request the clock thread made (its backstop,
    /// once somebody waited a whole switch interval) is reported by the holder, at the
    /// checkpoint that answers it: the clock thread runs no hook.
    DropRequested,
    /// The holder enters a blocking region; [`Event::Released`] follows.
    BlockingEntered,
    /// The thread leaves a blocking region; it takes the lock back next.
    BlockingLeft,
    /// The thread registered with the lock ([`Gil::register_thread`]).
    ThreadStarted,
    /// The thread's registration ended: it is done with the lock.
    ThreadExited,
}

/// The type of an event hook: called with the lock and the event, on the thread it concerns.
///
/// A hook runs inside the lock's slow paths, some of them half-way through a hand-over: it
/// must be quick, and must not take, drop or use a guard of the lock it reports on (acquire,
/// `ensure`, a checkpoint, a region): each of those panics inside a hook of its own lock. A
/// hook that panics is removed (with a message on standard error) and the lock goes on.
pub type EventHook = dyn Fn(&Gil, Event) + Send + Sync;

impl Gil {
    /// Installs `hook` (or removes the hook, with `None`): from now on it sees every
    /// [`Event`] of this lock. With no hook installed, the hot paths pay one relaxed load they
    /// already made (the load that checks whether holds are timed).
    ///
    /// Hooks are `'static`, because a thread may still be running the old hook just after it
    /// is replaced. Each call with `Some` allocates 16 bytes that are never freed: install
    /// hooks at set-up, not per request.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use gil_std::{Event, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// static SEEN: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    ///
    /// GIL.set_event_hook(Some(&|_gil, event| SEEN.lock().unwrap().push(event)));
    /// let mut guard = GIL.acquire();
    /// guard.allow_threads(|| ());
    /// drop(guard);
    /// GIL.set_event_hook(None);
    /// drop(GIL.acquire()); // not seen
    ///
    /// use Event::*;
    /// let seen = SEEN.lock().unwrap().clone();
    /// assert_eq!(seen, [Got, BlockingEntered, Released, BlockingLeft, Got, Released]);
    /// ```
    pub fn set_event_hook(&self, hook: Option<&'static EventHook>) {
        // Installing is rare: one process-wide mutex keeps the pointer and the watch bit in
        // agreement when two threads install at once.
        let _setting = SETTING.lock().unwrap_or_else(|p| p.into_inner());
        let slot = hook.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // Release pairs with the Acquire in `emit_slow`: the box is written before it is seen.
        self.hook.store(slot, Release);
        self.set_watch(WATCH_HOOK, hook.is_some());
    }

    /// Reports `event` to the hook, if one is installed.
    #[inline]
    pub(crate) fn emit(&self, event: Event) {
        if self.watch.load(Relaxed) & WATCH_HOOK != 0 {
            self.emit_slow(event);
        }
    }

    #[cold]
    pub(crate) fn emit_slow(&self, event: Event) {
        // Acquire pairs with the Release in `set_event_hook`.
        let slot = self.hook.load(Acquire);
        if slot.is_null() {
            return;
        }
        // SAFETY: a non-null slot was made by `Box::into_raw` in `set_event_hook` and is never
        // freed, so it stays valid for ever.
        let hook: &'static EventHook = unsafe { *slot };
        let run = || crate::owner::in_hook(self, || hook(self, event));
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            eprintln!("gil: an event hook panicked; it is removed");
            let _setting = SETTING.lock().unwrap_or_else(|p| p.into_inner());
            // Remove it only if it is still the one installed.
            if self
                .hook
                .compare_exchange(slot, ptr::null_mut(), Relaxed, Relaxed)
                .is_ok()
            {
                self.set_watch(WATCH_HOOK, false);
            }
        }
    }
}

/// Serialises hook installation; see [`Gil::set_event_hook`].
static SETTING: Mutex<()> = Mutex::new(());

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::Wants => "wants",
            Event::Got => "got",
            Event::Released => "released",
            Event::DropRequested => "drop requested",
            Event::BlockingEntered => "blocking entered",
            Event::BlockingLeft => "blocking left",
            Event::ThreadStarted => "thread started",
            Event::ThreadExited => "thread exited",
        })
    }
}
