//! Pending calls: closures any thread queues for whoever holds the lock next, run at a
//! checkpoint or on acquiring, exactly once and in order (CPython's `Py_AddPendingCall`).
//!
//! The queue and the two flags that announce it agree under the queue's mutex: while a call
//! is queued, [`CALLS`] is set in the breaker (for the holder's checkpoint) and `WATCH_CALLS` in
//! the watch word (for the next thread to take the lock). Whoever adds sets both under the
//! mutex; whoever finds the queue empty clears both under it. So no call is ever queued with
//! nobody told, and the flags cost nothing while the queue is empty.

use std::collections::VecDeque;
use std::fmt;

use gil_core::Breaker;

use crate::bits::{CALLS, WATCH_CALLS, Watch};
use crate::sync::{Mutex, lock};

/// The queue of pending calls, and whether it is closed. Generic over the call's type, which
/// the lock names (`PendingCall`).
pub(crate) struct Calls<C>(Mutex<Queue<C>>);

struct Queue<C> {
    queue: VecDeque<C>,
    closed: bool,
}

impl<C> Calls<C> {
    crate::sync::const_fn! {
        pub(crate) fn new() -> Self {
            Self(Mutex::new(Queue {
                queue: VecDeque::new(),
                closed: false,
            }))
        }
    }

    /// Queues `call` (as `into` makes it a `C`), and announces it on `breaker` and `watch` if
    /// it is the first. Hands it back, unqueued, when `limit` calls are queued already or the
    /// queue is closed.
    pub(crate) fn add<F>(
        &self,
        breaker: &Breaker,
        watch: &Watch,
        limit: usize,
        call: F,
        into: impl FnOnce(F) -> C,
    ) -> Result<(), PendingCallError<F>> {
        let mut calls = lock(&self.0);
        if calls.closed {
            return Err(PendingCallError::Closed(call));
        }
        if calls.queue.len() >= limit {
            return Err(PendingCallError::Full(call));
        }
        calls.queue.push_back(into(call));
        if calls.queue.len() == 1 {
            announce(breaker, watch, true);
        }
        Ok(())
    }

    /// Runs the calls queued when it begins with `run`, one at a time and in order, outside
    /// the mutex: at most as many as were queued then, so a call that queues itself again runs
    /// once per checkpoint, not for ever. Calls queued meanwhile stay announced for the next
    /// checkpoint; the announcement ends when the queue is found empty.
    #[cold]
    pub(crate) fn run(&self, breaker: &Breaker, watch: &Watch, mut run: impl FnMut(C)) {
        let mut budget = None;
        loop {
            let call = {
                let mut calls = lock(&self.0);
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
                            announce(breaker, watch, false);
                        }
                        return;
                    }
                }
            };
            // Outside the mutex: a call may queue further calls.
            run(call);
        }
    }

    /// Closes the queue and hands back the calls in it.
    pub(crate) fn close(&self, breaker: &Breaker, watch: &Watch) -> VecDeque<C> {
        let mut calls = lock(&self.0);
        calls.closed = true;
        announce(breaker, watch, false);
        std::mem::take(&mut calls.queue)
    }
}

/// Sets or clears both flags that announce queued calls. Called only under the queue's mutex:
/// the runner clears them under it when it finds the queue empty, so the flags agree with the
/// queue at every unlock. Release (in `set`) pairs with the holder's Acquire in `take`; the
/// calls themselves are published by the mutex.
fn announce(breaker: &Breaker, watch: &Watch, queued: bool) {
    watch.set(WATCH_CALLS, queued);
    if queued {
        breaker.set(CALLS);
    } else {
        breaker.take(CALLS);
    }
}

/// Why [`Gil::add_pending_call`](crate::Gil::add_pending_call) refused a call; it hands the call back.
#[derive(PartialEq, Eq)]
pub enum PendingCallError<F> {
    /// [`Gil::PENDING_CALLS`](crate::Gil::PENDING_CALLS) calls are already queued.
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
