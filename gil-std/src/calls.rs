//! Pending calls: closures any thread queues for whoever holds the lock next, run at a
//! checkpoint or on acquiring, exactly once and in order (CPython's `Py_AddPendingCall`).
//!
//! The queue and the two flags that announce it agree under the queue's mutex: while a call
//! is queued, [`CALLS`] is set in the breaker (for the holder's checkpoint) and `WATCH_CALLS` in
//! `Gil::watch` (for the next thread to take the lock). Whoever adds sets both under the
//! mutex; whoever finds the queue empty clears both under it. So no call is ever queued with
//! nobody told, and the flags cost nothing while the queue is empty.

use std::collections::VecDeque;
use std::fmt;

use crate::bits::{CALLS, WATCH_CALLS};
use crate::gil::Gil;
use crate::guard::GilGuard;
use crate::sync::lock;

/// A queued call: run once, by a thread holding the lock, which it proves with the guard.
pub type PendingCall = Box<dyn FnOnce(&GilGuard<'_>) + Send>;

/// The queue, behind `Gil::calls`.
pub(crate) struct Calls {
    queue: VecDeque<PendingCall>,
    closed: bool,
}

impl Calls {
    pub(crate) const fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            closed: false,
        }
    }
}

/// Why [`Gil::add_pending_call`] refused a call; it hands the call back.
#[derive(PartialEq, Eq)]
pub enum PendingCallError<F> {
    /// [`Gil::PENDING_CALLS`] calls are already queued.
    Full(F),
    /// The lock is closed: nobody will run it.
    Closed(F),
}

impl<F> PendingCallError<F> {
    /// The call that was refused.
    pub fn into_call(self) -> F {
        match self {
            PendingCallError::Full(call) | PendingCallError::Closed(call) => call,
        }
    }
}

impl<F> fmt::Debug for PendingCallError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PendingCallError::Full(_) => "Full(..)",
            PendingCallError::Closed(_) => "Closed(..)",
        })
    }
}

impl<F> fmt::Display for PendingCallError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PendingCallError::Full(_) => "the GIL's pending-call queue is full",
            PendingCallError::Closed(_) => "the GIL is closed: no pending call will run",
        })
    }
}

impl<F> std::error::Error for PendingCallError<F> {}

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
        let mut calls = lock(&self.calls);
        if calls.closed {
            return Err(PendingCallError::Closed(call));
        }
        if calls.queue.len() >= Self::PENDING_CALLS {
            return Err(PendingCallError::Full(call));
        }
        calls.queue.push_back(Box::new(call));
        if calls.queue.len() == 1 {
            self.announce_calls(true);
        }
        Ok(())
    }

    /// Sets or clears both flags that announce queued calls. Called only under the queue's
    /// mutex: the runner clears them under it when it finds the queue empty, so the flags agree
    /// with the queue at every unlock. Release (in `set`) pairs with the holder's Acquire in
    /// `take`; the calls themselves are published by the mutex.
    fn announce_calls(&self, queued: bool) {
        self.set_watch(WATCH_CALLS, queued);
        if queued {
            self.raw.breaker().set(CALLS);
        } else {
            self.raw.breaker().take(CALLS);
        }
    }

    /// Runs the calls queued when it begins, one at a time and in order, proving the lock with
    /// `guard`: at most [`Gil::PENDING_CALLS`] per call, so a call that queues itself again
    /// runs once per checkpoint, not for ever. Calls queued meanwhile stay announced for the
    /// next checkpoint.
    #[cold]
    pub(crate) fn run_pending_calls(&self, guard: &GilGuard<'_>) {
        let mut budget = None;
        loop {
            let call = {
                let mut calls = lock(&self.calls);
                let left = budget.get_or_insert(calls.queue.len());
                let call = if *left == 0 {
                    None
                } else {
                    calls.queue.pop_front()
                };
                match call {
                    Some(call) => {
                        *left -= 1;
                        call
                    }
                    None => {
                        if calls.queue.is_empty() {
                            self.announce_calls(false);
                        }
                        return;
                    }
                }
            };
            // Outside the mutex: a call may queue further calls.
            call(guard);
        }
    }

    /// Closes the queue and hands back the calls in it.
    pub(crate) fn close_calls(&self) -> PendingCalls {
        let mut calls = lock(&self.calls);
        calls.closed = true;
        self.announce_calls(false);
        PendingCalls(std::mem::take(&mut calls.queue))
    }
}
