//! Timed preemption and timed acquisition, under real threads.
//!
//! Nothing here asserts that something happens *fast*: a loaded machine may be slow. What is
//! asserted either holds on any machine (progress, which only the clock can cause; a lower
//! bound, since the clock never asks for a drop before a whole interval has passed) or has a
//! margin of orders of magnitude.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{AcquireError, Gil};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Waits until some thread is queued on `gil`, failing the test after the deadline.
fn wait_for_a_waiter(gil: &Gil) {
    let give_up = deadline();
    while !gil.has_waiters() {
        assert!(Instant::now() < give_up, "no thread ever queued");
        thread::yield_now();
    }
}

/// Two threads that never release, only checkpoint, each until it has seen the other make
/// progress `rounds` times. Only the clock's drop requests can move the lock between them.
/// Returns the wall time taken and the drops honoured.
fn alternate(gil: &Gil, rounds: u64) -> (Duration, u64) {
    let progress = [AtomicU64::new(0), AtomicU64::new(0)];
    let done = [AtomicBool::new(false), AtomicBool::new(false)];
    let drops_before = gil.stats().forced_drops;
    let start = Instant::now();
    let give_up = deadline();
    thread::scope(|s| {
        for me in 0..2 {
            let (progress, done) = (&progress, &done);
            s.spawn(move || {
                let mut g = gil.acquire();
                let mut seen = progress[1 - me].load(SeqCst);
                let mut changes = 0;
                // Keep working (and checkpointing) until both have seen enough of each other.
                while !(done[me].load(SeqCst) && done[1 - me].load(SeqCst)) {
                    progress[me].fetch_add(1, SeqCst);
                    g.checkpoint().unwrap();
                    let now = progress[1 - me].load(SeqCst);
                    if now != seen {
                        seen = now;
                        changes += 1;
                        if changes >= rounds {
                            done[me].store(true, SeqCst);
                        }
                    }
                    assert!(
                        Instant::now() < give_up,
                        "thread {me} starved: no preemption"
                    );
                }
            });
        }
    });
    (start.elapsed(), gil.stats().forced_drops - drops_before)
}

#[test]
fn two_threads_that_never_release_both_progress() {
    let gil = Gil::with_switch_interval(Duration::from_millis(1));
    let (took, drops) = alternate(&gil, 5);
    assert!(
        drops >= 5,
        "only drop requests can have moved the lock: {drops}"
    );
    eprintln!("1 ms interval: 5 alternations each in {took:?}, {drops} forced drops");
}

#[test]
fn a_longer_interval_switches_less_often() {
    // Lower bound, true on any machine: the clock asks for a drop only after the holder has
    // held a whole interval, so 3 alternations each at 40 ms take at least 3 intervals.
    let slow = Gil::with_switch_interval(Duration::from_millis(40));
    let (took_slow, drops_slow) = alternate(&slow, 3);
    assert!(took_slow >= Duration::from_millis(3 * 40), "{took_slow:?}");

    // Over at least as much time, a 40x shorter interval switches more often.
    let fast = Gil::with_switch_interval(Duration::from_millis(1));
    let start = Instant::now();
    let mut rounds = 3;
    let mut drops_fast = 0;
    while start.elapsed() < took_slow {
        drops_fast += alternate(&fast, rounds).1;
        rounds *= 2;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "40 ms: {drops_slow} drops in {took_slow:?}; 1 ms: {drops_fast} drops in {elapsed:?}"
    );
    assert!(drops_fast > drops_slow, "{drops_fast} <= {drops_slow}");
}

#[test]
fn a_new_interval_takes_effect_while_threads_run() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL); // an hour
    let waiter_in = AtomicBool::new(false);
    thread::scope(|s| {
        let mut g = gil.acquire();
        s.spawn(|| {
            let _g = gil.acquire();
            waiter_in.store(true, SeqCst);
        });
        wait_for_a_waiter(&gil);
        // With an hour's interval the waiter would wait an hour; lowering it must reach the
        // holder of the moment.
        gil.set_switch_interval(Duration::from_millis(1)).unwrap();
        let give_up = deadline();
        while !waiter_in.load(SeqCst) {
            g.checkpoint().unwrap();
            assert!(
                Instant::now() < give_up,
                "the new interval never took effect"
            );
        }
    });
}

#[test]
fn out_of_range_intervals_are_refused() {
    let gil = Gil::new();
    for bad in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(3601),
        Duration::MAX,
    ] {
        let err = gil.set_switch_interval(bad).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    assert_eq!(gil.switch_interval(), Gil::DEFAULT_SWITCH_INTERVAL);
    assert!(gil.set_switch_interval(Gil::MIN_SWITCH_INTERVAL).is_ok());
    assert!(gil.set_switch_interval(Gil::MAX_SWITCH_INTERVAL).is_ok());
}

#[test]
#[should_panic(expected = "switch interval must be from 10 µs to one hour")]
fn a_zero_interval_at_construction_panics() {
    let _ = Gil::with_switch_interval(std::hint::black_box(Duration::ZERO));
}

#[test]
fn try_acquire_for_gets_the_lock_when_it_is_released_in_time() {
    let gil = Gil::new();
    let held = gil.acquire();
    thread::scope(|s| {
        let waiter = s.spawn(|| gil.try_acquire_for(Duration::from_secs(60)).map(drop));
        wait_for_a_waiter(&gil);
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(()));
    });
}

#[test]
fn try_acquire_for_times_out_and_leaves_the_queue_clean() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    let held = gil.acquire();
    thread::scope(|s| {
        let r = s
            .spawn(|| gil.try_acquire_for(Duration::from_millis(5)).map(drop))
            .join();
        assert_eq!(r.unwrap(), Err(AcquireError::Timeout));
    });
    assert!(!gil.has_waiters(), "the timed-out waiter left the queue");
    drop(held);
    assert!(gil.try_acquire().is_some());
}

#[test]
fn try_acquire_for_reports_close() {
    let gil = Gil::new();
    let held = gil.acquire();
    thread::scope(|s| {
        let waiter = s.spawn(|| gil.try_acquire_for(Duration::from_secs(60)).map(drop));
        wait_for_a_waiter(&gil);
        assert!(gil.close().is_empty(), "no pending calls");
        assert_eq!(waiter.join().unwrap(), Err(AcquireError::Closed));
    });
    drop(held);
    assert_eq!(
        gil.try_acquire_for(Duration::from_secs(1)).err(),
        Some(AcquireError::Closed)
    );
}

#[test]
fn many_timed_waiters_some_time_out_none_is_lost() {
    let gil = Gil::with_switch_interval(Duration::from_millis(1));
    let got = AtomicU64::new(0);
    let timed_out = AtomicU64::new(0);
    thread::scope(|s| {
        for i in 0..8u64 {
            let (gil, got, timed_out) = (&gil, &got, &timed_out);
            s.spawn(move || {
                for j in 0..50u64 {
                    let limit = Duration::from_micros(50 * ((i + j) % 5));
                    match gil.try_acquire_for(limit) {
                        Ok(mut g) => {
                            got.fetch_add(1, SeqCst);
                            g.checkpoint().unwrap();
                        }
                        Err(AcquireError::Timeout) => {
                            timed_out.fetch_add(1, SeqCst);
                        }
                        Err(AcquireError::Closed) => unreachable!(),
                    }
                }
            });
        }
    });
    assert_eq!(got.load(SeqCst) + timed_out.load(SeqCst), 400);
    assert!(!gil.has_waiters());
    assert!(
        gil.try_acquire().is_some(),
        "no grant was lost to a timeout"
    );
}

#[test]
fn a_longer_new_interval_does_not_ask_early() {
    // Changing the interval reschedules the listed lock; a longer one must not make the clock
    // look (and ask for a drop) before the new interval has passed since the last switch.
    let gil = Gil::with_switch_interval(Duration::from_secs(1800));
    thread::scope(|s| {
        let mut g = gil.acquire();
        let waiter = s.spawn(|| drop(gil.acquire()));
        wait_for_a_waiter(&gil);
        gil.set_switch_interval(Gil::MAX_SWITCH_INTERVAL).unwrap();
        thread::sleep(Duration::from_millis(100)); // time for a wrong early look to happen
        g.checkpoint().unwrap();
        assert_eq!(
            gil.stats().forced_drops,
            0,
            "asked for a drop long before the interval"
        );
        drop(g);
        waiter.join().unwrap();
    });
}

#[test]
fn a_shorter_new_interval_is_taken_at_once() {
    // A shorter interval reschedules the listed lock at once: the clock asks for a drop one
    // new interval after the last switch, not at the old deadline half an hour away. The
    // holder makes no checkpoint, so the request can only be the clock's.
    let gil = Gil::with_switch_interval(Duration::from_secs(1800));
    thread::scope(|s| {
        let mut g = gil.acquire();
        let waiter = s.spawn(|| drop(gil.acquire()));
        wait_for_a_waiter(&gil);
        gil.set_switch_interval(Duration::from_millis(10)).unwrap();
        let give_up = deadline();
        while gil.stats().clock_requests == 0 {
            assert!(Instant::now() < give_up, "the clock kept the old deadline");
            thread::sleep(Duration::from_millis(1));
        }
        g.checkpoint().unwrap(); // hands over
        drop(g);
        waiter.join().unwrap();
    });
    assert_eq!(gil.stats().forced_drops, 1);
}

#[test]
fn one_waiter_timing_out_leaves_the_others_deadlines_alone() {
    // Each timed waiter has its own wake-up at its deadline. When a short one times out and
    // removes its wake-up, a longer one's must stay: the longer waiter must still time out
    // while the lock stays held, not wait for the release.
    let gil = Gil::new();
    let held = gil.acquire();
    thread::scope(|s| {
        let long = s.spawn(|| gil.try_acquire_for(Duration::from_millis(300)).map(drop));
        wait_for_a_waiter(&gil);
        let short = s.spawn(|| gil.try_acquire_for(Duration::from_millis(1)).map(drop));
        assert_eq!(short.join().unwrap(), Err(AcquireError::Timeout));
        let give_up = deadline();
        while !long.is_finished() {
            assert!(
                Instant::now() < give_up,
                "the longer waiter's deadline was lost"
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(long.join().unwrap(), Err(AcquireError::Timeout));
    });
    drop(held);
}

#[test]
fn contended_locks_can_be_dropped_right_away() {
    // Each lock gets a queued waiter (so the clock lists it) and is dropped as soon as its
    // threads are done. With an hour's interval the clock never looks at it meanwhile, so only
    // the last thread out of the queue can have unlisted it; a debug assertion in `Drop` checks.
    for round in 0..50u64 {
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        let held = gil.acquire();
        thread::scope(|s| {
            let timed = s.spawn(|| {
                gil.try_acquire_for(Duration::from_micros(round % 3 * 50))
                    .is_ok()
            });
            let plain = s.spawn(|| drop(gil.acquire()));
            wait_for_a_waiter(&gil);
            drop(held);
            let _ = timed.join().unwrap();
            plain.join().unwrap();
        });
        // Dropped where it is, at the end of the round (not moved into `drop`, which would
        // check the listing at another address).
    }
}
