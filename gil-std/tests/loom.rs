//! Loom models of gil-std's safe API: the real `Gil`, built with loom's atomics, its waiters
//! parked with loom's park/unpark. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p gil-std --test loom --profile loom`
//! (`scripts/test` does). Bounds and the bug each model catches: `docs/verification.md`.
//!
//! Time is the model's (`gil_std::model_time`): it stands still unless a model moves it, and
//! there is no clock thread; a model that starts the clock looks with it itself. So the
//! policies that read the time run as they ship, at moments the model chooses: the fast
//! return's credit, the holder's own look at the end of its slice, the clock's drop request.
#![cfg(loom)]

#[path = "../../gil-core/tests/support/mod.rs"]
mod support;

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use gil_std::{AcquireError, Blocking, Gil, GilGuard, Interrupted, PendingCallError, model_time};
use loom::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use support::{Protected, model};

/// A blocking region releases the lock (another thread gets in) and takes it back before the
/// holder touches protected data again.
#[test]
fn blocking_region_round_trip() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let other = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                data.bump();
            })
        };
        let mut g = gil.acquire();
        data.bump();
        g.allow_threads(|| ());
        data.bump();
        drop(g);
        other.join().unwrap();
        assert_eq!(data.bump(), 4, "every critical section ran once, in order");
    });
}

/// The lock-order inversion between the `Gil` and a mutex, resolved by `Blocking::lock_mutex`: one
/// thread takes the mutex and then waits for the `Gil`; the other holds the `Gil` and then
/// locks the mutex through the helper, which lets the `Gil` go while it waits for the mutex,
/// and takes the `Gil` back after (or takes the mutex at once, if it was let go by then).
/// Every way, no deadlock (loom reports one), one thread at a time under the `Gil`, each
/// section once.
///
/// The helper locks only once the other thread holds the mutex: loom 0.7 reports a false
/// deadlock when a `try_lock` races with a `lock` of the same mutex (an open loom bug).
#[test]
fn a_helper_lets_the_gil_go_for_a_mutex_and_takes_it_back() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let mutex = Arc::new(Mutex::new(0));
        let taken = Arc::new(AtomicBool::new(false));
        let other = {
            let (gil, data, mutex, taken) =
                (gil.clone(), data.clone(), mutex.clone(), taken.clone());
            thread::spawn(move || {
                let mut m = mutex.lock().unwrap();
                taken.store(true, Release);
                let _g = gil.acquire();
                data.bump();
                *m += 1;
            })
        };
        let mut g = gil.acquire();
        data.bump();
        while !taken.load(Acquire) {
            thread::yield_now();
        }
        *g.lock_mutex(&mutex).unwrap() += 1;
        data.bump();
        drop(g);
        other.join().unwrap();
        assert_eq!(data.bump(), 4, "every critical section ran once, in order");
        assert_eq!(*mutex.lock().unwrap(), 2, "both threads had the mutex once");
    });
}

/// A condition variable waited on under the `Gil` (`Blocking::wait_condvar_while`) while the only
/// thread that can set the condition needs the `Gil` first: the wait lets the `Gil` go, the
/// notification is not lost whichever comes first, and the waiter holds the `Gil` again after.
///
/// The setter locks the mutex plainly, under the `Gil`: the waiter's helper `try_lock` then
/// never races with it (see the model above), and the setter never waits for the mutex while
/// the waiter holds it and waits for the `Gil`.
#[test]
fn a_condvar_wait_lets_the_gil_go_and_takes_it_back() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let ready = Arc::new((Mutex::new(false), Condvar::new()));
        let setter = {
            let (gil, data, ready) = (gil.clone(), data.clone(), ready.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                data.bump();
                *ready.0.lock().unwrap() = true;
                ready.1.notify_one();
            })
        };
        let mut g = gil.acquire();
        data.bump();
        let flag = g.lock_mutex(&ready.0).unwrap();
        let flag = g
            .wait_condvar_while(&ready.1, flag, |ready| !*ready)
            .unwrap();
        assert!(*flag);
        drop(flag);
        assert!(gil.is_held_by_current_thread());
        data.bump();
        drop(g);
        setter.join().unwrap();
        assert_eq!(data.bump(), 4, "every critical section ran once, in order");
    });
}

/// A future waiting for the lock (`acquire_async`, run by loom's `block_on`) while a thread
/// holds it: it takes a free lock at once, or queues and is woken by the grant — whichever
/// comes first of its look, its waker's registration and the release, no wake-up is lost
/// (loom reports a deadlock) and the two hold one at a time.
#[test]
fn a_future_is_woken_by_its_grant() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let held = gil.acquire();
        let task = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let guard = loom::future::block_on(gil.acquire_async()).unwrap();
                data.bump();
                drop(guard);
            })
        };
        data.bump();
        drop(held);
        task.join().unwrap();
        assert_eq!(data.bump(), 3, "every critical section ran once, in order");
    });
}

/// A thread and then a future queue behind a holder: the thread gets the lock first, the
/// future next — the same FIFO line. The future is polled once with one waker and then run
/// by `block_on` with another, so the grant must wake the waker registered last.
#[test]
fn a_future_waits_behind_a_thread_queued_first() {
    model(3, || {
        let gil = Arc::new(Gil::new());
        let turn = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicBool::new(false));
        let held = gil.acquire();
        let first = {
            let (gil, turn) = (gil.clone(), turn.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                assert_eq!(
                    turn.swap(1, Relaxed),
                    0,
                    "the thread queued first goes first"
                );
            })
        };
        while !gil.has_waiters() {
            thread::yield_now();
        }
        let task = {
            let (gil, turn, queued) = (gil.clone(), turn.clone(), queued.clone());
            thread::spawn(move || {
                let mut future = Box::pin(gil.acquire_async());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(
                    future.as_mut().poll(&mut cx).is_pending(),
                    "held: it queues"
                );
                queued.store(true, Release);
                let _g = loom::future::block_on(future).unwrap();
                assert_eq!(turn.swap(2, Relaxed), 1, "the future goes second");
            })
        };
        while !queued.load(Acquire) {
            thread::yield_now();
        }
        drop(held);
        first.join().unwrap();
        task.join().unwrap();
        assert_eq!(turn.load(Relaxed), 2);
    });
}

/// A future polled once and dropped — while it waits, or after the lock was handed to it but
/// before it was polled again — racing a thread that waits behind it and the holder's release:
/// the thread always gets the lock (a dropped grant is passed on), and the lock is free after.
#[test]
fn a_dropped_future_strands_nobody() {
    model(3, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let held = gil.acquire();
        let task = {
            let gil = gil.clone();
            thread::spawn(move || {
                let mut future = Box::pin(gil.acquire_async());
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(guard) = future.as_mut().poll(&mut cx) {
                    drop(guard.unwrap());
                }
                drop(future);
            })
        };
        let other = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                data.bump();
            })
        };
        data.bump();
        drop(held);
        task.join().unwrap();
        other.join().unwrap();
        assert_eq!(data.bump(), 3);
        assert!(gil.try_acquire().is_some(), "nobody holds");
    });
}

/// A nested guard's region (`EnsureGuard::allow_threads`) lets the lock go while an outer
/// guard of the same hold lives, and takes it back: one thread at a time, every section once,
/// and the hold goes on with both guards after, ending with the outer one.
#[test]
fn a_nested_region_sets_the_hold_aside_and_resumes_it() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let other = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.acquire();
                data.bump();
            })
        };
        let outer = gil.acquire();
        data.bump();
        {
            let mut inner = gil.ensure();
            // SAFETY: the closure does nothing.
            unsafe { inner.allow_threads(|| ()) };
            data.bump();
        }
        assert!(gil.is_held_by_current_thread(), "the outer guard holds on");
        data.bump();
        drop(outer);
        other.join().unwrap();
        assert_eq!(data.bump(), 5, "every critical section ran once, in order");
        assert!(
            gil.try_acquire().is_some(),
            "the hold ended with its last guard"
        );
    });
}

/// A thread back from a blocking region while another holds the lock asks for a loan, and the
/// holder's checkpoint lends it and waits (asleep, in the model) for it back; or the region is
/// reclaimed, or the holder checkpoints before the ask and the thread waits in line. Every
/// way, one thread at a time, every critical section once, and the lender is woken; a second
/// region on the loan gives it back (else the lender would wait for it for ever). The fast
/// return as it ships: the region's time, moved forward by the model, earns the credit.
#[test]
fn a_thread_back_from_a_region_borrows_the_lock() {
    a_thread_back_from_a_region(Duration::from_millis(1));
}

/// As above, but the region takes no time: no credit is earned, so the thread comes back in
/// line and nothing is lent, as the fast return's rule says.
#[test]
fn a_thread_back_without_credit_borrows_nothing() {
    a_thread_back_from_a_region(Duration::ZERO);
}

fn a_thread_back_from_a_region(blocked: Duration) {
    // Executions in which the lock was lent: across executions, so std's atomic.
    static LENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(4, move || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let holds = Arc::new(AtomicBool::new(false));
        let borrower = {
            let (gil, data, holds) = (gil.clone(), data.clone(), holds.clone());
            thread::spawn(move || {
                let mut g = gil.acquire();
                holds.store(true, Release);
                data.bump();
                g.allow_threads(|| model_time::advance(blocked));
                // Reclaimed, lent, or granted in line: held, as far as the API can tell too
                // (on a loan asked for, the owner token stays the lender's).
                assert!(
                    gil.is_held_by_current_thread(),
                    "back from the region, not held"
                );
                data.bump();
                // A second region: on a loan, it gives the loan back to its lender.
                g.allow_threads(|| ());
                drop(g);
            })
        };
        while !holds.load(Acquire) {
            thread::yield_now();
        }
        let mut g = gil.acquire();
        data.bump();
        // Room for the borrower to come back and ask before the checkpoint: loom explores a
        // switch here only if a thread yields.
        thread::yield_now();
        thread::yield_now();
        g.checkpoint().unwrap();
        data.bump();
        drop(g);
        borrower.join().unwrap();
        assert_eq!(data.bump(), 5, "every critical section ran once");
        if blocked.is_zero() {
            assert_eq!(gil.stats().loans, 0, "lent without credit");
        }
        if gil.stats().loans > 0 {
            LENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if !blocked.is_zero() {
        let lent = LENT.load(std::sync::atomic::Ordering::Relaxed);
        assert!(lent > 0, "no execution lent: the region earned no credit");
    }
}

/// The clock as it ships, at the model's time: a waiter lists the lock as it queues; once it
/// has waited a whole switch interval with nobody handed the lock, the clock's look (a thread
/// of the model's, in place of the clock thread) asks the holder to drop, and the holder's
/// next checkpoint hands over. The lock is no longer listed once the waiter is done (a `Gil`
/// dropped while listed fails a debug check).
#[test]
fn the_clock_asks_the_holder_to_hand_over_after_a_whole_interval() {
    a_waiter_waits_a_whole_interval(true);
}

/// As above, but with no look of the clock's: the holder's own look at its slice, at its
/// checkpoint, finds the interval over and hands over.
#[test]
fn the_holder_ends_its_own_slice_after_a_whole_interval() {
    a_waiter_waits_a_whole_interval(false);
}

fn a_waiter_waits_a_whole_interval(clock_looks: bool) {
    model(3, move || {
        model_time::start_clock();
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let mut g = gil.acquire();
        let waiter = second_in(&gil, &data);
        data.bump();
        // Listed (the look takes the clock's mutex, which orders the listing's `SLICE_TIMER`
        // before this thread's checkpoint) and queued.
        while !(model_time::lists(&gil) && gil.has_waiters()) {
            thread::yield_now();
        }
        // A whole interval passes, and the clock looks, while the waiter goes to sleep.
        let interval = gil.switch_interval();
        let clock = thread::spawn(move || {
            model_time::advance(interval * 2);
            if clock_looks {
                model_time::clock_look();
            }
        });
        clock.join().unwrap();
        g.checkpoint().unwrap();
        assert_eq!(data.bump(), 3, "the holder did not hand over");
        drop(g);
        waiter.join().unwrap();
        let asked = gil.stats().clock_requests;
        assert_eq!(
            asked,
            u64::from(clock_looks),
            "drop requests of the clock's"
        );
    });
}

/// A thread that takes `gil` while this one holds it, and must come second to `data`.
fn second_in(gil: &Arc<Gil>, data: &Arc<Protected>) -> thread::JoinHandle<()> {
    let (gil, data) = (gil.clone(), data.clone());
    thread::spawn(move || {
        let _g = gil.acquire();
        assert_eq!(data.bump(), 2, "the waiter came second");
    })
}

/// A drop request: the holder's checkpoint hands the lock to the waiter and waits its turn to
/// get it back (the core's `checkpoint_with`, with gil-std's bookkeeping around it), so the
/// two never hold at once and each section runs once, in order.
#[test]
fn a_checkpoint_hands_over_on_a_drop_request_and_waits_its_turn() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let mut g = gil.acquire();
        let waiter = second_in(&gil, &data);
        while !gil.has_waiters() {
            thread::yield_now();
        }
        data.bump();
        gil.request_drop();
        g.checkpoint().unwrap();
        assert_eq!(data.bump(), 3, "the holder came back after the waiter");
        drop(g);
        waiter.join().unwrap();
        assert_eq!(gil.stats().forced_drops, 1);
    });
}

/// `ensure` nests: dropping a nested guard releases nothing, so another thread's `ensure`
/// gets in only after the outermost guard is gone.
#[test]
fn ensure_nesting() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let foreign = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || {
                let _g = gil.ensure();
                data.bump();
            })
        };
        let outer = gil.ensure();
        data.bump();
        {
            let _inner = gil.ensure();
            data.bump();
        }
        data.bump(); // still held: the nested guard released nothing
        drop(outer);
        foreign.join().unwrap();
    });
}

/// A timed acquire whose deadline passes just as the holder releases: it either times out
/// and leaves the lock free, or learns it was granted and holds it — never neither.
#[test]
fn timeout_vs_grant() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let data = Arc::new(Protected::new());
        let g = gil.acquire();
        let timed = {
            let (gil, data) = (gil.clone(), data.clone());
            thread::spawn(move || match gil.try_acquire_for(Duration::ZERO) {
                Ok(_g) => {
                    data.bump();
                    true
                }
                Err(e) => {
                    assert_eq!(e, AcquireError::Timeout);
                    false
                }
            })
        };
        data.bump();
        drop(g);
        let got = timed.join().unwrap();
        let g = gil.try_acquire();
        assert!(
            g.is_some(),
            "the lock was lost (the timed thread got it: {got})"
        );
        assert_eq!(data.bump(), if got { 3 } else { 2 });
    });
}

/// Closing while a thread waits wakes it with `Closed`; the holder finishes, including a
/// blocking region after the close.
#[test]
fn close_while_waiting() {
    model(4, || {
        let gil = Arc::new(Gil::new());
        let mut g = gil.acquire();
        let waiter = {
            let gil = gil.clone();
            thread::spawn(move || gil.acquire_checked().map(drop))
        };
        assert!(gil.close().is_empty(), "no pending calls");
        g.allow_threads(|| ());
        assert!(gil.is_held_by_current_thread(), "taken back after close");
        drop(g);
        assert_eq!(waiter.join().unwrap(), Err(AcquireError::Closed));
    });
}

/// Pending calls from two producers, racing with a holder's checkpoint, its release and a
/// close: each call is run exactly once under the lock, or handed back by `close`, or refused
/// as closed — never lost, never run twice.
#[test]
fn pending_calls_are_neither_lost_nor_run_twice() {
    model(3, || {
        let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
        let ran = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let ran = ran.clone();
                thread::spawn(move || {
                    let call = move |g: &GilGuard<'_>| {
                        assert!(g.gil().is_held_by_current_thread());
                        ran.fetch_add(1, Relaxed);
                    };
                    match gil.add_pending_call(call) {
                        Ok(()) => 0,
                        Err(PendingCallError::Closed(_)) => 1,
                        Err(PendingCallError::Full(_)) => unreachable!("room for 32"),
                    }
                })
            })
            .collect();
        let mut g = gil.acquire();
        g.checkpoint().unwrap();
        drop(g);
        let back = gil.close();
        let handed_back = back.len();
        drop(back);
        let refused: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(
            ran.load(Relaxed) + handed_back + refused,
            2,
            "every call ran, came back or was refused, once"
        );
    });
}

/// An interrupt made while another holder's checkpoint may clear the breaker bit, and while
/// the interrupted thread may or may not hold the lock, is reported exactly once.
#[test]
fn an_interrupt_is_reported_exactly_once() {
    model(3, || {
        let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
        let handle = gil.interrupt_handle();
        let interrupter = thread::spawn(move || handle.interrupt());
        let other = thread::spawn(move || {
            let mut g = gil.acquire();
            assert_eq!(g.checkpoint(), Ok(()), "not this thread's interrupt");
        });
        let mut reported = 0;
        let mut g = gil.acquire();
        reported += usize::from(g.checkpoint().is_err());
        drop(g);
        interrupter.join().unwrap();
        other.join().unwrap();
        let mut g = gil.acquire();
        reported += usize::from(g.checkpoint().is_err());
        assert_eq!(reported, 1);
    });
}

/// A thread blocked in a region until its unblock function runs: an interrupt made before,
/// during or just after it registers the function always unblocks it (else loom finds the
/// region spinning for ever), and the checkpoint after the region reports it.
#[test]
fn an_interrupt_always_unblocks_a_region() {
    model(3, || {
        let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
        let handle = gil.interrupt_handle();
        let interrupter = thread::spawn(move || handle.interrupt());
        let unblocked = AtomicBool::new(false);
        let mut g = gil.acquire();
        g.allow_threads_with_unblock(
            || {
                // Acquire pairs with the Release in the unblock function.
                while !unblocked.load(Acquire) {
                    thread::yield_now();
                }
            },
            || unblocked.store(true, Release),
        );
        assert_eq!(g.checkpoint(), Err(Interrupted));
        drop(g);
        interrupter.join().unwrap();
    });
}

/// Calls queued while a holder's checkpoint empties the queue are never stranded: the next
/// thread to take the lock runs whatever is left.
#[test]
fn pending_calls_are_never_stranded() {
    model(3, || {
        let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
        let ran = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let ran = ran.clone();
                thread::spawn(move || {
                    let call = move |_: &GilGuard<'_>| {
                        ran.fetch_add(1, Relaxed);
                    };
                    assert!(gil.add_pending_call(call).is_ok());
                })
            })
            .collect();
        let mut g = gil.acquire();
        g.checkpoint().unwrap();
        drop(g);
        for p in producers {
            p.join().unwrap();
        }
        drop(gil.acquire());
        assert_eq!(
            ran.load(Relaxed),
            2,
            "a call was left in the queue unannounced"
        );
    });
}
