//! Event hooks: a callback that sees what each thread does with a `Gil` — the instrumentation
//! Ruby's GVL offers, and what the lab's timeline recorder (`trace`) is built on. The events,
//! and the hook's slot; the lock reports to it.

use std::fmt;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::bits::{WATCH_HOOK, Watch};

/// Something a thread did with a [`Gil`](crate::Gil), reported to its event hook on that thread.
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
    /// A drop request was made: by [`Gil::request_drop`](crate::Gil::request_drop) on the calling thread, or by the
    /// holder itself at the end of its slice. A request the clock thread made (its backstop,
    /// once somebody waited a whole switch interval) is reported by the holder, at the
    /// checkpoint that answers it: the clock thread runs no hook.
    DropRequested,
    /// The holder enters a blocking region; [`Event::Released`] follows.
    BlockingEntered,
    /// The thread leaves a blocking region; it takes the lock back next. For a region of a
    /// nested guard (whose hold is set aside with its other guards, see
    /// [`EventHook`](crate::EventHook)), reported once the lock is back, before `Wants` (if the
    /// thread had to wait) and `Got`.
    BlockingLeft,
    /// The thread registered with the lock ([`Gil::register_thread`](crate::Gil::register_thread)).
    ThreadStarted,
    /// The thread's registration ended: it is done with the lock.
    ThreadExited,
}

/// The slot of an event hook: empty, or a box made by [`set`](Hook::set) and never freed.
/// Generic over the hook's type, which the lock names (`EventHook`).
pub(crate) struct Hook<H: ?Sized + 'static>(AtomicPtr<&'static H>);

impl<H: ?Sized + 'static> Hook<H> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(ptr::null_mut()))
    }

    /// Installs `hook` (or removes the hook, with `None`), and [`WATCH_HOOK`] with it.
    pub(crate) fn set(&self, watch: &Watch, hook: Option<&'static H>) {
        // Installing is rare: one process-wide mutex keeps the pointer and the watch bit in
        // agreement when two threads install at once.
        let _setting = SETTING.lock().unwrap_or_else(|p| p.into_inner());
        let slot = hook.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // Release pairs with the Acquire in `run`: the box is written before it is seen.
        self.0.store(slot, Release);
        watch.set(WATCH_HOOK, hook.is_some());
    }

    /// Calls `call` with the hook, if one is installed, marked as the hook of `lock` on this
    /// thread (`owner::in_hook`). A hook that panics is removed, with a message on standard
    /// error, and the panic goes no further.
    #[cold]
    pub(crate) fn run<L>(&self, watch: &Watch, lock: &L, call: impl FnOnce(&'static H)) {
        if crate::owner::is_quiet() {
            // The thread runs no code of the user's now (see `owner::is_quiet`); the lock's
            // own paths report nothing then, so this is an event of code the lock does not
            // know about (a region's closure), and it goes unreported.
            return;
        }
        // Acquire pairs with the Release in `set`.
        let slot = self.0.load(Acquire);
        if slot.is_null() {
            return;
        }
        // SAFETY: a non-null slot was made by `Box::into_raw` in `set` and is never freed, so
        // it stays valid for ever.
        let hook: &'static H = unsafe { *slot };
        let run = || crate::owner::in_hook(lock, || call(hook));
        // The panic goes no further than here, the lock's path that reported the event.
        if crate::sync::caught(run).is_err() {
            crate::sync::report(format_args!("gil: an event hook panicked; it is removed"));
            let _setting = SETTING.lock().unwrap_or_else(|p| p.into_inner());
            // Remove it only if it is still the one installed.
            if self
                .0
                .compare_exchange(slot, ptr::null_mut(), Relaxed, Relaxed)
                .is_ok()
            {
                watch.set(WATCH_HOOK, false);
            }
        }
    }
}

/// Serialises hook installation; see [`Hook::set`].
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
