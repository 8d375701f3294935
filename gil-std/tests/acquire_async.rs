//! `Gil::acquire_async` under real threads and tokio: the future waits in the same FIFO line
//! as threads, and dropping it — while it waits, after it was granted, or by a timeout — loses
//! nothing and strands nobody.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use gil_std::{AcquireError, AcquireFuture, Event, Gil, GilGuard, RelockFuture, UnlockedAsync};

mod common;
use common::wait_until;

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

/// The future of `gil.acquire_async()`, polled once on a thread of its own (this one holds the
/// lock, and a poll on a holding thread panics): it must be waiting in line.
fn queued<'g>(gil: &'g Gil, waker: &Waker) -> Pin<Box<AcquireFuture<'g>>> {
    thread::scope(|s| {
        s.spawn(|| {
            let mut future = Box::pin(gil.acquire_async());
            let pending = future.as_mut().poll(&mut Context::from_waker(waker));
            assert!(pending.is_pending(), "the lock is held: the future waits");
            future
        })
        .join()
        .unwrap()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_free_lock_is_taken_at_the_first_poll() {
    let gil = Gil::new();
    let (_, waker) = counting();
    let mut future = pin!(gil.acquire_async());
    let Poll::Ready(Ok(guard)) = future.as_mut().poll(&mut Context::from_waker(&waker)) else {
        panic!("not taken at once");
    };
    assert!(gil.is_held_by_current_thread());
    drop(guard);
    assert!(!gil.is_held_by_current_thread());
}

/// A thread, then a future, then a thread queue behind a holder; the lock goes to them in
/// that order.
#[test]
fn a_future_waits_in_the_same_fifo_line_as_threads() {
    // An hour's interval: the task's own timer wakes it only if its grant does not.
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    let order = Mutex::new(Vec::new());
    let (wakes, waker) = counting();
    let held = gil.acquire();
    thread::scope(|s| {
        let first = s.spawn(|| {
            let _g = gil.acquire();
            order.lock().unwrap().push("thread 1");
        });
        wait_until("the first thread queues", || gil.has_waiters());
        let mut future = queued(&gil, &waker);
        let mut cx = Context::from_waker(&waker);
        let last = s.spawn(|| {
            let _g = gil.acquire();
            order.lock().unwrap().push("thread 2");
        });
        // Time for the last thread to queue; the order below holds whether it did or not.
        thread::sleep(Duration::from_millis(20));
        drop(held);
        first.join().unwrap();
        wait_until("the future is woken", || wakes.0.load(SeqCst) >= 1);
        let Poll::Ready(Ok(g)) = future.as_mut().poll(&mut cx) else {
            panic!("granted after thread 1");
        };
        order.lock().unwrap().push("future");
        drop(g);
        last.join().unwrap();
    });
    assert_eq!(*order.lock().unwrap(), ["thread 1", "future", "thread 2"]);
}

/// A future dropped while it waits leaves the line: the thread behind it is granted next, and
/// the lock is free after. With the longest interval, so that the future's own preemption
/// timer, which wakes it after an interval in line, stays out of the count of wakes.
#[test]
fn a_future_dropped_while_it_waits_leaves_the_line() {
    for _ in 0..1_000 {
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        let (wakes, waker) = counting();
        let held = gil.acquire();
        thread::scope(|s| {
            let future = queued(&gil, &waker);
            // The thread behind may queue before the drop or after it.
            let behind = s.spawn(|| drop(gil.acquire()));
            drop(future);
            drop(held);
            behind.join().unwrap();
        });
        assert_eq!(wakes.0.load(SeqCst), 0, "a dropped future is not woken");
        assert!(gil.try_acquire().is_some(), "nobody holds");
    }
}

/// A future handed the lock and dropped before it is polled again passes the lock on to the
/// thread behind it. With the longest interval, as above.
#[test]
fn a_future_dropped_after_its_grant_passes_the_lock_on() {
    for _ in 0..1_000 {
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        let (wakes, waker) = counting();
        let held = gil.acquire();
        thread::scope(|s| {
            let future = queued(&gil, &waker);
            // The thread behind may queue before the grant or after it.
            let behind = s.spawn(|| drop(gil.acquire()));
            drop(held); // granted to the future, which is not polled
            wait_until("the future is woken", || wakes.0.load(SeqCst) == 1);
            drop(future);
            behind.join().unwrap();
        });
        assert!(gil.try_acquire().is_some(), "nobody holds");
    }
}

/// `tokio::time::timeout` around the future is a timed acquire: it times out on a held lock
/// and leaves the line clean, or gets the lock — a grant racing the timeout is never lost.
#[test]
fn a_timeout_around_the_future_is_cancel_safe() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let rt = runtime();
    let got = AtomicUsize::new(0);
    let timed_out = AtomicUsize::new(0);
    let stop = AtomicUsize::new(0);
    thread::scope(|s| {
        // A thread that takes the lock and lets it go, over and over.
        s.spawn(|| {
            while stop.load(SeqCst) == 0 {
                let g = gil.acquire();
                thread::sleep(Duration::from_micros(50));
                drop(g);
            }
        });
        rt.block_on(async {
            for i in 0..1_000_u64 {
                let limit = Duration::from_micros(i % 200);
                match tokio::time::timeout(limit, gil.acquire_async()).await {
                    Ok(Ok(g)) => {
                        drop(g);
                        got.fetch_add(1, SeqCst);
                    }
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => {
                        timed_out.fetch_add(1, SeqCst);
                    }
                }
            }
        });
        stop.store(1, SeqCst);
    });
    assert_eq!(got.load(SeqCst) + timed_out.load(SeqCst), 1_000);
    assert!(
        gil.try_acquire().is_some(),
        "no grant was lost: nobody holds"
    );
}

#[test]
fn a_close_fails_a_waiting_future() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let rt = runtime();
    let held = gil.acquire();
    let task = rt.spawn(async move { gil.acquire_async().await.map(drop) });
    wait_until("the future queues", || gil.has_waiters());
    assert!(gil.close().is_empty());
    assert_eq!(rt.block_on(task).unwrap(), Err(AcquireError::Closed));
    drop(held);
    let after = rt.block_on(async { gil.acquire_async().await.map(drop) });
    assert_eq!(after, Err(AcquireError::Closed));
}

/// A holder that never lets go of its own accord, only checkpoints, hands over to a future
/// that waits: the future's wait makes the holder's slice end, as a thread's would.
#[test]
fn a_waiting_future_makes_a_busy_holder_hand_over() {
    let gil = with_a_short_interval();
    let rt = runtime();
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let holder = busy_holder(move || gil.acquire(), done);
    rt.block_on(async {
        let got = tokio::time::timeout(Duration::from_secs(60), gil.acquire_async()).await;
        let g = got.expect("the holder never handed over").unwrap();
        done.store(1, SeqCst);
        drop(g);
    });
    holder.join().unwrap();
    assert!(gil.stats().forced_drops >= 1);
}

/// A lock with a switch interval of 1 ms, for good.
fn with_a_short_interval() -> &'static Gil {
    Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))))
}

/// A holder thread that takes the lock with `take`, then never lets go of its own accord, only
/// checkpoints, until `done`.
fn busy_holder(
    take: impl FnOnce() -> GilGuard<'static> + Send + 'static,
    done: &'static AtomicUsize,
) -> thread::JoinHandle<()> {
    let (held, wait_held) = std::sync::mpsc::channel();
    let holder = thread::spawn(move || {
        let mut g = take();
        held.send(()).unwrap();
        while done.load(SeqCst) == 0 {
            g.checkpoint().unwrap();
        }
    });
    wait_held.recv().unwrap();
    holder
}

/// Polls `future` each time its waker is woken, until it is ready or twenty seconds (twenty
/// thousand switch intervals here) have passed; returns whether it got the lock (what it
/// resolved to is dropped).
fn poll_when_woken<F: Future>(mut future: Pin<&mut F>, woken: &Count, waker: &Waker) -> bool {
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = 0;
    while std::time::Instant::now() < give_up {
        let wakes = woken.0.load(SeqCst);
        if wakes != seen {
            seen = wakes;
            if let Poll::Ready(got) = future.as_mut().poll(&mut Context::from_waker(waker)) {
                drop(got);
                return true;
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
    false
}

/// A future in line, with its waker and the count of its wakes.
struct Waiter<F = AcquireFuture<'static>> {
    future: Pin<Box<F>>,
    waker: Waker,
    woken: Arc<Count>,
}

/// Polls `task` each time it is woken (`poll_when_woken`), then lets the busy `holder` (see
/// `busy_holder`) end; returns whether the task got the lock.
fn got_the_lock<F: Future>(
    task: &mut Waiter<F>,
    done: &AtomicUsize,
    holder: thread::JoinHandle<()>,
) -> bool {
    let got = poll_when_woken(task.future.as_mut(), &task.woken, &task.waker);
    done.store(1, SeqCst);
    holder.join().unwrap();
    got
}

/// Two futures queued behind a busy holder of a lock with a 1 ms interval (it lets go when
/// `release` is set), once the clock has woken the first to look at the holder's slice.
fn woken_to_look(release: &'static AtomicUsize) -> (thread::JoinHandle<()>, Waiter, Waiter) {
    let gil = with_a_short_interval();
    let holder = busy_holder(move || gil.acquire(), release);
    let [first, second] = [(); 2].map(|()| {
        let (woken, waker) = counting();
        let future = queued(gil, &waker);
        Waiter {
            future,
            waker,
            woken,
        }
    });
    wait_until("the clock to wake the first task", || {
        first.woken.0.load(SeqCst) > 0
    });
    (holder, first, second)
}

/// The lock's clock wakes one waiting task to look at the holder's slice. That task leaves
/// without looking (here dropped, as a `select!` whose other branch won would): another task
/// looks in its place, and the busy holder still hands over.
#[test]
fn a_task_woken_to_look_that_leaves_passes_the_look_on() {
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let (holder, first, mut second) = woken_to_look(done);
    drop(first);
    let got = got_the_lock(&mut second, done, holder);
    assert!(
        got,
        "the second task was never woken to look, nor handed the lock"
    );
}

/// As above, but the task woken to look is handed the lock the ordinary way meanwhile, and
/// then holds and checkpoints: the task behind it still gets the lock.
#[test]
fn a_task_woken_to_look_and_handed_the_lock_passes_the_look_on() {
    let release: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let (holder, mut first, mut second) = woken_to_look(release);
    // The holder lets go: the first task is handed the lock (or was already, at a checkpoint
    // that the second task's first poll asked for, and the holder waits in line behind).
    release.store(1, SeqCst);
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let first_holds = busy_holder(
        move || loop {
            let mut cx = Context::from_waker(&first.waker);
            if let Poll::Ready(got) = first.future.as_mut().poll(&mut cx) {
                break got.unwrap();
            }
            thread::sleep(Duration::from_micros(100));
        },
        done,
    );
    let got = got_the_lock(&mut second, done, first_holds);
    holder.join().unwrap();
    assert!(
        got,
        "the second task was never woken to look, nor handed the lock"
    );
}

/// The task that watches the holder's slice for a lock's waiting tasks, dropped, wakes the
/// last *task* in line to watch in its place, not a thread queued behind it. With the longest
/// interval, so that no look of the clock's wakes anybody.
#[test]
fn a_watcher_that_leaves_wakes_a_task_not_the_thread_behind_it() {
    static WANTS: AtomicUsize = AtomicUsize::new(0);
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    gil.set_event_hook(Some(&|_, event| {
        if event == Event::Wants {
            WANTS.fetch_add(1, SeqCst);
        }
    }));
    let held = gil.acquire();
    let (_, first_waker) = counting();
    let (second_woken, second_waker) = counting();
    let first = queued(&gil, &first_waker);
    let second = queued(&gil, &second_waker);
    thread::scope(|s| {
        let behind = s.spawn(|| drop(gil.acquire()));
        wait_until("the thread to queue behind the tasks", || {
            WANTS.load(SeqCst) == 3
        });
        drop(first);
        wait_until("the second task to be woken to watch", || {
            second_woken.0.load(SeqCst) > 0
        });
        drop(second);
        drop(held);
        behind.join().unwrap();
    });
}

/// A lock with a 1 ms interval held by a busy holder (it lets go when the flag is set), and a
/// hold of it let go for an `.await` before, to be relocked.
fn busy_after_letting_go() -> (
    &'static Gil,
    UnlockedAsync<'static>,
    &'static AtomicUsize,
    thread::JoinHandle<()>,
) {
    let gil = with_a_short_interval();
    let away = gil.acquire().unlock_for_await();
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let holder = busy_holder(move || gil.acquire(), done);
    (gil, away, done, holder)
}

/// `away` relocking, in line (its first poll queued it), with the count of its wakes.
fn relocking(away: UnlockedAsync<'static>) -> Waiter<RelockFuture<'static>> {
    polled_once(away.relock_async(), "the relock waits")
}

/// A future in line, polled once on this thread (which holds nothing), with the count of its
/// wakes.
fn in_line(gil: &'static Gil) -> Waiter {
    polled_once(gil.acquire_async(), "the future waits")
}

/// `future` polled once with a counting waker, which must leave it waiting (`waits` says so).
fn polled_once<F: Future>(future: F, waits: &str) -> Waiter<F> {
    let (woken, waker) = counting();
    let mut future = Box::pin(future);
    let polled = future.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(polled.is_pending(), "the lock is held: {waits}");
    Waiter {
        future,
        waker,
        woken,
    }
}

/// The task woken to watch in the watcher's place is dropped before its next poll (a
/// `select!` whose other branch won): it hands the watch on as it leaves, and the task still
/// in line gets the lock from a busy holder.
#[test]
fn a_task_woken_to_watch_and_dropped_unpolled_hands_the_watch_on() {
    let gil = with_a_short_interval();
    let done: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let holder = busy_holder(move || gil.acquire(), done);
    let watcher = in_line(gil);
    let mut second = in_line(gil);
    let last = in_line(gil);
    drop(watcher);
    wait_until("the last task to be woken to watch", || {
        last.woken.0.load(SeqCst) > 0
    });
    drop(last);
    let got = got_the_lock(&mut second, done, holder);
    assert!(got, "nobody watched once the task woken to watch left");
}

/// As above, but the task woken to watch finds itself closed out at its next poll: a task
/// relocking, which a close lets stay in line, is still watched for.
#[test]
fn a_task_woken_to_watch_and_closed_out_hands_the_watch_on() {
    let (gil, away, done, holder) = busy_after_letting_go();
    let watcher = in_line(gil);
    let mut relock = relocking(away);
    let mut last = in_line(gil);
    drop(watcher);
    wait_until("the last task to be woken to watch", || {
        last.woken.0.load(SeqCst) > 0
    });
    drop(gil.close());
    let polled = last
        .future
        .as_mut()
        .poll(&mut Context::from_waker(&last.waker));
    assert!(matches!(polled, Poll::Ready(Err(AcquireError::Closed))));
    let got = got_the_lock(&mut relock, done, holder);
    assert!(got, "nobody watched for the relocking task");
}

/// A watcher leaked in line (`mem::forget`, which ends its borrow) and closed out of it does
/// not keep the watch: a task relocking later is watched for, and gets the lock from a busy
/// holder.
#[test]
fn a_leaked_watcher_closed_out_of_line_keeps_no_watch() {
    let (gil, away, done, holder) = busy_after_letting_go();
    std::mem::forget(in_line(gil).future);
    drop(gil.close());
    let got = got_the_lock(&mut relocking(away), done, holder);
    assert!(got, "the leaked watcher kept the watch");
}

/// A close lands between a task's first poll, which queued it, and that poll's look at the
/// watch: the task, closed out, does not become the watcher (it is leaked here, and would keep
/// the watch for ever), and a task relocking is watched for. The close runs inside the
/// look's clone of the waker (the second clone: the first is the waker's registration).
#[test]
fn a_task_closed_out_before_its_look_does_not_take_the_watch() {
    use std::sync::OnceLock;
    use std::task::{RawWaker, RawWakerVTable};

    static GIL: OnceLock<&'static Gil> = OnceLock::new();
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    fn clone(_: *const ()) -> RawWaker {
        if CLONES.fetch_add(1, SeqCst) == 1 {
            drop(GIL.get().unwrap().close());
        }
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}

    let (gil, away, done, holder) = busy_after_letting_go();
    GIL.set(gil).unwrap();
    // SAFETY: every function of the table is sound for any data pointer (none reads it).
    let closing = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut closed_out = Box::pin(gil.acquire_async());
    let polled = closed_out.as_mut().poll(&mut Context::from_waker(&closing));
    assert!(polled.is_pending(), "the lock is held: the future waits");
    assert!(gil.is_closed(), "the close ran inside the first poll");
    std::mem::forget(closed_out);
    let got = got_the_lock(&mut relocking(away), done, holder);
    assert!(got, "a task closed out before its look took the watch");
}

/// Many tasks on two workers, each taking the lock in turn: every task's work is done once,
/// one at a time.
#[test]
fn many_tasks_share_the_lock_one_at_a_time() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let inside: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let count: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..100 {
                        let g = gil.acquire_async().await.unwrap();
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "one at a time");
                        count.fetch_add(1, SeqCst);
                        inside.fetch_sub(1, SeqCst);
                        drop(g);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(count.load(SeqCst), 6_400);
}

/// A future leaked while it waits leaves the lock counted as waited on; dropping the lock then
/// takes it off the clock's list, so the clock never reads it again (debug builds check that
/// a dropped lock is not listed).
#[test]
fn a_lock_dropped_under_a_leaked_waiting_future_is_never_listed() {
    let gil = Box::new(Gil::new());
    let (_, waker) = counting();
    let held = gil.acquire();
    let future = queued(&gil, &waker);
    std::mem::forget(future);
    drop(held);
    drop(gil);
    // Time for the clock to look at its list.
    thread::sleep(Duration::from_millis(20));
}

/// A future polled again after it gave its guard panics as such, even while its guard is kept
/// (the thread then holds the lock, which a poll would otherwise refuse as re-entry).
#[test]
fn a_future_polled_after_it_completed_says_so() {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let gil = gil_std::Gil::new();
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = Box::pin(gil.acquire_async());
    let std::task::Poll::Ready(Ok(guard)) = future.as_mut().poll(&mut cx) else {
        panic!("a free lock is taken at the first poll");
    };
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = future.as_mut().poll(&mut cx);
    }));
    let payload = again.expect_err("a second poll panics");
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert_eq!(message, "gil: an AcquireFuture polled after it completed");
    drop(guard);
}
