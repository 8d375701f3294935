//! The safe API under real threads. Every wait here waits for a condition, with a generous
//! deadline that fails the test instead of hanging it; none depends on how fast the machine is.
#![cfg(not(loom))]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{AcquireError, Gil, GilCell};

mod common;
#[cfg(target_os = "linux")]
use common::thread_cpu_time;
use common::wait_until;

#[test]
fn mutual_exclusion_under_stress() {
    static GIL: Gil = Gil::new();
    static COUNTER: GilCell<Cell<u64>> = GilCell::new(&GIL, Cell::new(0));
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 2_000;
    let inside = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let inside = &inside;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let mut g = GIL.acquire();
                    assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders");
                    // A non-atomic read-modify-write: a lost update shows in the total.
                    let c = COUNTER.get(&g);
                    c.set(c.get() + 1);
                    inside.fetch_sub(1, SeqCst);
                    match (i + t) % 4 {
                        0 => GIL.request_drop(),
                        1 => {
                            g.allow_threads(thread::yield_now);
                        }
                        2 => {
                            g.hand_over();
                        }
                        _ => {}
                    }
                    g.checkpoint().unwrap();
                }
            });
        }
    });
    assert_eq!(COUNTER.get(&GIL.acquire()).get(), THREADS * ROUNDS);
}

#[test]
fn a_thread_in_allow_threads_lets_another_run() {
    let gil = Gil::new();
    let other_ran = AtomicBool::new(false);
    let mut g = gil.acquire();
    thread::scope(|s| {
        g.allow_threads(|| {
            s.spawn(|| {
                let _g = gil.acquire();
                other_ran.store(true, SeqCst);
            });
            wait_until("the other thread to get the lock", || {
                other_ran.load(SeqCst)
            });
        });
    });
    assert!(gil.is_held_by_current_thread());
}

#[test]
fn a_drop_request_makes_a_busy_holder_hand_over() {
    let gil = Gil::new();
    let waiter_done = AtomicBool::new(false);
    thread::scope(|s| {
        let mut g = gil.acquire();
        s.spawn(|| {
            let _g = gil.acquire();
            waiter_done.store(true, SeqCst);
        });
        // The holder never releases; a third party (this test, standing in for the timer) asks
        // for the lock until the waiter has had it.
        let asker = s.spawn(|| {
            wait_until("the waiter to get the lock", || {
                gil.request_drop();
                waiter_done.load(SeqCst)
            })
        });
        while !waiter_done.load(SeqCst) {
            g.checkpoint().unwrap();
            assert!(
                !asker.is_finished() || waiter_done.load(SeqCst),
                "asker gave up"
            );
        }
    });
    let stats = gil.stats();
    assert!(stats.forced_drops >= 1, "{stats:?}");
    assert!(stats.switches >= 2, "to the waiter and back: {stats:?}");
    assert!(stats.wait_time > Duration::ZERO, "{stats:?}");
    assert!(
        stats.contended >= 2,
        "the waiter and the yielder both waited: {stats:?}"
    );
}

#[test]
fn close_releases_every_waiter_and_the_holder_finishes() {
    static GIL: Gil = Gil::new();
    static CLOSED: AtomicUsize = AtomicUsize::new(0);
    let mut g = GIL.acquire();
    // Detached threads: if close forgot a waiter, the test fails at the deadline below
    // instead of hanging in a join.
    for _ in 0..4 {
        thread::spawn(|| {
            assert_eq!(GIL.acquire_checked().err(), Some(AcquireError::Closed));
            CLOSED.fetch_add(1, SeqCst);
        });
    }
    // At least one is asleep in the queue; any that are not yet get `Closed` at once.
    wait_until("a thread to queue", || GIL.has_waiters());
    assert!(GIL.close().is_empty(), "no pending calls");
    wait_until("every waiter to be told Closed", || {
        CLOSED.load(SeqCst) == 4
    });
    // The holder goes on: checkpoints, a blocking region (taken back after close), release.
    g.checkpoint().unwrap();
    g.allow_threads(|| ());
    assert!(GIL.is_held_by_current_thread());
    drop(g);
    assert_eq!(GIL.acquire_checked().err(), Some(AcquireError::Closed));
    assert!(GIL.try_acquire().is_none());
}

#[test]
#[should_panic(expected = "ensure()")]
fn reacquire_on_the_holding_thread_panics_naming_ensure() {
    let gil = Gil::new();
    let _g = gil.acquire();
    let _again = gil.acquire();
}

#[test]
fn acquire_on_a_closed_gil_panics_clearly() {
    let gil = Gil::new();
    assert!(gil.close().is_empty(), "no pending calls");
    let err = catch_unwind(AssertUnwindSafe(|| drop(gil.acquire()))).unwrap_err();
    let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(
        msg.contains("closed") && msg.contains("acquire_checked"),
        "{msg}"
    );
}

#[test]
fn a_panic_inside_a_region_leaves_the_lock_held_and_consistent() {
    let gil = Gil::new();
    let mut g = gil.acquire();
    let result = catch_unwind(AssertUnwindSafe(|| {
        g.allow_threads(|| panic!("in the region"))
    }));
    assert!(result.is_err());
    assert!(
        gil.is_held_by_current_thread(),
        "taken back before the unwind went on"
    );
    g.checkpoint().unwrap();
    drop(g);
    thread::scope(|s| s.spawn(|| drop(gil.acquire())).join().unwrap());
}

#[test]
fn a_thread_that_panics_while_holding_releases_the_lock() {
    let gil = Gil::new();
    let joined = thread::scope(|s| {
        s.spawn(|| {
            let _g = gil.acquire();
            panic!("while holding");
        })
        .join()
    });
    assert!(joined.is_err());
    let g = gil.try_acquire();
    assert!(g.is_some(), "the unwinding guard released it");
}

#[test]
fn ensure_nests_and_a_nested_guard_cannot_open_a_region() {
    let gil = Gil::new();
    let outer = gil.ensure();
    assert!(!outer.is_nested());
    let outer = outer.into_guard().expect("not held before: acquired");
    {
        let inner = gil.ensure();
        assert!(inner.is_nested());
        let mut inner = inner.into_guard().expect_err("held: nested");
        inner.checkpoint().unwrap();
        let innermost = gil.ensure();
        assert!(innermost.is_nested());
    }
    assert!(
        gil.is_held_by_current_thread(),
        "dropping nested guards releases nothing"
    );
    drop(outer);
    assert!(!gil.is_held_by_current_thread());
    assert!(gil.try_acquire().is_some());
}

#[test]
#[should_panic(expected = "different Gil")]
fn a_gil_cell_refuses_a_guard_of_another_gil() {
    static MINE: Gil = Gil::new();
    static OTHER: Gil = Gil::new();
    static CELL: GilCell<u32> = GilCell::new(&MINE, 7);
    let g = OTHER.acquire();
    let _ = CELL.get(&g);
}

#[test]
fn independent_gils_do_not_interfere() {
    static A: Gil = Gil::new();
    static B: Gil = Gil::new();
    let a = A.acquire();
    let b = B.acquire();
    assert!(A.is_held_by_current_thread() && B.is_held_by_current_thread());
    drop(a);
    assert!(!A.is_held_by_current_thread() && B.is_held_by_current_thread());
    drop(b);
}

#[test]
fn the_lock_api_wrapper_works_across_threads() {
    let m = gil_std::GilMutex::new(0u64);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..1_000 {
                    let mut g = m.lock();
                    *g += 1;
                    if i % 10 == 0 {
                        lock_api::MutexGuard::bump(&mut g); // a fair yield
                    }
                }
            });
        }
    });
    assert_eq!(*m.lock(), 4_000);
    let held = m.lock();
    thread::scope(|s| {
        let r = s
            .spawn(|| m.try_lock_for(Duration::from_millis(5)).is_none())
            .join();
        assert!(r.unwrap(), "timed lock gives up while held");
    });
    drop(held);
    assert!(m.try_lock().is_some());
}

#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation forbids")]
fn a_waiter_sleeps_instead_of_spinning() {
    // A waiter spins for about a microsecond, then sleeps on its futex. Over a 300 ms wait it
    // uses a tiny fraction of that in CPU time; one that spun (or woke again and again) would use
    // a large part of it even on a loaded machine. The margin is two orders of magnitude.
    let gil = Gil::new();
    let held = gil.acquire();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let before = thread_cpu_time();
            let start = Instant::now();
            drop(gil.acquire());
            (thread_cpu_time() - before, start.elapsed())
        });
        wait_until("the waiter queued", || gil.has_waiters());
        thread::sleep(Duration::from_millis(300));
        drop(held);
        let (cpu, waited) = waiter.join().unwrap();
        assert!(
            cpu < waited / 10,
            "a waiter used {cpu:?} of CPU time over a {waited:?} wait"
        );
    });
}

/// The same for a waiter with a deadline, which sleeps with a timeout of its own (Linux) or
/// until the clock wakes it at the deadline: over a 300 ms timed wait that times out, a tiny
/// fraction of it in CPU time.
#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation forbids")]
fn a_timed_waiter_sleeps_instead_of_spinning() {
    let gil = Gil::new();
    let _held = gil.acquire();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let before = thread_cpu_time();
            let start = Instant::now();
            let outcome = gil.try_acquire_for(Duration::from_millis(300)).map(drop);
            (outcome, thread_cpu_time() - before, start.elapsed())
        });
        let (outcome, cpu, waited) = waiter.join().unwrap();
        assert_eq!(outcome, Err(AcquireError::Timeout));
        assert!(
            cpu < waited / 10,
            "a timed waiter used {cpu:?} of CPU time over a {waited:?} wait"
        );
    });
}

/// A nested guard's region releases the lock while a frame further up holds a guard of the
/// same hold: another thread takes it meanwhile, and the outer guard is valid again after.
#[test]
fn a_nested_guard_lets_go_around_blocking_work() {
    static GIL: Gil = Gil::new();
    static COUNT: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    let outer = GIL.acquire();
    COUNT.get(&outer).set(1);
    {
        let mut inner = GIL.ensure();
        assert!(inner.is_nested());
        // SAFETY: the closure reaches only the lock, and the cell through a guard of another
        // thread's own hold.
        unsafe {
            inner.allow_threads(|| {
                assert!(!GIL.is_held_by_current_thread());
                thread::scope(|s| {
                    s.spawn(|| {
                        let g = GIL.acquire();
                        COUNT.get(&g).set(COUNT.get(&g).get() + 1);
                    });
                });
            })
        };
        assert!(GIL.is_held_by_current_thread());
        COUNT.get(&inner).set(COUNT.get(&inner).get() + 1);
    }
    assert_eq!(COUNT.get(&outer).get(), 3);
    drop(outer);
    assert!(
        !GIL.is_held_by_current_thread(),
        "the hold ended with its last guard"
    );
    assert!(GIL.try_acquire().is_some());
}

/// `wants_checkpoint` says when the next checkpoint has something to do.
#[test]
fn wants_checkpoint_says_when_a_checkpoint_has_work() {
    let gil = Gil::new();
    let mut g = gil.acquire();
    assert!(!gil.wants_checkpoint());
    gil.request_drop();
    assert!(gil.wants_checkpoint(), "a drop request");
    g.checkpoint().unwrap(); // nobody waits: cleared
    assert!(!gil.wants_checkpoint());
    gil.interrupt_handle().interrupt();
    assert!(gil.wants_checkpoint(), "an interrupt");
    assert!(g.checkpoint().is_err());
    assert!(!gil.wants_checkpoint());
}

/// While a thread waits in line, `wants_checkpoint` says so once the holder's slice is over,
/// not before: it looks at the clock at every 256th call, as a checkpoint does.
#[test]
fn wants_checkpoint_waits_for_the_end_of_the_slice() {
    for (interval, over) in [
        (Duration::from_secs(60), false),
        (Duration::from_millis(1), true),
    ] {
        let gil = Gil::with_switch_interval(interval);
        thread::scope(|s| {
            let g = gil.acquire();
            let waiter = s.spawn(|| drop(gil.acquire()));
            wait_until("the waiter to queue", || gil.has_waiters());
            thread::sleep(Duration::from_millis(5));
            let wanted = (0..1024).any(|_| gil.wants_checkpoint());
            assert_eq!(wanted, over, "a slice of {interval:?}, 5 ms into it");
            drop(g);
            waiter.join().unwrap();
        });
    }
}

/// The errors say what happened; the lock's `Debug` shows its state and figures.
#[test]
fn errors_and_the_lock_describe_themselves() {
    assert_eq!(
        AcquireError::Timeout.to_string(),
        "timed out waiting for the GIL"
    );
    assert_eq!(AcquireError::Closed.to_string(), "the GIL is closed");
    let gil = Gil::new();
    let shown = format!("{gil:?}");
    assert!(
        shown.starts_with("Gil { raw: ") && shown.contains("stats: Stats {"),
        "{shown}"
    );
}

/// Each guard names the lock it holds, and says what it is in `Debug`.
#[test]
fn guards_name_their_lock_and_show_in_debug() {
    let gil = Gil::new();
    let other = Gil::new();
    let outer = gil.ensure();
    assert!(std::ptr::eq(outer.gil(), &gil));
    assert_eq!(format!("{outer:?}"), "EnsureGuard { nested: false }");
    let inner = gil.ensure();
    assert!(std::ptr::eq(inner.gil(), &gil) && !std::ptr::eq(inner.gil(), &other));
    assert_eq!(format!("{inner:?}"), "EnsureGuard { nested: true }");
    drop(inner);
    drop(outer);
    let guard = gil.acquire();
    assert!(std::ptr::eq(guard.gil(), &gil));
    assert_eq!(format!("{guard:?}"), "GilGuard { .. }");
    let unlocked = guard.unlock();
    assert!(std::ptr::eq(unlocked.gil(), &gil));
    assert_eq!(format!("{unlocked:?}"), "Unlocked { .. }");
    drop(unlocked.relock());
}
