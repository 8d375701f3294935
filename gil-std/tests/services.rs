//! The runtime services on the breaker: pending calls, interrupts (with unblock functions),
//! runtime bits with handlers, and per-thread figures — under real threads.
#![cfg(not(loom))]

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Barrier, mpsc};
use std::thread;

use gil_core::Breaker;
use gil_std::{Gil, GilCell, Interrupted, NotARuntimeBit, PendingCallError, ThreadStats};

mod common;
use common::wait_until;

#[test]
fn pending_calls_from_concurrent_producers_run_exactly_once_in_order() {
    const PRODUCERS: u32 = 4;
    const EACH: u32 = 500;
    static GIL: Gil = Gil::new();
    static RAN: GilCell<RefCell<Vec<(u32, u32)>>> = GilCell::new(&GIL, RefCell::new(Vec::new()));
    let full = AtomicU32::new(0);
    let start = Barrier::new(PRODUCERS as usize + 1);
    thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (full, start) = (&full, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..EACH {
                    let mut call =
                        move |g: &gil_std::GilGuard<'_>| RAN.get(g).borrow_mut().push((p, i));
                    // Full hands the call back: retry it until there is room.
                    while let Err(e) = GIL.add_pending_call(call) {
                        assert!(matches!(e, PendingCallError::Full(_)), "{e}");
                        full.fetch_add(1, SeqCst);
                        call = e.into_call();
                        thread::yield_now();
                    }
                }
            });
        }
        // The holder runs them at its checkpoints, while the producers add more.
        let mut guard = GIL.acquire();
        start.wait();
        wait_until("every call to run", || {
            guard.checkpoint().unwrap();
            RAN.get(&guard).borrow().len() == (PRODUCERS * EACH) as usize
        });
    });
    let guard = GIL.acquire();
    let ran = RAN.get(&guard).borrow();
    assert_eq!(ran.len(), (PRODUCERS * EACH) as usize, "none ran twice");
    for p in 0..PRODUCERS {
        let mine: Vec<u32> = ran.iter().filter(|c| c.0 == p).map(|c| c.1).collect();
        assert_eq!(
            mine,
            (0..EACH).collect::<Vec<_>>(),
            "producer {p}: each once, in order"
        );
    }
    eprintln!("the queue was full {} times", full.load(SeqCst));
}

#[test]
fn the_next_thread_to_acquire_runs_calls_queued_while_nobody_held() {
    let gil = Gil::new();
    let ran = std::sync::Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    gil.add_pending_call(move |_| {
        r.fetch_add(1, SeqCst);
    })
    .unwrap();
    assert_eq!(ran.load(SeqCst), 0, "nobody holds the lock yet");
    let guard = gil.acquire();
    assert_eq!(ran.load(SeqCst), 1, "run before acquire returned");
    drop(guard);
    drop(gil.acquire());
    assert_eq!(ran.load(SeqCst), 1, "exactly once");
}

/// A thread that takes the lock while unwinding (in a destructor) does not run the calls
/// queued meanwhile: one that panicked there would abort the process. The next acquire runs
/// them.
#[test]
fn an_acquire_while_unwinding_leaves_the_pending_calls_for_later() {
    static RAN: AtomicBool = AtomicBool::new(false);
    struct AcquireOnDrop<'a>(&'a Gil, &'a AtomicBool);
    impl Drop for AcquireOnDrop<'_> {
        fn drop(&mut self) {
            let _g = self.0.acquire();
            self.1.store(RAN.load(SeqCst), SeqCst);
        }
    }
    let gil = Gil::new();
    gil.add_pending_call(|_| RAN.store(true, SeqCst)).unwrap();
    let ran_while_unwinding = AtomicBool::new(false);
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _d = AcquireOnDrop(&gil, &ran_while_unwinding);
        panic!("unwinding");
    }));
    assert!(unwound.is_err());
    assert!(
        !ran_while_unwinding.load(SeqCst),
        "a call ran while unwinding"
    );
    drop(gil.acquire());
    assert!(RAN.load(SeqCst), "the next acquire ran it");
}

#[test]
fn a_full_queue_hands_the_call_back_and_close_hands_back_the_rest_in_order() {
    let gil = Gil::new();
    let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Held from before the calls are queued, and no checkpoint until after close.
    let mut guard = gil.acquire();
    for i in 0..Gil::PENDING_CALLS {
        let ran = ran.clone();
        gil.add_pending_call(move |_| ran.lock().unwrap().push(i))
            .unwrap();
    }
    let refused = gil.add_pending_call(|_| ()).unwrap_err();
    assert!(matches!(refused, PendingCallError::Full(_)));

    let left = gil.close();
    assert_eq!(
        left.len(),
        Gil::PENDING_CALLS,
        "nothing ran, nothing was lost"
    );
    // The thread still holding the lock runs what close handed back.
    left.run(&guard);
    assert_eq!(
        *ran.lock().unwrap(),
        (0..Gil::PENDING_CALLS).collect::<Vec<_>>()
    );
    let late = gil.add_pending_call(|_| ()).unwrap_err();
    assert!(
        matches!(late, PendingCallError::Closed(_)),
        "refused after close"
    );
    guard.checkpoint().unwrap();
    assert_eq!(
        ran.lock().unwrap().len(),
        Gil::PENDING_CALLS,
        "none ran twice"
    );
    assert!(gil.close().is_empty(), "closing again hands back nothing");
}

#[test]
fn a_panicking_call_unwinds_out_of_the_checkpoint_and_the_rest_still_run() {
    let gil = Gil::new();
    let ran = std::sync::Arc::new(AtomicU32::new(0));
    let mut guard = gil.acquire();
    gil.add_pending_call(|_| panic!("a broken call")).unwrap();
    let r = ran.clone();
    gil.add_pending_call(move |_| {
        r.fetch_add(1, SeqCst);
    })
    .unwrap();
    let unwound = catch_unwind(AssertUnwindSafe(|| guard.checkpoint()));
    assert!(unwound.is_err(), "the panic reached the caller");
    assert!(
        gil.is_held_by_current_thread(),
        "still held after the unwind"
    );
    assert_eq!(ran.load(SeqCst), 0, "the call behind it has not run yet");
    guard.checkpoint().unwrap();
    assert_eq!(ran.load(SeqCst), 1, "and runs at the next checkpoint");
}

#[test]
fn an_interrupt_reaches_a_cpu_bound_holder_once() {
    let gil = Gil::new();
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut guard = gil.acquire();
            tx.send(gil.interrupt_handle()).unwrap();
            let mut steps = 0u64;
            let seen = loop {
                steps += 1;
                if let Err(e) = guard.checkpoint() {
                    break e;
                }
            };
            assert_eq!(seen, Interrupted);
            assert_eq!(guard.checkpoint(), Ok(()), "reported once");
            steps
        });
        let handle = rx.recv().unwrap();
        handle.interrupt();
        assert!(worker.join().unwrap() > 0);
        assert!(!handle.is_pending(), "reported");
    });
}

#[test]
fn an_interrupt_reaches_a_queued_waiter_when_it_gets_the_lock() {
    let gil = Gil::new();
    let (tx, rx) = mpsc::channel();
    let held = gil.acquire();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            tx.send(gil.interrupt_handle()).unwrap();
            let mut guard = gil.acquire(); // queues behind the main thread
            guard.checkpoint()
        });
        let handle = rx.recv().unwrap();
        wait_until("the waiter to queue", || gil.has_waiters());
        handle.interrupt();
        assert!(handle.is_pending(), "pending while it waits");
        // Before the waiter gets the lock, another holder's checkpoint sees the breaker bit,
        // which is not for it: cleared, and this holder goes on.
        let mut held = held;
        // Nobody else waits behind the waiter, so a checkpoint here hands over only on request.
        assert_eq!(held.checkpoint(), Ok(()), "not this thread's interrupt");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Err(Interrupted));
    });
}

#[test]
fn an_interrupt_made_while_a_thread_is_away_is_reported_after_it_takes_the_lock() {
    let gil = Gil::new();
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    thread::scope(|s| {
        let gil = &gil;
        let target = s.spawn(move || {
            tx.send(gil.interrupt_handle()).unwrap();
            go_rx.recv().unwrap();
            let mut guard = gil.acquire(); // uncontended
            guard.checkpoint()
        });
        let handle = rx.recv().unwrap();
        handle.interrupt();
        // Another holder clears the breaker bit before the target takes the lock.
        let mut other = gil.acquire();
        assert_eq!(other.checkpoint(), Ok(()));
        drop(other);
        go_tx.send(()).unwrap();
        assert_eq!(target.join().unwrap(), Err(Interrupted));
    });
}

#[test]
fn an_interrupt_unblocks_a_thread_in_a_region_through_its_unblock_function() {
    let gil = Gil::new();
    let (tx, rx) = mpsc::channel();
    let entered = AtomicBool::new(false);
    thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut guard = gil.acquire();
            tx.send(gil.interrupt_handle()).unwrap();
            let (wake, wait) = mpsc::channel::<&str>();
            let woke_by = guard.allow_threads_with_unblock(
                || {
                    entered.store(true, SeqCst);
                    wait.recv().unwrap() // blocks until the unblock function sends
                },
                || {
                    let _ = wake.send("unblock");
                },
            );
            (woke_by, guard.checkpoint())
        });
        let handle = rx.recv().unwrap();
        wait_until("the worker to block", || entered.load(SeqCst));
        handle.interrupt();
        assert_eq!(worker.join().unwrap(), ("unblock", Err(Interrupted)));
    });
}

#[test]
fn an_interrupt_made_before_a_region_unblocks_it_at_once() {
    let gil = Gil::new();
    let mut guard = gil.acquire();
    gil.interrupt_handle().interrupt();
    let (wake, wait) = mpsc::channel::<()>();
    // Without the call at entry this would block for ever: nobody else sends.
    guard.allow_threads_with_unblock(|| wait.recv().unwrap(), || wake.send(()).unwrap());
    assert_eq!(guard.checkpoint(), Err(Interrupted));
    // Outside any region now: interrupting calls no unblock function.
    gil.interrupt_handle().interrupt();
    assert_eq!(guard.checkpoint(), Err(Interrupted));
}

#[test]
fn runtime_bits_run_their_handler_at_the_holders_checkpoint() {
    const GC: u32 = Breaker::runtime_bit(0);
    const SIGNAL: u32 = Breaker::runtime_bit(23);
    const UNHANDLED: u32 = Breaker::runtime_bit(5);
    static GIL: Gil = Gil::new();
    static GCS: AtomicU32 = AtomicU32::new(0);
    static SIGNALS: AtomicU32 = AtomicU32::new(0);
    GIL.set_breaker_handler(
        GC,
        Some(&|g, bit| {
            assert!(g.gil().is_held_by_current_thread());
            assert_eq!(bit, GC);
            GCS.fetch_add(1, SeqCst);
        }),
    )
    .unwrap();
    GIL.set_breaker_handler(
        SIGNAL,
        Some(&|_, _| {
            SIGNALS.fetch_add(1, SeqCst);
        }),
    )
    .unwrap();
    assert_eq!(GIL.set_breaker_handler(1, None), Err(NotARuntimeBit(1)));
    assert_eq!(
        GIL.set_breaker_handler(GC | SIGNAL, None),
        Err(NotARuntimeBit(GC | SIGNAL))
    );
    assert_eq!(GIL.raise(Breaker::DROP_REQUEST), Err(NotARuntimeBit(1)));
    assert_eq!(GIL.raise(0), Err(NotARuntimeBit(0)));

    // Raised while nobody holds: the next holder's first checkpoint runs it.
    thread::spawn(|| GIL.raise(GC | UNHANDLED).unwrap())
        .join()
        .unwrap();
    let mut guard = GIL.acquire();
    assert_eq!(
        GCS.load(SeqCst),
        0,
        "handlers run at checkpoints, not on acquire"
    );
    guard.checkpoint().unwrap();
    assert_eq!((GCS.load(SeqCst), SIGNALS.load(SeqCst)), (1, 0));
    // Raised twice before a checkpoint: merged.
    GIL.raise(SIGNAL).unwrap();
    GIL.raise(SIGNAL | GC).unwrap();
    guard.checkpoint().unwrap();
    guard.checkpoint().unwrap();
    assert_eq!((GCS.load(SeqCst), SIGNALS.load(SeqCst)), (2, 1));
    assert_eq!(GIL.stats().forced_drops, 0);
}

#[test]
fn thread_stats_count_the_waits_of_the_calling_thread_only() {
    let gil = Gil::new();
    let before = ThreadStats::current();
    let held = gil.acquire();
    let waiter_stats = thread::scope(|s| {
        let waiter = s.spawn(|| {
            let before = ThreadStats::current();
            drop(gil.acquire());
            ThreadStats::current() - before
        });
        wait_until("the waiter to queue", || gil.has_waiters());
        drop(held);
        waiter.join().unwrap()
    });
    assert_eq!(waiter_stats.contended, 1);
    assert!(waiter_stats.wait_time > std::time::Duration::ZERO);
    assert_eq!(
        (ThreadStats::current() - before).contended,
        0,
        "the holder never waited"
    );
}
