//! The safe API's holes and misuses, one test each: what safe code can do to a guard (leak
//! it, outlive the hold, take the lock back while holding it), what user code run by the lock
//! can do (a panicking pending call, a hook, an unblock function), and the bounds the lock
//! keeps (calls per checkpoint, requests per slice). Each fails, hangs or does not compile on
//! a lock without the check it names; docs/verification.md lists which.
//!
//! A misuse that used to hang runs on a thread of its own under a watchdog, so that a
//! regression fails the test instead of hanging the suite.
#![cfg(not(loom))]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, RefUnwindSafe, UnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Barrier, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use gil_std::{Event, Gil, GilCell, GilMutex};

mod common;
use common::wait_until;

/// A lock of its own for one test, never freed: a thread a failing test leaves behind may
/// still use it. With an hour's interval: neither the clock nor a waiting task asks its holder
/// to drop unless a test does, so that no timer runs a test's waker where it does not expect.
fn leaked_gil() -> &'static Gil {
    Box::leak(Box::new(Gil::with_switch_interval(
        Gil::MAX_SWITCH_INTERVAL,
    )))
}

/// Runs `f` on a thread of its own and fails if it does not finish within `secs` seconds
/// (the thread is left behind). Returns what `f` returned, or its panic's message.
fn within<R: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(&*p));
        let _ = done.send(outcome);
    });
    match finished.recv_timeout(Duration::from_secs(secs)) {
        Ok(outcome) => outcome,
        Err(_) => panic!("hung: {what} did not finish within {secs} s"),
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Whether another thread can take `gil` right now (it is free and nobody waits).
fn free_for_others(gil: &'static Gil) -> bool {
    thread::spawn(move || gil.try_acquire().is_some())
        .join()
        .unwrap()
}

#[test]
fn a_leaked_region_leaves_no_guard_behind() {
    // `unlock` takes the guard by value: forgetting the region forgets the guard too (the
    // compile-fail example on `GilGuard::unlock` shows the guard cannot be used after it).
    // The lock is then simply released, and another thread's hold stays its own.
    let gil = leaked_gil();
    std::mem::forget(gil.acquire().unlock());
    assert!(!gil.is_held_by_current_thread());
    let (held, release) = (mpsc::channel(), mpsc::channel::<()>());
    let holder = thread::spawn(move || {
        let _g = gil.acquire();
        held.0.send(()).unwrap();
        release.1.recv().unwrap();
    });
    held.1.recv().unwrap();
    assert!(gil.try_acquire().is_none(), "the other thread holds it");
    assert!(
        !free_for_others(gil),
        "nothing released the other thread's hold"
    );
    release.0.send(()).unwrap();
    holder.join().unwrap();
    assert!(free_for_others(gil));
}

#[test]
fn a_nested_guard_keeps_the_hold_it_nests_in() {
    let gil = leaked_gil();
    let outer = gil.acquire();
    let nested = gil.ensure();
    assert!(nested.is_nested());
    drop(outer);
    assert!(
        gil.is_held_by_current_thread(),
        "the nested guard still holds"
    );
    assert!(!free_for_others(gil));
    drop(nested);
    assert!(!gil.is_held_by_current_thread());
    assert!(free_for_others(gil));
}

#[test]
fn nested_guards_released_in_any_order_release_once() {
    static GIL: Gil = Gil::new();
    static COUNT: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    const ROUNDS: u64 = 2_000;
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..ROUNDS {
                    let a = GIL.ensure();
                    let b = GIL.ensure();
                    // Whichever goes first, the other still proves the hold.
                    let last = if i % 2 == 0 {
                        drop(a);
                        b
                    } else {
                        drop(b);
                        a
                    };
                    let count = COUNT.get(&last);
                    let seen = count.get();
                    thread::yield_now();
                    count.set(seen + 1);
                }
            });
        }
    });
    assert_eq!(
        COUNT.get(&GIL.acquire()).get(),
        2 * ROUNDS,
        "no update lost"
    );
}

#[test]
fn a_hand_over_under_nested_guards_starts_the_next_hold_afresh() {
    // The thread hands the lock over from a nested guard's checkpoint: the next holder's
    // single guard must end its hold, and the nested guards count again once the lock is back.
    let gil = leaked_gil();
    within(20, "a hand-over under nested guards", move || {
        let outer = gil.acquire();
        let mut nested = gil.ensure();
        let waiter = thread::spawn(move || drop(gil.acquire()));
        wait_until("the waiter to queue", || gil.has_waiters());
        gil.request_drop();
        nested.checkpoint().unwrap();
        waiter.join().unwrap();
        drop(outer);
        assert!(
            gil.is_held_by_current_thread(),
            "the nested guard still holds"
        );
        assert!(!free_for_others(gil));
        drop(nested);
        assert!(free_for_others(gil));
    })
    .unwrap();
}

#[test]
fn a_region_refuses_to_open_under_a_nested_guard() {
    let gil = leaked_gil();
    let outcome = within(10, "a region under a nested guard", move || {
        let mut outer = gil.acquire();
        let _nested = gil.ensure();
        outer.allow_threads(|| ());
    });
    let message = outcome.expect_err("the region must be refused");
    assert!(message.contains("other guards"), "{message}");
    assert!(free_for_others(gil), "both guards unwound: released");
}

#[test]
fn a_region_that_returns_a_guard_of_its_own_lock_panics() {
    let gil = leaked_gil();
    let outcome = within(10, "a region returning a guard", move || {
        let mut guard = gil.acquire();
        let _inner = guard.allow_threads(|| gil.acquire());
    });
    let message = outcome.expect_err("taking the lock back must be refused");
    assert!(message.contains("holding the same Gil"), "{message}");
    assert!(free_for_others(gil), "both guards unwound: released once");
    // And the lock still works on this thread.
    drop(gil.acquire());
}

#[test]
fn a_region_that_leaks_a_guard_of_its_own_lock_panics() {
    let gil = leaked_gil();
    let outcome = within(10, "a region leaking a guard", move || {
        let mut guard = gil.acquire();
        guard.allow_threads(|| std::mem::forget(gil.acquire()));
    });
    let message = outcome.expect_err("taking the lock back must be refused");
    assert!(message.contains("holding the same Gil"), "{message}");
    // The leaked guard's hold is leaked with it: the lock stays held, as a forgotten
    // `MutexGuard` keeps its mutex locked.
    assert!(!free_for_others(gil));
}

#[test]
fn relocking_while_holding_again_panics() {
    let gil = leaked_gil();
    let outcome = within(10, "relock while holding", move || {
        let away = gil.acquire().unlock();
        let _inner = gil.acquire();
        let _guard = away.relock();
    });
    let message = outcome.expect_err("relock must be refused");
    assert!(message.contains("relock()"), "{message}");
    assert!(free_for_others(gil));
}

#[test]
fn relocking_after_leaking_a_guard_panics() {
    let gil = leaked_gil();
    let outcome = within(10, "relock after leaking a guard", move || {
        let away = gil.acquire().unlock();
        std::mem::forget(gil.acquire());
        let _guard = away.relock();
    });
    let message = outcome.expect_err("relock must be refused");
    assert!(message.contains("relock()"), "{message}");
}

#[test]
fn a_panicking_pending_call_unwinds_through_the_guard_of_acquire() {
    for how in ["acquire", "try_acquire", "try_acquire_for"] {
        let gil = leaked_gil();
        gil.add_pending_call(|_| panic!("the call fails")).unwrap();
        let outcome = within(10, how, move || match how {
            "acquire" => drop(gil.acquire()),
            "try_acquire" => drop(gil.try_acquire()),
            _ => drop(gil.try_acquire_for(Duration::from_secs(1))),
        });
        assert_eq!(outcome, Err("the call fails".to_owned()), "{how}");
        assert!(free_for_others(gil), "{how}: the lock was released");
        drop(gil.acquire());
    }
}

#[test]
fn a_panic_under_a_mutex_guard_passes_the_lock_on() {
    let mutex: &'static GilMutex<u32> = Box::leak(Box::new(GilMutex::new(0)));
    let outcome = within(10, "GilMutex::lock", move || {
        let _guard = mutex.lock();
        panic!("the work fails");
    });
    assert_eq!(outcome, Err("the work fails".to_owned()));
    let other = thread::spawn(move || mutex.try_lock_for(Duration::from_secs(5)).map(|g| *g));
    assert_eq!(
        other.join().unwrap(),
        Some(0),
        "released, and nothing written"
    );
}

#[test]
fn a_mutex_locked_again_by_its_holder_panics_instead_of_waiting_for_itself() {
    let mutex: &'static GilMutex<u32> = Box::leak(Box::new(GilMutex::new(0)));
    let outcome = within(10, "GilMutex::lock twice", move || {
        let _held = mutex.lock();
        let _again = mutex.lock();
    });
    assert_eq!(
        outcome,
        Err("gil: a GilMutex locked again by the thread that holds it".to_owned())
    );
    assert!(
        mutex.try_lock().is_some(),
        "the first guard's unwinding let go"
    );
}

#[test]
fn a_hook_that_changes_the_interval_on_a_drop_request_hangs_nothing() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_millis(
        1,
    ))));
    static SEEN: AtomicU32 = AtomicU32::new(0);
    gil.set_event_hook(Some(&|gil, event| {
        if event == Event::DropRequested {
            SEEN.fetch_add(1, SeqCst);
            gil.set_switch_interval(Duration::from_millis(2)).unwrap();
        }
    }));
    within(20, "a preempted holder and its waiter", move || {
        let mut guard = gil.acquire();
        let waiter = thread::spawn(move || drop(gil.acquire()));
        wait_until("the waiter to queue", || gil.has_waiters());
        // No checkpoint meanwhile: only the clock can ask for the lock.
        wait_until("the clock to ask", || gil.stats().clock_requests > 0);
        while !waiter.is_finished() {
            guard.checkpoint().unwrap();
        }
        drop(guard);
    })
    .unwrap();
    assert!(
        SEEN.load(SeqCst) >= 1,
        "the holder reported the clock's request"
    );
    // The clock still works, for every lock: a holder that never checkpoints is asked.
    let other: &'static Gil = Box::leak(Box::new(Gil::new()));
    within(20, "the clock on another lock", move || {
        let held = other.acquire();
        let waiter = thread::spawn(move || drop(other.acquire()));
        wait_until("the clock to ask", || other.stats().clock_requests > 0);
        drop(held);
        waiter.join().unwrap();
    })
    .unwrap();
}

thread_local! {
    /// The hooks below act only on the thread that sets this: the holder about to hand over.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static KEPT: std::cell::RefCell<Option<gil_std::EnsureGuard<'static>>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn a_hook_cannot_take_the_lock_it_reports_on() {
    // The hook runs while its thread hands the lock over and is queued for it again: taking
    // the lock there would wait for itself.
    let gil = leaked_gil();
    static REFUSED: AtomicBool = AtomicBool::new(false);
    gil.set_event_hook(Some(&|gil, event| {
        if event == Event::Wants && ARMED.with(Cell::get) {
            let took = catch_unwind(AssertUnwindSafe(|| drop(gil.ensure())));
            REFUSED.store(took.is_err(), SeqCst);
        }
    }));
    within(20, "a hand-over whose hook takes the lock", move || {
        let mut guard = gil.acquire();
        let waiter = thread::spawn(move || drop(gil.acquire()));
        wait_until("the waiter to queue", || gil.has_waiters());
        ARMED.with(|a| a.set(true));
        assert!(guard.hand_over());
        ARMED.with(|a| a.set(false));
        drop(guard);
        waiter.join().unwrap();
    })
    .unwrap();
    assert!(REFUSED.load(SeqCst), "the hook's acquire was refused");
    assert!(free_for_others(gil));
}

#[test]
fn a_hook_cannot_take_its_lock_even_when_free() {
    // A thread's start is reported without the lock: a guard taken there would be taken
    // inside the hook all the same, which is refused, and the lock is left free.
    let gil = leaked_gil();
    static REFUSED: AtomicBool = AtomicBool::new(false);
    gil.set_event_hook(Some(&|gil, event| {
        if event == Event::ThreadStarted {
            let took = catch_unwind(AssertUnwindSafe(|| drop(gil.try_acquire())));
            REFUSED.store(took.is_err(), SeqCst);
        }
    }));
    within(20, "a hook that takes a free lock", move || {
        drop(gil.register_thread());
    })
    .unwrap();
    gil.set_event_hook(None);
    assert!(REFUSED.load(SeqCst), "the hook's try_acquire was refused");
    assert!(free_for_others(gil));
}

/// Runs `f` while another thread holds `gil`; that thread then runs `then` with its guard
/// and lets go.
fn while_another_holds<R>(
    gil: &Gil,
    then: impl FnOnce(&gil_std::GilGuard<'_>) + Send,
    f: impl FnOnce() -> R,
) -> R {
    let (held, done) = (Barrier::new(2), Barrier::new(2));
    thread::scope(|s| {
        s.spawn(|| {
            let g = gil.acquire();
            held.wait();
            done.wait();
            then(&g);
        });
        held.wait(); // the other thread holds the lock
        let result = f();
        done.wait();
        result
    })
}

thread_local! {
    /// A guard of the tests below, kept where a nested region's closure can reach it.
    static OUTER: std::cell::RefCell<Option<gil_std::GilGuard<'static>>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn a_guard_kept_in_a_thread_local_proves_nothing_in_a_nested_region() {
    // The closure of `EnsureGuard::allow_threads` is `Send`, so it captures neither guards
    // nor references to what a cell holds; a guard it finds in a thread-local must be refused,
    // since another thread holds the lock meanwhile. Dropping it is counted against the hold
    // set aside, which then ends with the region's guard.
    static GIL: Gil = Gil::new();
    static COUNT: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    let outcome = within(
        20,
        "a nested region that reads through a kept guard",
        || {
            OUTER.with(|o| *o.borrow_mut() = Some(GIL.acquire()));
            let mut inner = GIL.ensure();
            // SAFETY: not kept, on purpose: the closure reaches a guard of this hold through a
            // thread-local, and the test shows that the lock refuses a read through it, and
            // counts its drop against the hold set aside without touching the other thread's.
            let refused = unsafe {
                inner.allow_threads(|| {
                    let bump = |g: &gil_std::GilGuard<'_>| COUNT.get(g).set(COUNT.get(g).get() + 1);
                    while_another_holds(&GIL, bump, || {
                        let read = catch_unwind(|| {
                            OUTER.with(|o| COUNT.get(o.borrow().as_ref().unwrap()).get())
                        });
                        let dropped = catch_unwind(|| drop(OUTER.with(|o| o.borrow_mut().take())));
                        let still_held = GIL.try_acquire().is_none();
                        (read.is_err(), dropped.is_ok(), still_held)
                    })
                })
            };
            assert!(GIL.is_held_by_current_thread(), "the region's guard holds");
            drop(inner);
            assert!(
                !GIL.is_held_by_current_thread(),
                "the hold ended with its last guard"
            );
            refused
        },
    );
    assert_eq!(
        outcome,
        Ok((true, true, true)),
        "(read refused, drop counted, the other hold untouched)"
    );
}

#[test]
fn a_guard_kept_in_a_thread_local_cannot_checkpoint_in_a_nested_region() {
    // As above, with a checkpoint through the kept guard while another thread holds the lock:
    // with a drop request pending, the checkpoint takes its slow path, which would hand over a
    // lock this thread does not hold. It must be refused.
    static GIL: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    let outcome = within(20, "a nested region that checkpoints a kept guard", || {
        OUTER.with(|o| *o.borrow_mut() = Some(GIL.acquire()));
        let mut inner = GIL.ensure();
        // SAFETY: not kept, on purpose, as in the test above.
        let refused = unsafe {
            inner.allow_threads(|| {
                while_another_holds(
                    &GIL,
                    |_| {},
                    || {
                        GIL.request_drop();
                        let checked = catch_unwind(AssertUnwindSafe(|| {
                            OUTER.with(|o| o.borrow_mut().as_mut().unwrap().checkpoint())
                        }));
                        let still_held = GIL.try_acquire().is_none();
                        (checked.is_err(), still_held)
                    },
                )
            })
        };
        OUTER.with(|o| drop(o.borrow_mut().take()));
        drop(inner);
        refused
    });
    assert_eq!(
        outcome,
        Ok((true, true)),
        "(checkpoint refused, the other hold untouched)"
    );
    assert!(free_for_others(&GIL));
}

#[test]
fn a_region_is_refused_only_for_guards_of_its_own_lock_set_aside() {
    // This thread's hold of B is set aside (a nested guard's region) with a guard of it
    // alive, and another thread's hold of A is set aside too (a hand-over under a nested
    // guard). A region of A that this thread opens meanwhile has no other guard of A on this
    // thread: it must not be refused for B's.
    let (a, b) = (leaked_gil(), leaked_gil());
    let outcome = within(
        20,
        "a region of one lock beside another set aside",
        move || {
            let (holding, held) = mpsc::channel();
            let other = thread::spawn(move || {
                let mut outer = a.acquire();
                let nested = a.ensure();
                holding.send(()).unwrap();
                wait_until("the first thread to queue", || a.has_waiters());
                assert!(outer.hand_over(), "handed over under a nested guard");
                drop(nested);
            });
            held.recv().unwrap();
            let _outer = b.acquire();
            let mut nested = b.ensure();
            // SAFETY: the region reaches nothing borrowed under B.
            let refused = unsafe {
                nested.allow_threads(|| {
                    let mut guard = a.acquire();
                    catch_unwind(AssertUnwindSafe(|| guard.allow_threads(|| ()))).is_err()
                })
            };
            other.join().unwrap();
            refused
        },
    );
    assert_eq!(outcome, Ok(false), "a region of A refused for B's guards");
}

#[test]
fn a_hook_may_drop_a_guard_of_its_hold_which_then_ends_with_its_last() {
    // A nested guard kept in a thread-local, dropped by the hook as its thread hands the lock
    // over: hooks run while the hold is whole (before its guards are set aside), so the drop
    // is counted, and the hold ends with its last guard, not later and not sooner.
    static GIL: Gil = Gil::new();
    static COUNT: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    static DROPPED: AtomicBool = AtomicBool::new(false);
    GIL.set_event_hook(Some(&|_, event| {
        if event == Event::Released && ARMED.with(Cell::get) {
            let dropped = catch_unwind(|| drop(KEPT.with(|k| k.borrow_mut().take())));
            DROPPED.store(dropped.is_ok(), SeqCst);
        }
    }));
    within(20, "a hand-over whose hook drops a guard", || {
        let mut guard = GIL.acquire();
        KEPT.with(|k| *k.borrow_mut() = Some(GIL.ensure()));
        let other = thread::spawn(|| {
            let g = GIL.acquire();
            let seen = COUNT.get(&g).get();
            thread::sleep(Duration::from_millis(20));
            COUNT.get(&g).set(seen + 1);
        });
        wait_until("the other thread to queue", || GIL.has_waiters());
        ARMED.with(|a| a.set(true));
        assert!(guard.hand_over());
        ARMED.with(|a| a.set(false));
        // Back only once the other thread's hold is over.
        assert_eq!(COUNT.get(&guard).get(), 1, "the other hold ran whole");
        other.join().unwrap();
        assert!(GIL.is_held_by_current_thread());
        drop(guard);
        assert!(!GIL.is_held_by_current_thread());
    })
    .unwrap();
    GIL.set_event_hook(None);
    assert!(DROPPED.load(SeqCst), "the hook's drop went through");
    assert!(
        free_for_others(&GIL),
        "the hold did not end with its last guard"
    );
}

#[test]
fn a_call_that_queues_itself_again_runs_once_per_checkpoint() {
    static GIL: Gil = Gil::new();
    static RUNS: AtomicU32 = AtomicU32::new(0);
    fn again(_: &gil_std::GilGuard<'_>) {
        if RUNS.fetch_add(1, SeqCst) < 1_000 {
            GIL.add_pending_call(again).unwrap();
        }
    }
    let mut guard = GIL.acquire();
    GIL.add_pending_call(again).unwrap();
    guard.checkpoint().unwrap();
    assert_eq!(
        RUNS.load(SeqCst),
        1,
        "only the call queued when the checkpoint began"
    );
    guard.checkpoint().unwrap();
    assert_eq!(RUNS.load(SeqCst), 2);
    drop(guard);
    drop(GIL.close());
}

#[test]
fn the_clock_asks_once_while_its_request_is_unanswered() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
        Gil::MIN_SWITCH_INTERVAL,
    )));
    let held = gil.acquire();
    let waiter = thread::spawn(move || drop(gil.acquire()));
    wait_until("the clock to ask", || gil.stats().clock_requests > 0);
    // A hundred intervals (at least) without a checkpoint: nothing is asked again.
    thread::sleep(Gil::MIN_SWITCH_INTERVAL * 100 + Duration::from_millis(5));
    assert_eq!(gil.stats().clock_requests, 1);
    drop(held);
    waiter.join().unwrap();
}

#[test]
fn an_unblock_function_may_interrupt_its_own_thread() {
    static GIL: Gil = Gil::new();
    within(20, "an unblock function that interrupts again", || {
        let mut guard = GIL.acquire();
        let handle = GIL.interrupt_handle();
        let again = handle.clone();
        let (wake, wait) = mpsc::channel::<()>();
        let interrupter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            handle.interrupt();
        });
        guard.allow_threads_with_unblock(
            || wait.recv().unwrap(),
            || {
                again.interrupt(); // merges into the call under way
                let _ = wake.send(());
            },
        );
        assert!(guard.checkpoint().is_err());
        assert!(guard.checkpoint().is_ok(), "one interrupt, reported once");
        interrupter.join().unwrap();
    })
    .unwrap();
}

#[test]
fn the_lock_is_unwind_safe_as_a_std_mutex_is() {
    fn unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}
    unwind_safe::<Gil>();
    let gil = Gil::new();
    // No `AssertUnwindSafe` needed.
    let caught = catch_unwind(|| {
        let _g = gil.acquire();
        panic!("in the hold");
    });
    assert!(caught.is_err());
    assert!(gil.try_acquire().is_some(), "released on unwinding");
}

/// A program's steps, run by `within`, that a hook of another lock may reach: a guard of the
/// first lock taken by that hook, if any, is kept here.
mod hooks_of_two_locks {
    use std::cell::RefCell;

    thread_local! {
        pub static KEPT: RefCell<Option<gil_std::EnsureGuard<'static>>> =
            const { RefCell::new(None) };
    }
}

#[test]
fn a_hook_of_another_lock_run_inside_a_hook_cannot_take_the_first() {
    // A's hook takes B as A is released; B's hook then runs inside A's and tries to keep a
    // guard of A. A's release is under way (its count of guards was read before its hook
    // ran), so that guard would outlive the hold it joined.
    use hooks_of_two_locks::KEPT;
    let (a, b) = (leaked_gil(), leaked_gil());
    let outcome = within(20, "hooks of two locks", move || {
        let me = thread::current().id();
        let hook_a: &'static gil_std::EventHook = Box::leak(Box::new(move |_: &Gil, event| {
            if event == Event::Released && thread::current().id() == me {
                drop(b.acquire());
            }
        }));
        let hook_b: &'static gil_std::EventHook = Box::leak(Box::new(move |_: &Gil, event| {
            if event == Event::Got && thread::current().id() == me {
                KEPT.with(|k| *k.borrow_mut() = Some(a.ensure()));
            }
        }));
        a.set_event_hook(Some(hook_a));
        b.set_event_hook(Some(hook_b));
        drop(a.acquire());
        a.set_event_hook(None);
        b.set_event_hook(None);
        let kept = KEPT.with(|k| k.borrow_mut().take());
        let was_kept = kept.is_some();
        // A guard kept there proves nothing: leaked rather than dropped, so that its drop
        // cannot end a hold either.
        std::mem::forget(kept);
        was_kept
    });
    assert_eq!(
        outcome,
        Ok(false),
        "a hook kept a guard of a lock whose release was under way"
    );
    // The next hold of A ends with its guard, on another thread and on this one.
    assert!(free_for_others(a));
    drop(a.acquire());
    assert!(
        free_for_others(a),
        "a later hold of A did not end with its guard"
    );
}

#[test]
fn a_lock_moved_from_under_a_leaked_future_is_not_acted_on_where_it_was() {
    // A future leaked while it waits borrows nothing any more: its lock may be moved out of
    // its place and dropped, and another lock put there. Nothing may act on the new lock on
    // the old one's behalf: here, one with an interval of 400 ms must get no drop request
    // within 300 ms of its waiter's queueing. A listing left behind would be looked at with the
    // new lock's interval, an eighth of it apart once an interval and a quarter has passed
    // since the clock's epoch (a look at a lock never switched is timed from there): so the
    // new lock comes 400 ms after the old one's, and such a look asks within 100 ms.
    use std::future::Future;
    use std::task::{Context, Waker};

    let slot: &'static mut Option<Gil> = Box::leak(Box::new(Some(Gil::with_switch_interval(
        Gil::MIN_SWITCH_INTERVAL,
    ))));
    {
        let old = slot.as_ref().unwrap();
        // Granted to the leaked future once the other thread lets go: it keeps the lock for good.
        while_another_holds(
            old,
            |_| {},
            || {
                let mut future = Box::pin(old.acquire_async());
                let pending = future
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
                assert!(pending.is_pending(), "queued behind the holder");
                std::mem::forget(future);
            },
        );
    }
    thread::sleep(Duration::from_millis(400));
    let moved = slot.take().unwrap();
    let new = slot.insert(Gil::with_switch_interval(Duration::from_millis(400)));
    drop(moved);
    let new: &Gil = new;
    let waiter_in = AtomicBool::new(false);
    thread::scope(|s| {
        let mut g = new.acquire();
        s.spawn(|| {
            drop(new.acquire());
            waiter_in.store(true, SeqCst);
        });
        wait_until("the waiter to queue", || new.has_waiters());
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until && !waiter_in.load(SeqCst) {
            g.checkpoint().unwrap();
        }
        assert!(
            !waiter_in.load(SeqCst),
            "the holder of a lock with an interval of 400 ms handed over within 300 ms"
        );
        assert_eq!(new.stats().clock_requests, 0, "a drop request nobody made");
        drop(g);
    });
}

#[test]
fn a_blocking_region_refused_for_a_nested_guard_leaves_its_guard_whole() {
    // The refusal comes before the guard is taken apart: unwinding drops it as any guard, and
    // the lock is released once the nested guard goes too.
    let gil = leaked_gil();
    within(10, "a refused region", move || {
        let g = gil.acquire();
        let nested = gil.ensure();
        let refused = catch_unwind(AssertUnwindSafe(move || drop(g.unlock())));
        assert!(refused.is_err(), "a region under a nested guard opened");
        drop(nested);
        assert!(!gil.is_held_by_current_thread());
        let g = gil.acquire();
        let nested = gil.ensure();
        let refused = catch_unwind(AssertUnwindSafe(move || drop(g.unlock_for_await())));
        assert!(
            refused.is_err(),
            "an async region under a nested guard opened"
        );
        drop(nested);
        assert!(!gil.is_held_by_current_thread());
    })
    .unwrap();
    assert!(free_for_others(gil), "the refused guard was leaked");
}

/// A task's waker that polls its future inline, as some executors and test harnesses do, and
/// keeps the guard it gets (on its thread) or drops it at once.
mod inline_waker {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    use gil_std::{AcquireFuture, GilGuard};

    thread_local! {
        pub static KEPT: RefCell<Vec<GilGuard<'static>>> = const { RefCell::new(Vec::new()) };
    }

    pub struct PollInline {
        pub future: Mutex<Option<Pin<Box<AcquireFuture<'static>>>>>,
        pub keep: bool,
        pub got: AtomicBool,
    }

    impl PollInline {
        pub fn new(keep: bool) -> Arc<Self> {
            Arc::new(Self {
                future: Mutex::new(None),
                keep,
                got: AtomicBool::new(false),
            })
        }

        /// Polls the future once, on the calling thread.
        pub fn poll(self: &Arc<Self>) {
            let Some(mut future) = self.future.lock().unwrap().take() else {
                return;
            };
            let waker = Waker::from(self.clone());
            match future.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(guard) => {
                    let guard = guard.expect("not closed");
                    self.got.store(true, SeqCst);
                    if self.keep {
                        KEPT.with(|k| k.borrow_mut().push(guard));
                    }
                }
                Poll::Pending => *self.future.lock().unwrap() = Some(future),
            }
        }
    }

    impl Wake for PollInline {
        fn wake(self: Arc<Self>) {
            self.poll();
        }
    }
}

/// The holder hands the lock to a future queued behind it, whose waker polls it inline on the
/// holder's thread, in the middle of the hand-over.
fn hand_over_to_an_inline_waker(gil: &'static Gil, keep: bool) -> Result<bool, String> {
    use inline_waker::PollInline;
    let task = PollInline::new(keep);
    let mut g = gil.acquire();
    {
        let task = task.clone();
        thread::spawn(move || {
            *task.future.lock().unwrap() = Some(Box::pin(gil.acquire_async()));
            task.poll();
        })
        .join()
        .unwrap();
    }
    assert!(gil.has_waiters(), "the future is in line");
    gil.request_drop();
    let checkpoint = catch_unwind(AssertUnwindSafe(|| g.checkpoint().unwrap()));
    drop(g);
    inline_waker::KEPT.with(|k| k.borrow_mut().clear());
    assert!(task.got.load(SeqCst), "the future was handed the lock");
    checkpoint
        .map(|()| gil.is_held_by_current_thread())
        .map_err(|p| message(&*p))
}

#[test]
fn a_waker_that_polls_inline_and_drops_its_guard_lets_the_checkpoint_go_on() {
    let gil = leaked_gil();
    let outcome = within(20, "a hand-over to an inline waker", move || {
        hand_over_to_an_inline_waker(gil, false)
    });
    assert_eq!(outcome, Ok(Ok(false)), "the checkpoint came back holding");
    assert!(free_for_others(gil));
}

#[test]
fn a_waker_that_polls_inline_and_keeps_its_guard_makes_the_checkpoint_panic() {
    let gil = leaked_gil();
    let outcome = within(20, "a hand-over to an inline waker", move || {
        hand_over_to_an_inline_waker(gil, true)
    });
    let message = outcome
        .unwrap()
        .expect_err("the checkpoint must be refused");
    assert!(message.contains("waits for itself"), "{message}");
    assert!(free_for_others(gil), "both guards dropped: released");
}

/// A waker that reads a cell through a guard kept in a thread-local, where it may find a guard
/// of a hold its thread has set aside.
mod reading_waker {
    use std::cell::{Cell, RefCell};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::task::Wake;

    use gil_std::{EnsureGuard, GilCell};

    thread_local! {
        pub static KEPT: RefCell<Option<EnsureGuard<'static>>> = const { RefCell::new(None) };
    }

    /// What the waker saw: 0 not woken, 1 the read refused, 2 the read allowed.
    pub struct Reading {
        pub cell: &'static GilCell<'static, Cell<u64>>,
        pub seen: AtomicU32,
        pub poller: std::thread::Thread,
    }

    impl Wake for Reading {
        fn wake(self: Arc<Self>) {
            let read = catch_unwind(AssertUnwindSafe(|| {
                KEPT.with(|k| k.borrow().as_ref().map(|g| self.cell.get(g).get()))
            }));
            if let Ok(Some(_)) | Err(_) = read {
                let seen = if read.is_ok() { 2 } else { 1 };
                let _ = self.seen.compare_exchange(0, seen, SeqCst, SeqCst);
            }
            self.poller.unpark();
        }
    }
}

#[test]
fn a_guard_set_aside_by_a_hand_over_proves_nothing_to_a_waker_on_its_thread() {
    // The holder has a nested guard kept in a thread-local and hands the lock to a future:
    // the future's waker runs on the holder's thread while the future's task may already
    // hold the lock elsewhere, and must not reach the cell through the kept guard.
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use reading_waker::{KEPT, Reading};

    static GIL: Gil = Gil::new();
    static COUNT: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    let outcome = within(20, "a hand-over to a future under a kept guard", || {
        let mut g = GIL.acquire();
        KEPT.with(|k| *k.borrow_mut() = Some(GIL.ensure()));
        let (queued, queued_rx) = mpsc::channel();
        let (reading, reading_rx) = mpsc::channel();
        let poller = thread::spawn(move || {
            let waker_state = Arc::new(Reading {
                cell: &COUNT,
                seen: AtomicU32::new(0),
                poller: thread::current(),
            });
            reading.send(waker_state.clone()).unwrap();
            let waker = Waker::from(waker_state);
            let mut future = std::pin::pin!(GIL.acquire_async());
            let mut cx = Context::from_waker(&waker);
            let mut first = true;
            let guard = loop {
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(guard) => break guard.unwrap(),
                    Poll::Pending if first => {
                        first = false;
                        queued.send(()).unwrap();
                    }
                    Poll::Pending => thread::park(),
                }
            };
            COUNT.get(&guard).set(COUNT.get(&guard).get() + 1);
        });
        let reading = reading_rx.recv().unwrap();
        queued_rx.recv().unwrap();
        GIL.request_drop();
        g.checkpoint().unwrap();
        poller.join().unwrap();
        drop(KEPT.with(|k| k.borrow_mut().take()));
        assert_eq!(COUNT.get(&g).get(), 1, "the future's hold ran");
        reading.seen.load(SeqCst)
    });
    assert_ne!(
        outcome,
        Ok(2),
        "the waker read through a guard of a hold set aside (1: refused, 0: not on that thread)"
    );
}

/// A task's waker that, woken on the holder's thread in the middle of its hand-over, waits for
/// the lock itself: its thread is already waiting for it there.
mod waiting_waker {
    use std::sync::Arc;
    use std::task::Wake;

    use gil_std::Gil;

    pub struct Acquiring(pub &'static Gil);

    impl Wake for Acquiring {
        fn wake(self: Arc<Self>) {
            drop(self.0.acquire());
        }
    }
}

/// Runs `scenario` in a child process (this test binary, running only `test`), and returns
/// its standard error once it ended on its own, or panics if it did not within 20 s.
fn in_child_process(test: &str, scenario: impl FnOnce()) -> Option<(bool, String)> {
    use std::process::{Command, Stdio};
    const CHILD: &str = "GIL_SOUNDNESS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        scenario();
        return None;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > give_up {
            let _ = child.kill();
            panic!("hung: the child process running {test} did not end within 20 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_waker_that_waits_for_the_lock_its_thread_hands_over_is_refused() {
    // Woken on the holder's thread, inside its checkpoint's hand-over, the waker would queue
    // behind its own thread's wait: the lock would go to that wait, which can never take it.
    // The waker's panic cannot unwind through the hand-over: the process aborts, with the
    // message first.
    let ended = in_child_process(
        "a_waker_that_waits_for_the_lock_its_thread_hands_over_is_refused",
        || {
            use std::future::Future;
            use std::sync::Arc;
            use std::task::{Context, Waker};

            let gil = leaked_gil();
            let mut g = gil.acquire();
            thread::spawn(move || {
                let waker = Waker::from(Arc::new(waiting_waker::Acquiring(gil)));
                let mut future = Box::pin(gil.acquire_async());
                let pending = future.as_mut().poll(&mut Context::from_waker(&waker));
                assert!(pending.is_pending());
                std::mem::forget(future);
            })
            .join()
            .unwrap();
            gil.request_drop();
            g.checkpoint().unwrap();
        },
    );
    if let Some((success, stderr)) = ended {
        assert!(!success, "the child went on: {stderr}");
        assert!(stderr.contains("waiting for it already"), "{stderr}");
    }
}

// What an outside red team found in the lock's handling of the code it runs: wakers, hooks,
// unblock functions and destructors, on the thread of a hold that is half-way through a change.

/// A panic payload whose own drop panics.
struct DropPanics;

impl Drop for DropPanics {
    fn drop(&mut self) {
        panic!("the payload's drop panics");
    }
}

/// A task's waker that calls a function of its own when woken.
struct WakeWith<F: Fn() + Send + Sync + 'static>(F);

impl<F: Fn() + Send + Sync + 'static> std::task::Wake for WakeWith<F> {
    fn wake(self: std::sync::Arc<Self>) {
        (self.0)();
    }
}

fn waker_with(f: impl Fn() + Send + Sync + 'static) -> std::task::Waker {
    std::task::Waker::from(std::sync::Arc::new(WakeWith(f)))
}

/// Queues a future for `gil` on another thread, woken with `waker`, and leaves it queued.
fn queue_a_future(gil: &'static Gil, waker: std::task::Waker) {
    use std::future::Future;
    use std::task::Context;
    thread::spawn(move || {
        let mut future = Box::pin(gil.acquire_async());
        let pending = future.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(pending.is_pending(), "queued behind the holder");
        std::mem::forget(future);
    })
    .join()
    .unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_waker_whose_panic_cannot_be_dropped_aborts_inside_the_hand_over() {
    // The waker panics with a payload whose drop panics too: the panic must not unwind out of
    // the hand-over, where the lock is already the task's.
    let ended = in_child_process(
        "a_waker_whose_panic_cannot_be_dropped_aborts_inside_the_hand_over",
        || {
            let gil = leaked_gil();
            let mut g = gil.acquire();
            queue_a_future(gil, waker_with(|| std::panic::panic_any(DropPanics)));
            let yielded = catch_unwind(AssertUnwindSafe(|| g.hand_over()));
            // Not reached: the process aborted in the hand-over.
            std::process::exit(if yielded.is_ok() { 3 } else { 4 });
        },
    );
    if let Some((success, stderr)) = ended {
        assert!(!success, "the hand-over went on: {stderr}");
        assert!(stderr.contains("waker panicked"), "{stderr}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_holder_that_closes_the_lock_wakes_no_inline_poller_on_its_thread() {
    // A holder may close its lock. The futures closed out are woken; one whose waker polls it
    // inline must not be polled on the holder's thread, where the poll's re-entry check would
    // panic inside the close's wake, which cannot unwind (the process would abort).
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    struct PollsInline {
        future: Mutex<Option<Pin<Box<gil_std::AcquireFuture<'static>>>>>,
        closed: AtomicBool,
    }

    impl Wake for PollsInline {
        fn wake(self: Arc<Self>) {
            let Some(mut future) = self.future.lock().unwrap().take() else {
                return;
            };
            let waker = Waker::from(self.clone());
            match future.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(got) => self.closed.store(got.is_err(), SeqCst),
                Poll::Pending => *self.future.lock().unwrap() = Some(future),
            }
        }
    }

    let ended = in_child_process(
        "a_holder_that_closes_the_lock_wakes_no_inline_poller_on_its_thread",
        || {
            let gil = leaked_gil();
            let held = gil.acquire();
            let task = Arc::new(PollsInline {
                future: Mutex::new(Some(Box::pin(gil.acquire_async()))),
                closed: AtomicBool::new(false),
            });
            let first = task.clone();
            thread::spawn(move || first.wake()).join().unwrap();
            assert!(gil.has_waiters(), "the future is in line");
            drop(gil.close());
            wait_until("the future to be closed out", || task.closed.load(SeqCst));
            drop(held);
        },
    );
    if let Some((success, stderr)) = ended {
        assert!(success, "the close aborted: {stderr}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_hook_panic_reported_to_a_closed_stderr_stays_in_the_hook() {
    // The report of a hook's panic goes to standard error; with it closed, writing fails, and
    // that failure must not unwind out of the hand-over the hook reported on.
    use std::process::{Command, Stdio};
    const CHILD: &str = "GIL_SOUNDNESS_CLOSED_STDERR";
    if std::env::var_os(CHILD).is_some() {
        let gil = leaked_gil();
        let me = thread::current().id();
        gil.set_event_hook(Some(Box::leak(Box::new(move |_: &Gil, event| {
            if event == Event::Wants && thread::current().id() == me {
                panic!("the hook panics");
            }
        }))));
        let mut g = gil.acquire();
        let other = thread::spawn(move || drop(gil.acquire()));
        wait_until("the other thread to queue", || gil.has_waiters());
        let yielded = catch_unwind(AssertUnwindSafe(|| g.hand_over()));
        let held = gil.is_held_by_current_thread();
        drop(g);
        other.join().unwrap();
        std::process::exit(if yielded.is_ok() && held { 0 } else { 5 });
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_hook_panic_reported_to_a_closed_stderr_stays_in_the_hook",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take()); // closed: every write to it fails
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > give_up {
            let _ = child.kill();
            panic!("hung: the child with a closed stderr did not end within 20 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the hand-over did not come back holding: {status:?}"
    );
}

#[test]
fn a_hook_drops_a_guard_of_its_hold_after_another_thread_removed_it() {
    // The hook is being removed by another thread while it runs: what it does is still
    // counted against its thread's hold.
    static GIL: Gil = Gil::new();
    static REMOVE: AtomicBool = AtomicBool::new(false);
    static REMOVED: AtomicBool = AtomicBool::new(false);
    GIL.set_event_hook(Some(&|_, event| {
        if event == Event::Released && ARMED.with(Cell::get) {
            if let Some(kept) = KEPT.with(|k| k.borrow_mut().take()) {
                REMOVE.store(true, SeqCst);
                wait_until("the hook removed", || REMOVED.load(SeqCst));
                drop(kept);
            }
        }
    }));
    let remover = thread::spawn(|| {
        wait_until("asked to remove the hook", || REMOVE.load(SeqCst));
        GIL.set_event_hook(None);
        REMOVED.store(true, SeqCst);
    });
    within(20, "a hand-over whose hook is removed", || {
        let mut guard = GIL.acquire();
        KEPT.with(|k| *k.borrow_mut() = Some(GIL.ensure()));
        let other = thread::spawn(|| drop(GIL.acquire()));
        wait_until("the other thread to queue", || GIL.has_waiters());
        ARMED.with(|a| a.set(true));
        assert!(guard.hand_over(), "handed over");
        ARMED.with(|a| a.set(false));
        assert!(GIL.is_held_by_current_thread(), "back holding");
        other.join().unwrap();
        drop(guard);
    })
    .unwrap();
    remover.join().unwrap();
    assert!(
        free_for_others(&GIL),
        "the hold did not end with its last guard"
    );
}

/// A leaked guard's reference into a cell, kept where a hook or a waker on its thread can
/// reach it, and what such code saw: whether it ever ran on that thread while the thread did
/// not hold the lock.
mod reachable {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use gil_std::Gil;

    thread_local! {
        pub static DATA: Cell<Option<&'static Cell<u64>>> = const { Cell::new(None) };
    }

    pub static WITHOUT_THE_LOCK: AtomicBool = AtomicBool::new(false);

    /// Called by user code the lock runs: notes if the calling thread can reach the data
    /// while it does not hold `gil`.
    pub fn look(gil: &Gil) {
        if DATA.with(Cell::get).is_some() && !gil.is_held_by_current_thread() {
            WITHOUT_THE_LOCK.store(true, SeqCst);
        }
    }
}

#[test]
fn no_code_of_the_users_runs_on_a_thread_whose_hold_is_elsewhere_with_guards_it_can_reach() {
    // A nested guard leaked gives a `'static` reference into a cell; the hold it belongs to is
    // then handed over (a yield under that guard), or set aside (a `Blocking` helper on an
    // `EnsureGuard`). A hook or a waker run on the thread meanwhile could use the reference
    // while another thread holds the lock: none may run then.
    static GIL: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    static COUNT: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    GIL.set_event_hook(Some(&|gil, _| reachable::look(gil)));
    within(20, "a hand-over and a region under a leaked guard", || {
        let mut g = GIL.acquire();
        let leaked: &'static gil_std::EnsureGuard<'static> = Box::leak(Box::new(GIL.ensure()));
        reachable::DATA.with(|d| d.set(Some(COUNT.get(leaked))));
        // A future whose waker the hand-over wakes: it looks from wherever it runs, then polls
        // the future there and lets the lock go at once.
        let task = inline_waker::PollInline::new(false);
        {
            let task = task.clone();
            thread::spawn(move || {
                *task.future.lock().unwrap() = Some(Box::pin(GIL.acquire_async()));
                let woken = task.clone();
                let waker = waker_with(move || {
                    reachable::look(&GIL);
                    woken.poll();
                });
                let future = task.future.lock().unwrap().take();
                let mut future = future.unwrap();
                let pending = std::future::Future::poll(
                    future.as_mut(),
                    &mut std::task::Context::from_waker(&waker),
                );
                assert!(pending.is_pending(), "queued behind the holder");
                *task.future.lock().unwrap() = Some(future);
            })
            .join()
            .unwrap();
        }
        assert!(g.hand_over(), "handed over to the future");
        assert!(task.got.load(SeqCst), "the future was handed the lock");
        // A thread in line, offered the lock while the region lasts.
        let other = thread::spawn(|| drop(GIL.acquire()));
        wait_until("the other thread to queue", || GIL.has_waiters());
        {
            use gil_std::Blocking;
            let mut e = GIL.ensure();
            e.sleep(Duration::from_millis(1));
        }
        // Its turn, if it did not take the offer.
        g.hand_over();
        other.join().unwrap();
        reachable::DATA.with(|d| d.set(None));
        // The leaked guard keeps the hold: leaked with it.
        std::mem::forget(g);
    })
    .unwrap();
    GIL.set_event_hook(None);
    assert!(
        !reachable::WITHOUT_THE_LOCK.load(SeqCst),
        "a hook or a waker ran on the thread while its hold, with a guard it could reach, was elsewhere"
    );
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn a_waker_that_polls_inline_then_hands_over_its_guard_is_refused() {
    // The waker, run by its thread's hand-over, gets the lock and hands it over again from
    // inside: its wait would queue behind its own thread's. The refusal aborts inside the
    // outer hand-over, with the message first.
    use inline_waker::PollInline;
    let ended = in_child_process(
        "a_waker_that_polls_inline_then_hands_over_its_guard_is_refused",
        || {
            struct YieldInline(std::sync::Arc<PollInline>);
            impl std::task::Wake for YieldInline {
                fn wake(self: std::sync::Arc<Self>) {
                    self.0.poll();
                    inline_waker::KEPT.with(|k| {
                        if let Some(g) = k.borrow_mut().last_mut() {
                            g.hand_over();
                        }
                    });
                }
            }
            let gil = leaked_gil();
            let task = PollInline::new(true);
            let mut g = gil.acquire();
            {
                let task = task.clone();
                thread::spawn(move || {
                    use std::future::Future;
                    let mut future = Box::pin(gil.acquire_async());
                    let waker =
                        std::task::Waker::from(std::sync::Arc::new(YieldInline(task.clone())));
                    let pending = future
                        .as_mut()
                        .poll(&mut std::task::Context::from_waker(&waker));
                    assert!(pending.is_pending());
                    *task.future.lock().unwrap() = Some(future);
                })
                .join()
                .unwrap();
            }
            let _ = g.hand_over();
        },
    );
    if let Some((success, stderr)) = ended {
        assert!(!success, "the child went on: {stderr}");
        assert!(stderr.contains("waiting for it already"), "{stderr}");
    }
}

#[test]
fn a_waker_whose_last_drop_panics_does_not_lose_a_grant() {
    // The future was handed the lock; its task's waker panics when its last clone is dropped,
    // which the lock's own bookkeeping may do: the grant must end as a guard, or pass on.
    use std::future::Future;
    use std::task::{Context, Waker};
    struct Touchy;
    impl std::task::Wake for Touchy {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    impl Drop for Touchy {
        fn drop(&mut self) {
            panic!("the waker's last drop panics");
        }
    }
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
        Gil::MAX_SWITCH_INTERVAL,
    )));
    let held = gil.acquire();
    let task = thread::spawn(move || {
        let mut future = Box::pin(gil.acquire_async());
        {
            let waker = Waker::from(std::sync::Arc::new(Touchy));
            let pending = future.as_mut().poll(&mut Context::from_waker(&waker));
            assert!(pending.is_pending());
        }
        wait_until("the holder let go", || !gil.has_waiters());
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let got = future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            drop(got);
        }));
        let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
        polled.is_ok()
    });
    thread::sleep(Duration::from_millis(20));
    drop(held);
    let _ = task.join();
    let other = thread::spawn(move || gil.try_acquire_for(Duration::from_secs(20)).map(drop));
    assert_eq!(
        other.join().unwrap(),
        Ok(()),
        "the lock was left held by nobody"
    );
}

#[test]
fn an_unblock_function_that_panics_as_the_region_opens_is_not_called_again() {
    // An interrupt already pending calls the unblock function as the region opens; if it
    // panics there, the region unwinds, and the function must not stay registered: a later
    // interrupt would call a closure whose frame is gone.
    use std::sync::atomic::AtomicU32;
    static GIL: Gil = Gil::new();
    static CALLS: AtomicU32 = AtomicU32::new(0);
    within(20, "an unblock function that panics", || {
        let mut g = GIL.acquire();
        let handle = GIL.interrupt_handle();
        handle.interrupt(); // pending before the region opens
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            g.allow_threads_with_unblock(
                || (),
                || {
                    if CALLS.fetch_add(1, SeqCst) == 0 {
                        panic!("the unblock function panics the first time");
                    }
                },
            );
        }));
        assert!(unwound.is_err(), "the region unwound");
        let _ = g.checkpoint();
        let again = handle.clone();
        thread::spawn(move || again.interrupt()).join().unwrap();
        let _ = g.checkpoint();
    })
    .unwrap();
    assert_eq!(
        CALLS.load(SeqCst),
        1,
        "the unblock function was called after its region ended"
    );
}

/// Takes `gil` in this thread-local's destructor, which a thread's exit runs after gil-std's
/// own thread-locals may be gone: waits until the test's thread holds the lock, so that the
/// taking waits in line.
struct TakesInItsDestructor(Option<std::sync::Arc<Gil>>);

impl Drop for TakesInItsDestructor {
    fn drop(&mut self) {
        if let Some(gil) = self.0.take() {
            IN_DESTRUCTOR.store(true, SeqCst);
            wait_until("the test's thread to hold the lock", || gil.is_locked());
            let took = catch_unwind(AssertUnwindSafe(|| drop(gil.acquire())));
            DESTRUCTOR_TOOK.store(took.is_ok(), SeqCst);
        }
    }
}

static IN_DESTRUCTOR: AtomicBool = AtomicBool::new(false);
static DESTRUCTOR_TOOK: AtomicBool = AtomicBool::new(false);

thread_local! {
    static TAKES: std::cell::RefCell<TakesInItsDestructor> =
        const { std::cell::RefCell::new(TakesInItsDestructor(None)) };
}

#[test]
fn a_thread_locals_destructor_may_take_the_lock() {
    // Registered before gil-std's thread-locals, destroyed after them: the lock must work
    // there as anywhere, and leave nothing behind that names it once it is dropped.
    let gil = std::sync::Arc::new(Gil::with_switch_interval(Gil::MIN_SWITCH_INTERVAL));
    let held = gil.acquire();
    let mine = gil.clone();
    let exiting = thread::spawn(move || {
        TAKES.with(|t| t.borrow_mut().0 = Some(mine.clone()));
        // A wait for the lock: gil-std's thread-locals are registered now, after this one.
        drop(mine.acquire());
    });
    thread::sleep(Duration::from_millis(20));
    drop(held);
    wait_until("the destructor to run", || IN_DESTRUCTOR.load(SeqCst));
    let held = gil.acquire();
    thread::sleep(Duration::from_millis(20));
    drop(held);
    exiting.join().unwrap();
    assert!(
        DESTRUCTOR_TOOK.load(SeqCst),
        "the destructor's acquire panicked"
    );
    // Dropped where no thread waits: a debug assertion checks the clock does not list it.
    drop(std::sync::Arc::into_inner(gil).expect("the last reference"));
}

#[test]
fn a_hook_outlives_a_guard_released_by_a_thread_locals_destructor() {
    static GIL: Gil = Gil::new();
    static SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    thread_local! {
        static KEEP: std::cell::RefCell<Option<gil_std::GilGuard<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    GIL.set_event_hook(Some(&|_, _| {
        SEEN.fetch_add(1, SeqCst);
    }));
    thread::spawn(|| {
        KEEP.with(|k| *k.borrow_mut() = None); // registered first, destroyed last
        let g = GIL.acquire();
        KEEP.with(|k| *k.borrow_mut() = Some(g));
    })
    .join()
    .unwrap();
    let before = SEEN.load(SeqCst);
    drop(GIL.acquire());
    GIL.set_event_hook(None);
    assert!(
        SEEN.load(SeqCst) > before,
        "the hook was removed by a release in a destructor"
    );
}

#[test]
fn a_thread_on_loan_of_one_lock_keeps_it_while_it_comes_back_to_another() {
    // Holding A on a loan (back from a region, with credit), the thread comes back from a
    // region of B: A stays held, and its loan is given back when A's guard goes.
    use common::{Lending, earn_credit};
    let (a, b) = (leaked_gil(), leaked_gil());
    let (lending_a, lending_b): (&'static Lending, &'static Lending) =
        (Box::leak(Box::default()), Box::leak(Box::default()));
    let (done_a, done_b) = (
        &*Box::leak(Box::new(AtomicBool::new(false))),
        &*Box::leak(Box::new(AtomicBool::new(false))),
    );
    let busy = |gil: &'static Gil, done: &'static AtomicBool, lending: &'static Lending| {
        thread::spawn(move || {
            let mut h = gil.acquire();
            while !done.load(SeqCst) {
                h.checkpoint().unwrap(); // lends here
                lending.hand_over_if_queued(gil, &mut h); // a thread in line gets its turn
            }
            assert!(gil.is_held_by_current_thread(), "the lender holds again");
        })
    };
    within(30, "two loans", move || {
        let mut ga = a.acquire();
        let lender_a = busy(a, done_a, lending_a);
        wait_until("A's holder queued", || a.has_waiters());
        lending_a.come_back_on_loan(a, &mut ga);
        let mut gb = b.acquire();
        let lender_b = busy(b, done_b, lending_b);
        wait_until("B's holder queued", || b.has_waiters());
        // On loan of A, this thread comes back to B in line, not on a second loan.
        earn_credit(b, &mut gb);
        let both = (a.is_held_by_current_thread(), b.is_held_by_current_thread());
        drop(gb);
        done_b.store(true, SeqCst);
        drop(ga);
        done_a.store(true, SeqCst);
        lender_b.join().unwrap();
        lender_a.join().unwrap();
        both
    })
    .map(|both| assert_eq!(both, (true, true), "(A held, B held)"))
    .unwrap();
}

#[test]
fn an_initialiser_may_drop_a_guard_of_the_hold_set_aside() {
    // `get_or_init` on a nested guard runs its initialiser holding the lock again, while the
    // hold it set aside has a guard kept in a thread-local; dropping that guard there is
    // counted against that hold, and nothing is released twice.
    static GIL: Gil = Gil::new();
    static CELL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    within(20, "an initialiser dropping a kept guard", || {
        use gil_std::Blocking;
        let g = GIL.acquire();
        KEPT.with(|k| *k.borrow_mut() = Some(GIL.ensure()));
        let mut e = GIL.ensure();
        let value = e.get_or_init(&CELL, || {
            drop(KEPT.with(|k| k.borrow_mut().take()));
            assert!(
                GIL.is_held_by_current_thread(),
                "the initialiser holds the lock"
            );
            7
        });
        assert_eq!(*value, 7);
        assert!(GIL.is_held_by_current_thread());
        drop(e);
        assert!(
            GIL.is_held_by_current_thread(),
            "the outer guard still holds"
        );
        drop(g);
        assert!(!GIL.is_held_by_current_thread());
    })
    .unwrap();
    assert!(free_for_others(&GIL));
}

#[test]
fn an_initialisers_taking_runs_no_pending_call_while_the_hold_is_aside() {
    // `get_or_init` on a nested guard takes the lock again for its initialiser while the hold's
    // guards are aside. A pending call run by that taking is code of the user's on a quiet
    // thread, and one that panics unwound through a guard whose drop counted against the hold
    // set aside: the lock stayed held, and the region's end refused to take it back. The
    // calls wait for the next taking or checkpoint instead.
    let gil = leaked_gil();
    let cell: &'static OnceLock<u32> = Box::leak(Box::new(OnceLock::new()));
    let outcome = within(
        20,
        "an initialiser's taking with a pending call queued",
        move || {
            use gil_std::Blocking;
            let g = gil.ensure();
            let mut e = gil.ensure();
            gil.add_pending_call(|_| panic!("the pending call panics"))
                .unwrap_or_else(|_| panic!("the call is queued"));
            let got = catch_unwind(AssertUnwindSafe(|| *e.get_or_init(cell, || 7)));
            let got = got.map_err(|p| message(&*p));
            assert!(gil.is_held_by_current_thread(), "the hold is whole again");
            drop(e);
            drop(g);
            got
        },
    )
    .expect("the test thread");
    assert!(
        matches!(&outcome, Ok(7)) || matches!(&outcome, Err(m) if m == "the pending call panics"),
        "get_or_init gave {outcome:?}"
    );
    // The call, if still queued, runs at this taking and panics through its guard.
    let _ = within(20, "another thread taking the lock", move || {
        drop(gil.try_acquire_for(Duration::from_secs(5)));
    });
    assert!(free_for_others(gil), "nobody holds the lock at the end");
}

#[test]
fn a_region_of_a_nested_guard_cannot_take_its_lock_afresh() {
    // The hold's other guards are set aside on the thread, and joins and drops of guards of
    // the lock count there: a fresh hold's guards would be taken for theirs. Whether the lock
    // is free (taken at once) or held by another thread (taken in line).
    for contended in [false, true] {
        let gil = leaked_gil();
        let outcome = within(
            10,
            "a fresh hold in a region of a nested guard",
            move || {
                let _outer = gil.acquire();
                let mut nested = gil.ensure();
                // SAFETY: the closure touches nothing borrowed under the lock; it takes the lock.
                unsafe {
                    nested.allow_threads(|| {
                        let holder = contended.then(|| {
                            let (held, holding) = mpsc::channel();
                            let holder = thread::spawn(move || {
                                let _g = gil.acquire();
                                held.send(()).unwrap();
                                thread::sleep(Duration::from_millis(50));
                            });
                            holding.recv().unwrap();
                            holder
                        });
                        let taken = catch_unwind(|| drop(gil.acquire()));
                        if let Some(holder) = holder {
                            holder.join().unwrap();
                        }
                        if let Err(panic) = taken {
                            std::panic::resume_unwind(panic);
                        }
                    })
                };
            },
        );
        let message = outcome.expect_err("the fresh hold must be refused");
        assert!(message.contains("set aside"), "{message}");
        assert!(free_for_others(gil), "both guards unwound: released");
    }
}

// A second red team's findings: refusals that came after the lock was let go, guards of a hold
// set aside used from its initialiser, and the threads that run the user's code.

/// Locks whose hooks each take the next one, `FRAMES_DEEP` of them: the innermost hook runs
/// `then` with as many hook frames under way on its thread as a thread may have.
mod deep_hooks {
    use std::cell::{Cell, RefCell};

    use gil_std::{Event, Gil};

    pub const FRAMES_DEEP: usize = 32;

    pub static LOCKS: [Gil; FRAMES_DEEP] =
        [const { Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL) }; FRAMES_DEEP];

    thread_local! {
        static THEN: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    fn hook(gil: &Gil, event: Event) {
        if event != Event::Got || !ARMED.with(Cell::get) {
            return;
        }
        let i = LOCKS.iter().position(|l| std::ptr::eq(l, gil)).unwrap();
        if i + 1 < FRAMES_DEEP {
            drop(LOCKS[i + 1].acquire());
        } else {
            ARMED.with(|a| a.set(false));
            if let Some(then) = THEN.with(|t| t.borrow_mut().take()) {
                then();
            }
        }
    }

    /// Runs `then` inside `FRAMES_DEEP` hook frames, on this thread.
    pub fn run(then: impl FnOnce() + 'static) {
        for lock in &LOCKS {
            lock.set_event_hook(Some(&hook));
        }
        THEN.with(|t| *t.borrow_mut() = Some(Box::new(then)));
        ARMED.with(|a| a.set(true));
        drop(LOCKS[0].acquire());
    }
}

#[test]
fn a_region_refused_for_want_of_frames_leaves_its_hold_whole() {
    // With every frame of its thread in use, a region of a nested guard cannot set its guards
    // aside: it must refuse before it changes anything, so that the hold ends with its last
    // guard, not with the nested one.
    let gil = leaked_gil();
    let outcome = within(20, "a region in the innermost of many hooks", move || {
        let result = std::rc::Rc::new(Cell::new(None));
        let seen = result.clone();
        deep_hooks::run(move || {
            use gil_std::Blocking;
            let outer = gil.acquire();
            let mut nested = gil.ensure();
            let refused = catch_unwind(AssertUnwindSafe(|| nested.sleep(Duration::from_millis(1))));
            drop(nested);
            seen.set(Some((refused.is_err(), gil.is_held_by_current_thread())));
            drop(outer);
        });
        result.get()
    });
    assert_eq!(
        outcome,
        Ok(Some((true, true))),
        "(the region refused, the outer guard still holds)"
    );
    assert!(free_for_others(gil));
}

#[test]
fn a_region_that_must_wait_at_its_end_refuses_at_its_start() {
    // The wait that ends a region could be refused (every frame in use): the region refuses
    // before it lets the lock go, instead of after, when another thread may hold it.
    let gil = leaked_gil();
    let outcome = within(20, "a region in the innermost of many hooks", move || {
        let result = std::rc::Rc::new(Cell::new(None));
        let seen = result.clone();
        deep_hooks::run(move || {
            let mut g = gil.acquire();
            let refused = catch_unwind(AssertUnwindSafe(|| g.allow_threads(|| ())));
            seen.set(Some((refused.is_err(), gil.is_held_by_current_thread())));
            drop(g);
        });
        result.get()
    });
    assert_eq!(
        outcome,
        Ok(Some((true, true))),
        "(the region refused, its guard still holds)"
    );
    assert!(free_for_others(gil));
}

#[test]
fn a_waker_that_opens_a_region_inside_its_threads_hand_over_is_refused_before_it_lets_go() {
    // The waker, run inline by its thread's hand-over, gets the lock and opens a region: the
    // region's end would wait behind its own thread. Refused at the start, the guard is still
    // whole, and its drop passes the lock on as any release does.
    use inline_waker::PollInline;
    struct RegionInline(std::sync::Arc<PollInline>, std::sync::Arc<AtomicBool>);
    impl std::task::Wake for RegionInline {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.poll();
            let guard = inline_waker::KEPT.with(|k| k.borrow_mut().pop());
            if let Some(mut guard) = guard {
                let refused = catch_unwind(AssertUnwindSafe(|| guard.allow_threads(|| ())));
                self.1.store(refused.is_err(), SeqCst);
            }
        }
    }
    let gil = leaked_gil();
    let refused = std::sync::Arc::new(AtomicBool::new(false));
    let seen = refused.clone();
    let outcome = within(20, "a region in a waker", move || {
        let task = PollInline::new(true);
        let mut g = gil.acquire();
        {
            let task = task.clone();
            thread::spawn(move || {
                use std::future::Future;
                let mut future = Box::pin(gil.acquire_async());
                let waker =
                    std::task::Waker::from(std::sync::Arc::new(RegionInline(task.clone(), seen)));
                let pending = future
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(pending.is_pending());
                *task.future.lock().unwrap() = Some(future);
            })
            .join()
            .unwrap();
        }
        let other = thread::spawn(move || drop(gil.acquire()));
        wait_until("the other thread to queue", || gil.has_waiters());
        assert!(g.hand_over(), "handed over");
        let held = gil.is_held_by_current_thread();
        drop(g);
        other.join().unwrap();
        held
    });
    assert_eq!(outcome, Ok(true), "the hand-over came back holding");
    assert!(refused.load(SeqCst), "the waker's region was refused");
    assert!(free_for_others(gil));
}

#[test]
fn an_initialiser_cannot_open_a_region_for_the_hold_its_region_set_aside() {
    // Inside get_or_init's initialiser, the outer guard of the hold set aside, kept in a
    // thread-local, would open a region while a nested guard of that hold lives.
    use gil_std::Blocking;
    static GIL: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    static CELL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let outcome = within(20, "a region in an initialiser", || {
        OUTER.with(|o| *o.borrow_mut() = Some(GIL.acquire()));
        let mut nested = GIL.ensure();
        let mut refused = false;
        nested.get_or_init(&CELL, || {
            let e = GIL.ensure();
            let mut g = OUTER.with(|o| o.borrow_mut().take().unwrap());
            refused = catch_unwind(AssertUnwindSafe(|| g.allow_threads(|| ()))).is_err();
            OUTER.with(|o| *o.borrow_mut() = Some(g));
            drop(e);
            1
        });
        drop(nested);
        drop(OUTER.with(|o| o.borrow_mut().take()));
        (refused, GIL.is_held_by_current_thread())
    });
    assert_eq!(outcome, Ok((true, false)), "(refused, released at the end)");
}

#[test]
fn an_initialiser_that_keeps_a_guard_leaves_no_count_to_the_next_holder() {
    // On a plain guard's region, the initialiser's `ensure` guard kept past it keeps the
    // initialiser's hold; the region then returns holding and panics. Whoever holds next
    // starts afresh: its one guard ends its hold.
    use gil_std::Blocking;
    static CELL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let gil = leaked_gil();
    let next = within(20, "an initialiser keeping a guard", move || {
        let mut g = gil.acquire();
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            g.get_or_init(&CELL, || {
                KEPT.with(|k| *k.borrow_mut() = Some(gil.ensure()));
                1
            });
        }))
        .is_err();
        assert!(panicked, "a region that returns holding panics");
        drop(g);
        assert!(gil.is_held_by_current_thread(), "the kept guard holds");
        drop(KEPT.with(|k| k.borrow_mut().take()));
        assert!(!gil.is_held_by_current_thread());
        thread::spawn(move || {
            let g = gil.acquire();
            drop(g);
            gil.is_held_by_current_thread()
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        next,
        Ok(false),
        "the next holder still held after its last guard"
    );
}

#[test]
fn an_initialisers_hold_reports_got_before_released() {
    use gil_std::Blocking;
    static GIL: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    static CELL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static SEEN: std::sync::Mutex<Vec<Event>> = std::sync::Mutex::new(Vec::new());
    let outcome = within(20, "events of an initialiser", || {
        let me = thread::current().id();
        GIL.set_event_hook(Some(Box::leak(Box::new(move |_: &Gil, event| {
            if thread::current().id() == me {
                SEEN.lock().unwrap().push(event);
            }
        }))));
        let outer = GIL.acquire();
        let mut nested = GIL.ensure();
        nested.get_or_init(&CELL, || 1);
        drop(nested);
        drop(outer);
        GIL.set_event_hook(None);
        let mut holding = false;
        for event in SEEN.lock().unwrap().iter() {
            match event {
                Event::Got if holding => return Err("Got while holding"),
                Event::Got => holding = true,
                Event::Released if !holding => return Err("Released while not holding"),
                Event::Released => holding = false,
                _ => {}
            }
        }
        Ok(())
    });
    assert_eq!(outcome, Ok(Ok(())), "{:?}", SEEN.lock().unwrap());
}

#[test]
fn a_waker_that_waits_for_a_lock_holds_up_no_other_tasks_wake() {
    // A task's waker, run on the lock's waker thread (its task timed its own wait), waits for
    // lock L behind task A; A's grant comes from a hand-over under a nested guard, whose
    // thread hands its waker to the waker thread too: it must not wait behind the first.
    static L: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    static M: Gil = Gil::with_switch_interval(Duration::from_millis(1));
    static WAKER_WAITS: AtomicBool = AtomicBool::new(false);
    static A_GOT: AtomicBool = AtomicBool::new(false);
    within(
        30,
        "a hand-over while a waker waits on the waker thread",
        || {
            let mut outer = L.acquire();
            let nested = L.ensure();
            // Task A waits for L, on an executor thread of its own.
            let (queued, a_queued) = mpsc::channel();
            thread::spawn(move || {
                let me = thread::current();
                let waker = waker_with(move || me.unpark());
                let mut a = std::pin::pin!(L.acquire_async());
                let mut cx = std::task::Context::from_waker(&waker);
                assert!(std::future::Future::poll(a.as_mut(), &mut cx).is_pending());
                queued.send(()).unwrap();
                loop {
                    if let std::task::Poll::Ready(g) =
                        std::future::Future::poll(a.as_mut(), &mut cx)
                    {
                        A_GOT.store(true, SeqCst);
                        drop(g);
                        return;
                    }
                    thread::park();
                }
            });
            a_queued.recv().unwrap();
            // Task B waits for M, held for good; its own timer wakes it on the waker thread, where
            // its waker takes L.
            let (m_held, m_is_held) = mpsc::channel();
            thread::spawn(move || {
                // Holds M for good, and stays: a thread that exits with its hold leaked leaves
                // its token to the next thread made, which would be taken for the holder.
                let _m = M.acquire();
                m_held.send(()).unwrap();
                loop {
                    thread::park();
                }
            });
            m_is_held.recv().unwrap();
            thread::spawn(|| {
                let waker = waker_with(|| {
                    if !WAKER_WAITS.swap(true, SeqCst) {
                        drop(L.acquire());
                    }
                });
                let mut b = Box::pin(M.acquire_async());
                let pending = std::future::Future::poll(
                    b.as_mut(),
                    &mut std::task::Context::from_waker(&waker),
                );
                assert!(pending.is_pending());
                std::mem::forget(b);
            });
            wait_until("the waker waits for L", || WAKER_WAITS.load(SeqCst));
            thread::sleep(Duration::from_millis(20)); // in line for L, behind task A
            L.request_drop();
            outer.checkpoint().unwrap();
            assert!(A_GOT.load(SeqCst), "task A held the lock in the hand-over");
            drop(nested);
            drop(outer);
        },
    )
    .unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "runs a child process, which Miri cannot")]
fn the_panic_hook_of_a_refusal_while_the_hold_is_set_aside_runs_holding() {
    // A refusal of the lock's own, raised in a region of a nested guard (here: the lock was
    // closed before an initialiser could run), panics once the hold is whole again: the
    // process's panic hook, the user's code, runs on a thread that holds the lock.
    let ended = in_child_process(
        "the_panic_hook_of_a_refusal_while_the_hold_is_set_aside_runs_holding",
        || {
            use gil_std::Blocking;
            static GIL: Gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
            static CELL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
            std::panic::set_hook(Box::new(|_| {
                let held = GIL.is_held_by_current_thread();
                eprintln!("panic hook: holding {held}");
            }));
            let outer = GIL.acquire();
            let mut nested = GIL.ensure();
            let closer = thread::spawn(|| {
                let g = GIL.acquire();
                drop(GIL.close());
                drop(g);
            });
            wait_until("the closer to queue", || GIL.has_waiters());
            let refused = catch_unwind(AssertUnwindSafe(|| nested.get_or_init(&CELL, || 1)));
            closer.join().unwrap();
            drop(nested);
            drop(outer);
            std::process::exit(if refused.is_err() { 0 } else { 6 });
        },
    );
    if let Some((success, stderr)) = ended {
        assert!(success, "{stderr}");
        assert!(stderr.contains("panic hook: holding true"), "{stderr}");
        assert!(!stderr.contains("panic hook: holding false"), "{stderr}");
    }
}

#[test]
fn a_shorter_interval_asks_no_sooner_than_a_whole_interval_of_waiting() {
    // The clock's deadline after a change of interval counts from when the waiter queued (or
    // the last switch), not from the start of the clock.
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_secs(10))));
    // The clock has run for a while already.
    start_the_clock();
    thread::sleep(Duration::from_millis(300));
    let held = gil.acquire();
    let waiter = thread::spawn(move || drop(gil.acquire()));
    wait_until("the waiter to queue", || gil.has_waiters());
    gil.set_switch_interval(Duration::from_millis(200)).unwrap();
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        gil.stats().clock_requests,
        0,
        "asked 50 ms into a wait of an interval of 200 ms"
    );
    drop(held);
    waiter.join().unwrap();
}

/// Starts the clock: a contended acquire of a lock of its own.
fn start_the_clock() {
    let gil = leaked_gil();
    let held = gil.acquire();
    let waiter = thread::spawn(move || drop(gil.acquire()));
    wait_until("the waiter to queue", || gil.has_waiters());
    drop(held);
    waiter.join().unwrap();
}
