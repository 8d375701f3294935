//! A tiny executor for the lock's futures: tasks any thread may poll, whose wakers either leave
//! them to a later step or poll them inline, inside `wake`, on whatever thread wakes them — the
//! holder's, in the middle of its release or checkpoint.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use gil_std::{AcquireFuture, GilGuard, RelockFuture};

use super::callbacks::{message, panic_allowed};
use super::local::{self, Kept};
use super::program::{Lock, WakeMode};
use super::world::{Oracle, Res, World};

/// A task's future, until it is done, dropped or leaked.
pub(crate) enum TaskFuture {
    Acquire(Pin<Box<AcquireFuture<'static>>>),
    Relock(Pin<Box<RelockFuture<'static>>>),
    Gone,
}

/// What a poll gave.
pub(crate) enum Polled {
    Pending,
    Guard(GilGuard<'static>),
    Closed,
    /// Another thread is polling the task right now.
    Busy,
    /// Done, dropped or leaked already.
    Gone,
}

/// A future of one of the locks, with its waker.
pub(crate) struct Task {
    world: &'static World,
    pub(crate) lock: Lock,
    mode: WakeMode,
    future: std::sync::Mutex<TaskFuture>,
    /// Polled and not finished: in line, or handed the lock. Leaking it then may keep the lock
    /// for ever.
    started: AtomicBool,
    /// A poll of it panicked (a pending call run as it took the lock, a poll on a thread that
    /// holds the lock): like an `async fn`'s, its state is then unspecified, so it is not
    /// polled again, only dropped.
    poisoned: AtomicBool,
}

impl Task {
    /// A new task, listed in the world.
    pub(crate) fn spawn(
        world: &'static World,
        lock: Lock,
        mode: WakeMode,
        future: TaskFuture,
    ) -> Arc<Task> {
        let task = Arc::new(Task {
            world,
            lock,
            mode,
            future: std::sync::Mutex::new(future),
            started: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
        });
        let mut tasks = world.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.push(Arc::clone(&task));
        task
    }

    /// Whether the task still has a future to poll (it may be being polled).
    pub(crate) fn is_live(&self) -> bool {
        !self.poisoned.load(SeqCst) && self.has_future()
    }

    /// Whether the task still has a future, poisoned or not: one handed the lock holds it
    /// until dropped.
    fn has_future(&self) -> bool {
        match self.future.try_lock() {
            Ok(f) => !matches!(*f, TaskFuture::Gone),
            Err(TryLockError::Poisoned(p)) => !matches!(*p.into_inner(), TaskFuture::Gone),
            Err(TryLockError::WouldBlock) => true,
        }
    }

    /// Polls the future on this thread, with the task's waker.
    ///
    /// # Panics
    ///
    /// Where the lock's future does (polled on a thread that holds its lock).
    pub(crate) fn poll(self: &Arc<Self>) -> Polled {
        let mut future = match self.future.try_lock() {
            Ok(f) => f,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Polled::Busy,
        };
        if self.poisoned.load(SeqCst) {
            return Polled::Gone;
        }
        /// Marks the task poisoned if the poll unwinds.
        struct Poison<'t>(&'t AtomicBool);
        impl Drop for Poison<'_> {
            fn drop(&mut self) {
                if thread::panicking() {
                    self.0.store(true, SeqCst);
                }
            }
        }
        // The lock may be handed to the future in the middle of the poll, while a hook the poll
        // runs waits for the other lock: for the lock-order analysis, the polling thread holds
        // the future's lock from here to the end of its step.
        self.world.holds(local::me(), Res::from(self.lock).bit());
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        let poison = Poison(&self.poisoned);
        let ready = match &mut *future {
            TaskFuture::Acquire(f) => f.as_mut().poll(&mut cx).map(Result::ok),
            TaskFuture::Relock(f) => f.as_mut().poll(&mut cx).map(Some),
            TaskFuture::Gone => return Polled::Gone,
        };
        drop(poison);
        match ready {
            Poll::Pending => {
                self.started.store(true, SeqCst);
                Polled::Pending
            }
            Poll::Ready(got) => {
                self.started.store(false, SeqCst);
                *future = TaskFuture::Gone;
                got.map_or(Polled::Closed, Polled::Guard)
            }
        }
    }

    /// Takes the future out, to drop or leak it; `None` while another thread polls it.
    pub(crate) fn take(&self) -> Option<TaskFuture> {
        let mut future = match self.future.try_lock() {
            Ok(f) => f,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(std::mem::replace(&mut *future, TaskFuture::Gone))
    }

    /// Leaks the future. One that was in line, or handed the lock, may keep it for ever.
    pub(crate) fn forget(&self) {
        if let Some(future) = self.take() {
            if self.started.load(SeqCst) {
                self.world.leak(Res::from(self.lock));
            }
            std::mem::forget(future);
        }
    }

    /// Polls here; a guard it gives touches the counter and is dropped at once.
    pub(crate) fn poll_here_and_drop(self: &Arc<Self>) {
        if let Polled::Guard(g) = self.poll() {
            self.world.touch(self.lock, &g, local::me());
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.mode == WakeMode::Mark {
            return;
        }
        let (world, lock) = (self.world, self.lock);
        let gil = world.gil(lock);
        let excused = gil.is_held_by_current_thread() || gil.is_closed();
        let polled = catch_unwind(AssertUnwindSafe(|| {
            if let Polled::Guard(g) = self.poll() {
                world.touch(lock, &g, local::me());
                if self.mode == WakeMode::InlineKeep {
                    // A waker the lock hands to one of its waker threads (its waking thread
                    // runs no user code at the moment) keeps the guard on a thread that never
                    // drops it: a leak.
                    if local::me() == 0 {
                        world.leak(lock.into());
                    }
                    world.holds(local::me(), Res::from(lock).bit());
                    local::keep(Kept::Guard(g));
                }
            }
        }));
        // Not on: a waker that panics would unwind through the lock's hand-over.
        if let Err(payload) = polled
            && !panic_allowed(&*payload, excused)
        {
            world.record(
                Oracle::UnexpectedPanic,
                format!(
                    "in a waker of lock {lock:?} polling inline on {}: {}",
                    local::who(local::me()),
                    message(&*payload)
                ),
            );
        }
    }
}

/// Drops every task's future that no thread is polling, on the calling thread: at the end of
/// a run, a future handed the lock and never polled again holds it until dropped.
pub(crate) fn drop_all(world: &World) {
    let tasks: Vec<_> = {
        let tasks = world.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.clone()
    };
    // Each task with a future, poisoned or not, may hold its lock until it is dropped here.
    let held = tasks
        .iter()
        .filter(|t| t.has_future())
        .fold(0, |held, t| held | Res::from(t.lock).bit());
    world.holds(local::me(), held);
    for task in tasks {
        let lock = task.lock;
        // A future handed the lock and dropped takes and releases it, running the pending
        // calls queued meanwhile: one may panic, as planned.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(task.take())))
            && !panic_allowed(&*payload, false)
        {
            world.record(
                Oracle::UnexpectedPanic,
                format!(
                    "dropping a task of lock {lock:?} at the end: {}",
                    message(&*payload)
                ),
            );
        }
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to completion on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(mut future: Pin<&mut F>) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Polls `future` once, with a waker that does nothing.
pub(crate) fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}
