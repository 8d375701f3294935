//! What a runtime hooks into the lock: pending calls, runtime breaker bits and their handlers,
//! the event hook, interrupts and thread registration. Each service keeps its own state (its
//! module); the lock holds them and runs what they hold with a guard.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;

use super::{Gil, GilGuard};
use crate::hooks::Event;
use crate::interrupt::InterruptHandle;
use crate::{NotARuntimeBit, PendingCallError};

/// A queued call: run once, by a thread holding the lock, which it proves with the guard.
pub type PendingCall = Box<dyn FnOnce(&GilGuard<'_>) + Send>;

/// The calls still queued when the lock was closed, handed back by [`Gil::close`].
///
/// Run them with [`run`](PendingCalls::run) on a thread that still holds the lock, or take
/// them out one by one (it is an iterator); dropping it drops them unrun.
#[must_use = "calls still queued at close are handed back: run them, or drop them on purpose"]
pub struct PendingCalls(VecDeque<PendingCall>);

impl PendingCalls {
    /// How many calls were handed back.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs them all, in the order they were queued, under the lock `guard` holds.
    pub fn run(self, guard: &GilGuard<'_>) {
        for call in self {
            call(guard);
        }
    }
}

impl Iterator for PendingCalls {
    type Item = PendingCall;

    fn next(&mut self) -> Option<PendingCall> {
        self.0.pop_front()
    }
}

impl fmt::Debug for PendingCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCalls")
            .field("len", &self.len())
            .finish()
    }
}

/// A handler for a runtime breaker bit: run by the holder of the lock, at its checkpoint, with
/// its guard and the bit that was raised.
pub type BreakerHandler = dyn Fn(&GilGuard<'_>, u32) + Send + Sync;

/// The type of an event hook: called with the lock and the event, on the thread it concerns.
///
/// A hook runs inside the lock's slow paths, while the hold it reports on is whole (a
/// hand-over reports its release before it lets go): it must be quick, and must not take or
/// use a guard of the lock it reports on (acquire, `ensure`, a checkpoint, a region): each of
/// those panics inside a hook of its own lock, or inside anything that hook runs. Dropping one
/// is counted as anywhere. A hook that panics is removed (with a message on standard error)
/// and the lock goes on.
///
/// No hook runs on a thread whose hold is set aside with other guards of it alive (a
/// hand-over, or a region of a nested guard): the events of that time are reported before
/// the guards go aside, or once they are back ([`Event::BlockingLeft`]).
pub type EventHook = dyn Fn(&Gil, Event) + Send + Sync;

/// A thread registered with a [`Gil`]'s event hook, made by [`Gil::register_thread`]: the hook
/// saw [`Event::ThreadStarted`] when it was made and sees [`Event::ThreadExited`] when it is
/// dropped — at the end of the thread's work, or when the thread unwinds.
#[must_use = "the thread counts as exited as soon as this is dropped"]
pub struct ThreadRegistration<'a> {
    gil: &'a Gil,
    _not_send: PhantomData<*const ()>,
}

impl Gil {
    /// How many calls [`add_pending_call`](Gil::add_pending_call) queues before it reports
    /// [`PendingCallError::Full`] (CPython's limit too).
    pub const PENDING_CALLS: usize = 32;

    /// Queues `call` for the thread holding the lock: its next checkpoint runs it, or, if nobody
    /// holds the lock, the next thread to take it runs it before `acquire` returns. Callable
    /// from any thread, with or without the lock; never blocks for long (a short mutex) and
    /// never waits for the call to run.
    ///
    /// Calls run exactly once, in the order they were queued. A checkpoint runs the calls that
    /// were queued when it began, no more (at most [`Gil::PENDING_CALLS`]): a call that queues
    /// another one leaves it for the next checkpoint. A call that panics unwinds out of the
    /// checkpoint (or acquire) that ran it, through the guard, so that an acquire releases the
    /// lock again; the calls behind it stay queued. Calls can take
    /// [`GilCell`](crate::GilCell)s with the guard they are given. Calls left when the lock
    /// is closed are handed back by [`Gil::close`].
    ///
    /// # Errors
    ///
    /// Hands `call` back in [`PendingCallError::Full`] when [`Gil::PENDING_CALLS`] calls are
    /// already queued, and in [`PendingCallError::Closed`] once the lock is closed.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static RELOADS: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    ///
    /// let mut guard = GIL.acquire();
    /// std::thread::spawn(|| {
    ///     // Another thread, without the lock: "reload the config when you can".
    ///     GIL.add_pending_call(|g| RELOADS.get(g).set(RELOADS.get(g).get() + 1)).unwrap();
    /// })
    /// .join()
    /// .unwrap();
    /// guard.checkpoint().unwrap(); // runs it here, on the holder
    /// assert_eq!(RELOADS.get(&guard).get(), 1);
    /// ```
    pub fn add_pending_call<F>(&self, call: F) -> Result<(), PendingCallError<F>>
    where
        F: FnOnce(&GilGuard<'_>) + Send + 'static,
    {
        let breaker = self.raw.breaker();
        let boxed = |call| Box::new(call) as PendingCall;
        self.services_or_new()
            .calls
            .add(breaker, &self.watch, Self::PENDING_CALLS, call, boxed)
    }

    /// Runs the calls queued when it begins, proving the lock with `guard` (see `Calls::run`).
    #[cold]
    pub(crate) fn run_pending_calls(&self, guard: &GilGuard<'_>) {
        // Made by `add_pending_call`, which raised the bit that brought us here.
        self.services_or_new()
            .calls
            .run(self.raw.breaker(), &self.watch, |call| call(guard));
    }

    /// Closes the queue of pending calls and hands back the calls in it.
    pub(crate) fn close_calls(&self) -> PendingCalls {
        // Made now if need be: an `add_pending_call` racing with the close then meets the
        // closed queue and is refused, rather than making a queue nobody closes.
        let calls = &self.services_or_new().calls;
        PendingCalls(calls.close(self.raw.breaker(), &self.watch))
    }

    /// Installs `handler` for the runtime breaker bit `bit` (or removes it, with `None`). The
    /// holder runs it at its next checkpoint after [`raise`](Gil::raise) sets the bit.
    ///
    /// Handlers are `'static` for the reason event hooks are (see [`Gil::set_event_hook`]):
    /// each call with `Some` allocates 16 bytes that are never freed.
    ///
    /// # Errors
    ///
    /// [`NotARuntimeBit`] unless `bit` is exactly one of `Breaker::RUNTIME_BITS`
    /// ([`Breaker::runtime_bit`](gil_core::Breaker::runtime_bit)`(n)`).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use gil_core::Breaker;
    /// use gil_std::Gil;
    ///
    /// const GC: u32 = Breaker::runtime_bit(0);
    /// static GIL: Gil = Gil::new();
    /// static COLLECTIONS: AtomicU32 = AtomicU32::new(0);
    ///
    /// GIL.set_breaker_handler(GC, Some(&|_guard, _bit| {
    ///     COLLECTIONS.fetch_add(1, Ordering::Relaxed); // collect, with the lock held
    /// }))
    /// .unwrap();
    /// let mut guard = GIL.acquire();
    /// GIL.raise(GC).unwrap(); // from any thread, or a signal handler
    /// guard.checkpoint().unwrap();
    /// assert_eq!(COLLECTIONS.load(Ordering::Relaxed), 1);
    /// ```
    pub fn set_breaker_handler(
        &self,
        bit: u32,
        handler: Option<&'static BreakerHandler>,
    ) -> Result<(), NotARuntimeBit> {
        self.services_or_new().handlers.set(bit, handler)
    }

    /// Raises runtime breaker `bits`: the holder's next checkpoint runs each one's handler
    /// once (if nobody holds the lock, the next holder's first checkpoint does). Raising a bit
    /// that is already raised merges with it. One atomic OR: callable from any thread, with or
    /// without the lock, and from a signal handler.
    ///
    /// A bit with no handler is cleared at the checkpoint and otherwise ignored.
    ///
    /// # Errors
    ///
    /// [`NotARuntimeBit`] if `bits` is empty or has a bit outside `Breaker::RUNTIME_BITS`;
    /// nothing is raised then.
    pub fn raise(&self, bits: u32) -> Result<(), NotARuntimeBit> {
        crate::handlers::raise(self.raw.breaker(), bits)
    }

    /// Runs the handlers of the runtime bits raised in `pending` with `guard`. The caller
    /// holds the lock.
    #[cold]
    pub(crate) fn run_breaker_handlers(&self, guard: &GilGuard<'_>, pending: u32) {
        let run = |handlers: &crate::handlers::Handlers<BreakerHandler>| {
            handlers.run_raised(self.raw.breaker(), pending, |handler, bit| {
                handler(guard, bit)
            });
        };
        match self.services() {
            Some(services) => run(&services.handlers),
            // No handler was ever set: the bits are taken, as by an empty table.
            None => run(&crate::handlers::Handlers::new()),
        }
    }

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
        if hook.is_none() && self.services().is_none() {
            return; // no hook to remove
        }
        self.services_or_new().hook.set(&self.watch, hook);
    }

    /// Reports `event` to the hook, if one is installed.
    #[inline]
    pub(crate) fn emit(&self, event: Event) {
        if self.watch.has(crate::bits::WATCH_HOOK) {
            self.emit_slow(event);
        }
    }

    #[cold]
    pub(crate) fn emit_slow(&self, event: Event) {
        if let Some(services) = self.services() {
            services
                .hook
                .run(&self.watch, self, |hook| hook(self, event));
        }
    }

    /// A handle that interrupts the calling thread's work under this lock; see
    /// [`InterruptHandle`].
    ///
    /// From the first handle on, every taking of this lock also looks at the taking thread's
    /// interrupt flag (a thread-local read on the path that already checks for event hooks and
    /// hold timing); locks that never hand out a handle do not pay it.
    pub fn interrupt_handle(&self) -> InterruptHandle<'_> {
        InterruptHandle::for_current_thread(self.raw.breaker(), &self.watch)
    }

    /// Turns deadlock detection on or off (off in a new lock): a debugging aid for the
    /// [`Blocking`](crate::Blocking) helpers, as Ruby's "No live threads left. Deadlock?" is.
    ///
    /// While it is on, a helper called by a [registered](Gil::register_thread) thread waits in
    /// rounds of 10 ms and marks what it waits for. When every registered thread has been
    /// waiting in a helper for some 100 ms, with none of them starting or ending a wait, one of
    /// them panics with a message that names each thread and what it waits for (a mutex, a
    /// rwlock, a condition variable or a channel, by address). Its unwinding drops what it
    /// holds, which may let the others go on.
    ///
    /// Only registered threads count, so register every thread that could end another's wait
    /// (send the message, unlock the mutex): an unregistered thread's help is invisible, and a
    /// wait it would end is reported all the same. A thread waiting for the `Gil` itself is
    /// never stuck behind a helper (the helpers let the `Gil` go), and a wait for a
    /// `OnceLock`'s initialiser is not watched: both count as running. Waits that are watched
    /// may end up to 10 ms late, and every round costs a wake-up.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use gil_std::{Blocking, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// GIL.set_deadlock_detection(true);
    ///
    /// // Two threads, each waiting for a message only the other could send.
    /// let (to_a, mut for_a) = mpsc::channel::<u32>();
    /// let (to_b, mut for_b) = mpsc::channel::<u32>();
    /// let a = std::thread::spawn(move || {
    ///     let _registered = GIL.register_thread();
    ///     let got = GIL.acquire().recv_channel(&mut for_a);
    ///     drop(to_b);
    ///     got
    /// });
    /// let b = std::thread::spawn(move || {
    ///     let _registered = GIL.register_thread();
    ///     let got = GIL.acquire().recv_channel(&mut for_b);
    ///     drop(to_a);
    ///     got
    /// });
    /// // One of them panics with the report; the other then sees its sender gone.
    /// let (a, b) = (a.join(), b.join());
    /// assert!(a.is_err() != b.is_err());
    /// ```
    pub fn set_deadlock_detection(&self, on: bool) {
        if on || self.services().is_some() {
            self.services_or_new().waits.set(on);
        }
    }

    /// Registers the calling thread with this lock's event hook and its deadlock detection:
    /// reports [`Event::ThreadStarted`] now and [`Event::ThreadExited`] when the returned value
    /// is dropped. A runtime calls it first thing in each thread it starts (Ruby reports these for
    /// every Ruby thread). Each way costs an entry in a small table of the lock's (its mutex,
    /// and the thread's name), and, without a hook installed, one relaxed load.
    ///
    /// Registration is explicit because a lock cannot know on its own when a thread that used
    /// it exits, nor soundly reach a lock that is not `'static` from a thread's exit.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use gil_std::{Event, Gil};
    ///
    /// static GIL: Gil = Gil::new();
    /// static SEEN: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    ///
    /// GIL.set_event_hook(Some(&|_gil, event| SEEN.lock().unwrap().push(event)));
    /// std::thread::spawn(|| {
    ///     let _registered = GIL.register_thread();
    ///     drop(GIL.acquire());
    /// })
    /// .join()
    /// .unwrap();
    /// GIL.set_event_hook(None);
    ///
    /// use Event::*;
    /// assert_eq!(*SEEN.lock().unwrap(), [ThreadStarted, Got, Released, ThreadExited]);
    /// ```
    pub fn register_thread(&self) -> ThreadRegistration<'_> {
        self.services_or_new().waits.register();
        self.emit(Event::ThreadStarted);
        ThreadRegistration {
            gil: self,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ThreadRegistration<'_> {
    fn drop(&mut self) {
        self.gil.emit(Event::ThreadExited);
        // Made by `register_thread`.
        self.gil.services_or_new().waits.unregister();
    }
}

impl fmt::Debug for ThreadRegistration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadRegistration").finish_non_exhaustive()
    }
}

impl Gil {
    /// Waits in a `Blocking` helper: watched by the deadlock detection if it is on, else
    /// `attempt` with no limit until it is done.
    pub(crate) fn wait_watched<R>(
        &self,
        wait: crate::deadlock::Wait,
        attempt: impl FnMut(Option<std::time::Duration>) -> Option<R>,
    ) -> R {
        match self.services() {
            Some(services) => services.waits.wait(wait, attempt),
            None => crate::deadlock::unwatched(attempt),
        }
    }
}
