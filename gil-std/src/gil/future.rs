//! Waiting for the lock without blocking a thread: [`Gil::acquire_async`] and its future,
//! whose waiter node joins the same FIFO line as threads waiting in `acquire`.

use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::fmt;

use gil_core::{PollPolicy, WaitState, Waited};

use super::waiting::{begin_turn, outcome};
use super::{AcquireError, Gil, GilGuard};
use crate::clock::{TaskTimer, now_nanos};
use crate::hooks::Event;
use crate::sync::{Node, ParkSlot, Parking};

impl Gil {
    /// Takes the lock without blocking the thread that polls: a future that waits in the same
    /// FIFO line as threads in [`acquire`](Gil::acquire), and resolves to a guard once the
    /// lock is handed to it. A free lock is taken at the first poll.
    ///
    /// The future is `Send`; the guard it gives is not, so a task that must be `Send` (one
    /// spawned on a multi-threaded runtime) cannot keep the lock across an `.await`: take the
    /// guard, do the work, drop it, then await. While the future waits, the lock's holder is
    /// asked to drop at its slice's end, as for a waiting thread.
    ///
    /// Cancel-safe: dropping the future while it waits takes it out of the line; dropping it
    /// after the lock was handed to it, before it was polled again, passes the lock on to the
    /// next waiter. So `tokio::time::timeout(d, gil.acquire_async())` is a timed acquire.
    ///
    /// A future handed the lock holds it until its task is polled again: an executor thread
    /// that blocks (in a synchronous [`acquire`](Gil::acquire), say) with such a task on it
    /// holds up the line until it runs the task.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Closed`] if the lock is closed, or is closed while the future waits.
    ///
    /// # Panics
    ///
    /// When polled on a thread that holds this lock (a task of a single-threaded executor
    /// would wait for a guard that another task of its thread keeps across an `.await`), or
    /// inside this lock's event hook.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// let held = GIL.acquire();
    /// let waiter = std::thread::spawn(|| {
    ///     // Any executor: here a minimal one that parks the thread between polls.
    ///     let guard = block_on(GIL.acquire_async()).unwrap();
    ///     assert!(GIL.is_held_by_current_thread());
    ///     drop(guard);
    /// });
    /// std::thread::sleep(std::time::Duration::from_millis(10));
    /// drop(held); // hands the lock to the future, whose waker unparks the thread
    /// waiter.join().unwrap();
    ///
    /// fn block_on<F: std::future::Future>(future: F) -> F::Output {
    ///     use std::task::{Context, Poll, Wake, Waker};
    ///     struct Unpark(std::thread::Thread);
    ///     impl Wake for Unpark {
    ///         fn wake(self: std::sync::Arc<Self>) {
    ///             self.0.unpark();
    ///         }
    ///     }
    ///     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    ///     let mut future = std::pin::pin!(future);
    ///     loop {
    ///         match future.as_mut().poll(&mut Context::from_waker(&waker)) {
    ///             Poll::Ready(out) => return out,
    ///             Poll::Pending => std::thread::park(),
    ///         }
    ///     }
    /// }
    /// ```
    pub fn acquire_async(&self) -> AcquireFuture<'_> {
        AcquireFuture {
            gil: self,
            node: Node::with_parker(ParkSlot::task()),
            stage: Stage::Start,
            _pinned: PhantomPinned,
        }
    }
}

impl<'a> GilGuard<'a> {
    /// Lets the lock go for an `.await`, and gives the token that takes it back:
    /// [`UnlockedAsync::relock_async`]. The async form of [`unlock`](GilGuard::unlock): the
    /// token is `Send`, so a task may hold it across the `.await` (and resume on another
    /// thread), while the guard, taken by value, is gone.
    ///
    /// The lock is released at once (handed to the next in line), not let go lazily as a
    /// thread's region does: the task may take it back from another thread.
    ///
    /// # Panics
    ///
    /// If this thread has other guards of the lock (nested [`Gil::ensure`] guards), as
    /// [`unlock`](GilGuard::unlock).
    ///
    /// In a task that must be `Send`, end the guard's binding before the `.await` (a block, as
    /// below): the compiler may count a guard binding whose scope spans an `.await` as held
    /// across it, even once the guard was moved into `unlock_for_await`.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// async fn handler() -> u32 {
    ///     let away = {
    ///         let guard = GIL.acquire_async().await.unwrap();
    ///         // ... read the runtime's state ...
    ///         guard.unlock_for_await()
    ///     };
    ///     let reply = async { 42 }.await; // an outgoing call, without the lock
    ///     let guard = away.relock_async().await;
    ///     // ... write the reply into the runtime's state ...
    ///     drop(guard);
    ///     reply
    /// }
    ///
    /// fn spawnable<F: std::future::Future + Send>(_: F) {}
    /// spawnable(handler()); // the handler's future is `Send`
    /// ```
    pub fn unlock_for_await(self) -> UnlockedAsync<'a> {
        let gil = self.gil();
        gil.refuse_region();
        gil.emit(crate::hooks::Event::BlockingEntered);
        drop(self);
        UnlockedAsync { gil }
    }
}

/// The lock let go for an `.await`, made by [`GilGuard::unlock_for_await`]: `Send`, and
/// [`relock_async`](UnlockedAsync::relock_async) takes the lock back. Dropping it instead
/// ends the hold for good.
#[must_use = "dropping it ends the hold for good; call relock_async() to take the lock back"]
#[derive(Debug)]
pub struct UnlockedAsync<'a> {
    gil: &'a Gil,
}

impl<'a> UnlockedAsync<'a> {
    /// Takes the lock back: a future that waits in line, behind everyone who was waiting, as
    /// [`Gil::acquire_async`]'s does, but that a [`close`](Gil::close) does not fail: the
    /// task held the lock before and must be able to finish. Cancel-safe as `acquire_async`.
    ///
    /// # Panics
    ///
    /// When polled on a thread that holds this lock, as `acquire_async`'s future.
    pub fn relock_async(self) -> RelockFuture<'a> {
        let gil = self.gil;
        core::mem::forget(self);
        gil.emit(crate::hooks::Event::BlockingLeft);
        RelockFuture(AcquireFuture {
            gil,
            node: Node::returning_with_parker(ParkSlot::task()),
            stage: Stage::Start,
            _pinned: PhantomPinned,
        })
    }

    /// The lock let go.
    pub fn gil(&self) -> &'a Gil {
        self.gil
    }
}

impl Drop for UnlockedAsync<'_> {
    fn drop(&mut self) {
        // Not relocked: the region ends without the lock, for good.
        self.gil.emit(crate::hooks::Event::BlockingLeft);
    }
}

/// The future of [`UnlockedAsync::relock_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RelockFuture<'a>(AcquireFuture<'a>);

impl<'a> Future for RelockFuture<'a> {
    type Output = GilGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<GilGuard<'a>> {
        // SAFETY: structural pinning of the one field: it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|f| &mut f.0) };
        inner.poll(cx).map(|got| match got {
            Ok(guard) => guard,
            Err(_) => unreachable!("gil: a returning waiter is never closed"),
        })
    }
}

/// The future of [`Gil::acquire_async`].
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture<'a> {
    gil: &'a Gil,
    /// In line from the first poll that had to wait until the future is done or dropped:
    /// pinned, the queue links to it.
    node: Node,
    stage: Stage<'a>,
    _pinned: PhantomPinned,
}

enum Stage<'a> {
    /// Not polled yet.
    Start,
    /// In line.
    Queued(TaskWait<'a>),
    /// Resolved: out of line.
    Done,
}

/// A task's wait for the lock: when it queued, and its place in the lock's watch, which has
/// the holder asked to hand over at its slice's end (see `TaskTimer`). Not counted in by the
/// clock as a thread's wait is: the future may be leaked and its lock moved or dropped while it
/// is still counted, so nothing may act on the lock on its behalf except the future's own polls.
struct TaskWait<'a> {
    gil: &'a Gil,
    /// When the first poll queued the task, in nanoseconds on the clock's epoch; `None` until
    /// then (and for good if the lock was free: no wait to count).
    queued: Option<u64>,
    timer: TaskTimer,
    /// Counted in by the clock as a thread's wait is: never (a fault point's).
    listed: bool,
}

impl<'a> TaskWait<'a> {
    fn new(gil: &'a Gil) -> Self {
        let listed = cfg!(bite = "a-future-lists-its-lock");
        if listed {
            crate::clock::clock().arm(&gil.raw, &gil.timer, crate::sync::now());
        }
        Self {
            gil,
            queued: None,
            timer: TaskTimer::default(),
            listed,
        }
    }

    /// A poll that leaves the task waiting, with the lock borrowed while it runs: the task
    /// times its own wait in the lock's watch.
    fn look(&mut self, cx: &Context<'_>, node: Pin<&Node>) {
        if let Some(queued) = self.queued {
            let gil = self.gil;
            let watch = &gil.services_or_new().tasks;
            let in_line = || matches!(node.state(), WaitState::Waiting | WaitState::Offered);
            self.timer
                .look(&gil.raw, &gil.timer, watch, queued, cx.waker(), in_line);
        }
    }

    /// The wait is over, `waited` being what it came to: if the task waited in line, counts
    /// the wait and, on a grant, begins a slice. One clock read for both.
    fn done(self, waited: Waited) -> Result<(), AcquireError> {
        let outcome = outcome(waited);
        if let Some(queued) = self.queued {
            let now = now_nanos();
            self.gil.count_wait_nanos(now.saturating_sub(queued));
            if outcome.is_ok() {
                begin_turn(self.gil, now);
            }
        }
        outcome
    }
}

impl Drop for TaskWait<'_> {
    /// The wait is over, or given up: the task, out of line, leaves the lock's watch.
    fn drop(&mut self) {
        if let Some(services) = self.gil.services() {
            self.timer.leave(&self.gil.raw, &services.tasks);
        }
        if self.listed {
            crate::clock::clock().leave(&self.gil.raw, &self.gil.timer);
        }
    }
}

// SAFETY: `Node` is not `Send` for its queue links, raw pointers that only the core follows,
// under its queue lock, whichever thread takes it; the future's own uses of the node (its
// word, an atomic; the waker slot, an `AtomicWaker`; `poll_lock`, `cancel_poll`) are as
// valid on one thread as on another, and the node stays pinned where it is. A `TaskWait`
// holds the lock by reference, plain values and its place in the lock's watch, and no frame of
// a thread's (`owner::Frame`, which is what makes a thread's `Waiting` not `Send`).
// Nothing in the future is tied to the thread that polled it first: the guard it gives is made
// on the thread that polls it last.
unsafe impl Send for AcquireFuture<'_> {}

impl<'a> Future for AcquireFuture<'a> {
    type Output = Result<GilGuard<'a>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing is moved out of the future; `node` is used only through the pinned
        // reference made here (structural pinning), the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `this.node` lives in the pinned future and is never moved (see above).
        let node = unsafe { Pin::new_unchecked(&this.node) };
        let gil = this.gil;
        if matches!(this.stage, Stage::Done) {
            panic!("gil: an AcquireFuture polled after it completed");
        }
        gil.refuse_reentry();
        let wait = match &mut this.stage {
            Stage::Start => {
                if gil.raw.try_lock().is_ok() {
                    this.stage = Stage::Done;
                    return Poll::Ready(Ok(gil.owned()));
                }
                // From here `drop` cancels, whatever the first poll does.
                this.stage = Stage::Queued(TaskWait::new(gil));
                let Stage::Queued(wait) = &mut this.stage else {
                    unreachable!()
                };
                wait
            }
            Stage::Queued(wait) => wait,
            Stage::Done => unreachable!("checked above"),
        };
        let mut task = Task { wait, cx };
        // SAFETY: the node is pinned in this future, polled only on this lock, and not polled
        // after a `Ready` (the stage is `Done` then); `drop` cancels it while in line. At the
        // first poll this thread does not hold the lock (refused above).
        let waited = match unsafe { gil.raw.poll_lock(node, &mut task) } {
            Poll::Pending => {
                task.wait.look(cx, node);
                return Poll::Pending;
            }
            Poll::Ready(waited) => waited,
        };
        let Stage::Queued(wait) = core::mem::replace(&mut this.stage, Stage::Done) else {
            unreachable!()
        };
        // The guard first: the bookkeeping after it drops the task's waker (its timer's
        // clone), the executor's code, and a grant must not be lost to a panic there (the
        // guard's unwinding passes the lock on).
        let guard = (waited == Waited::Granted).then(|| gil.owned());
        let outcome = wait.done(waited);
        Poll::Ready(outcome.map(|()| guard.expect("granted")))
    }
}

/// A future's part of the core's poll: its wait's bookkeeping, and its task's waker.
struct Task<'w, 'a, 'c> {
    wait: &'w mut TaskWait<'a>,
    cx: &'w Context<'c>,
}

impl PollPolicy<Parking> for Task<'_, '_, '_> {
    fn queued(&mut self) {
        self.wait.queued = Some(now_nanos());
        self.wait.gil.emit(Event::Wants);
    }

    fn register(&mut self, node: Pin<&Node>) {
        node.parker().register(self.cx.waker());
    }
}

impl Drop for AcquireFuture<'_> {
    fn drop(&mut self) {
        let Stage::Queued(wait) = core::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let gil = self.gil;
        // SAFETY: the future is pinned once polled (it was: it is queued), so `node` has not
        // moved; it is dropped after this, with the future.
        let node = unsafe { Pin::new_unchecked(&self.node) };
        // SAFETY: polled only on this lock, and no poll returned `Ready` (the stage was not
        // `Done`).
        let waited = unsafe { gil.raw.cancel_poll(node) };
        if waited != Waited::Granted {
            let _ = wait.done(waited);
            return;
        }
        // Handed to this future first: the hold begins and ends here, and the lock goes to the
        // next in line.
        let guard = gil.owned();
        let _ = wait.done(Waited::Granted);
        if cfg!(bite = "future-drops-its-grant") {
            std::mem::forget(guard);
        } else {
            drop(guard);
        }
    }
}

impl fmt::Debug for AcquireFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Start => "not polled",
            Stage::Queued(_) => "in line",
            Stage::Done => "done",
        };
        f.debug_struct("AcquireFuture")
            .field("stage", &stage)
            .finish()
    }
}
