//! The fast return from blocking regions (`Gil::set_fast_return`), under real threads. Nothing
//! here depends on timing: each thread waits for a condition, with a deadline that fails the
//! test instead of hanging it, and the switch interval is an hour, so the clock never steps in.
//! A loan is lent only while the thread that asked stays awake, so a test that needs one has the
//! holder hand a thread back in line its turn, and the thread try again ([`Lending`]).
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Gil, ThreadStats};

mod common;
use common::{Lending, earn_credit, wait_until};

/// A thread `t` holds first, blocks 5 ms (earning credit) while `h` takes the lock and only
/// checkpoints; `t` must get the lock back from `h` by a loan, long before any interval. The
/// fast return is left as a new lock has it: on.
#[test]
fn a_thread_back_from_blocking_borrows_the_lock_from_a_busy_holder() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    let back = AtomicBool::new(false);
    let released = AtomicBool::new(false);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let holder = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            wait_until("the other thread came back", || {
                h.checkpoint().unwrap(); // lends here
                back.load(SeqCst) || lending.hand_over_if_queued(&gil, &mut h)
            });
            wait_until("the loan came back", || released.load(SeqCst));
            assert!(gil.is_held_by_current_thread(), "the lender holds again");
        });
        wait_until("the holder queued", || gil.has_waiters());
        lending.come_back_on_loan(&gil, &mut g);
        // Back with the lock while the holder is still in its loop: it was lent. On loan, this
        // thread is the holder as far as the API can tell (the owner token stays the
        // lender's meanwhile): `ensure` nests instead of waiting for itself.
        assert!(gil.is_held_by_current_thread());
        assert!(gil.ensure().is_nested());
        back.store(true, SeqCst);
        drop(g);
        released.store(true, SeqCst);
        holder.join().unwrap();
    });
    // (Counted by the lender once its loan is out, so read it after the lender is done.)
    assert_eq!(gil.stats().loans, 1);
}

/// With the fast return off, the same thread comes back in line: the busy holder's checkpoints
/// do not lend to it, and it gets the lock when the holder yields.
#[test]
fn with_the_fast_return_off_a_thread_back_from_blocking_waits_its_turn() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    gil.set_fast_return(false);
    let back = AtomicBool::new(false);
    thread::scope(|s| {
        let mut g = gil.acquire();
        let holder = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            wait_until("the other thread queued to come back", || {
                h.checkpoint().unwrap(); // would lend here, with the fast return on
                gil.has_waiters() || back.load(SeqCst)
            });
            assert!(!back.load(SeqCst), "lent with the fast return off");
            assert!(h.hand_over(), "the other thread waits in line");
        });
        wait_until("the holder queued", || gil.has_waiters());
        earn_credit(&gil, &mut g);
        back.store(true, SeqCst);
        drop(g);
        holder.join().unwrap();
    });
    assert_eq!(gil.stats().loans, 0);
}

/// A thread back from blocking with credit whose ask nobody answers (the holder does not
/// checkpoint) withdraws it once it stops staying awake, and waits its turn in line: the holder
/// sees it queued, and it gets the lock when the holder lets go, not on loan.
#[test]
fn an_unanswered_ask_ends_in_line() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    thread::scope(|s| {
        let mut g = gil.acquire();
        let holder = s.spawn(|| {
            let h = gil.acquire(); // queued behind `g`
            // No checkpoint: nothing is lent.
            wait_until("the thread back from its region queued", || {
                gil.has_waiters()
            });
            drop(h);
        });
        wait_until("the holder queued", || gil.has_waiters());
        earn_credit(&gil, &mut g);
        assert!(gil.is_held_by_current_thread());
        drop(g);
        holder.join().unwrap();
    });
    assert_eq!(gil.stats().loans, 0);
}

/// A lender whose loan outlasts its stay awake sleeps for it, and that wait counts as one of
/// its takings that waited (`ThreadStats::contended`).
#[test]
fn a_lender_that_sleeps_for_its_loan_counts_the_wait() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    gil.set_fast_return(true);
    let back = AtomicBool::new(false);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let lender = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            let mut before = ThreadStats::current();
            wait_until("the other thread came back", || {
                h.checkpoint().unwrap(); // lends here, and is back once the loan is
                if back.load(SeqCst) {
                    return true;
                }
                lending.hand_over_if_queued(&gil, &mut h);
                // A hand-over's wait is not the loan's.
                before = ThreadStats::current();
                false
            });
            (ThreadStats::current() - before).contended
        });
        wait_until("the lender queued", || gil.has_waiters());
        lending.come_back_on_loan(&gil, &mut g);
        back.store(true, SeqCst); // holding on loan: the lender is in its checkpoint
        // Far longer than the lender stays awake.
        thread::sleep(Duration::from_millis(20));
        drop(g);
        assert_eq!(
            lender.join().unwrap(),
            1,
            "the lender's wait was not counted"
        );
    });
    assert_eq!(gil.stats().loans, 1);
}

/// A lender sleeps while its loan is out (after it stays awake `LOAN_SPIN`): over a 300 ms
/// loan, the checkpoint that lent uses a tiny part of that in CPU time; a lender that spun
/// (or woke again and again) would use a large part of it even on a loaded machine.
#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation forbids")]
fn a_lender_sleeps_while_its_loan_is_out() {
    use common::thread_cpu_time;

    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    gil.set_fast_return(true);
    let back = AtomicBool::new(false);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let lender = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            // The longest checkpoint is the one that lent: its CPU time and its length.
            let mut longest = (Duration::ZERO, Duration::ZERO);
            wait_until("the other thread came back", || {
                let (cpu, start) = (thread_cpu_time(), Instant::now());
                h.checkpoint().unwrap();
                let took = (thread_cpu_time() - cpu, start.elapsed());
                if took.1 > longest.1 {
                    longest = took;
                }
                back.load(SeqCst) || lending.hand_over_if_queued(&gil, &mut h)
            });
            longest
        });
        wait_until("the lender queued", || gil.has_waiters());
        lending.come_back_on_loan(&gil, &mut g);
        back.store(true, SeqCst); // holding on loan: the lender is in its checkpoint
        thread::sleep(Duration::from_millis(300));
        drop(g);
        let (cpu, lent) = lender.join().unwrap();
        assert!(
            cpu < lent / 10,
            "a lender used {cpu:?} of CPU time over a {lent:?} loan"
        );
    });
}

/// A thread that held out of turn for long runs into debt, and comes back from its next
/// (short) region in line: no second loan.
#[test]
fn a_thread_in_debt_comes_back_in_line() {
    let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
    gil.set_fast_return(true);
    let stage = std::sync::atomic::AtomicU32::new(0);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let holder = s.spawn(|| {
            let mut h = gil.acquire();
            // Checkpoint until the other thread is queued in line after its second region, then
            // a little more, then let go.
            wait_until("the other thread's second return", || {
                h.checkpoint().unwrap();
                match stage.load(SeqCst) {
                    0 => lending.hand_over_if_queued(&gil, &mut h),
                    2 => gil.has_waiters(),
                    _ => false,
                }
            });
            for _ in 0..1000 {
                h.checkpoint().unwrap();
            }
        });
        wait_until("the holder queued", || gil.has_waiters());
        // Earns, and borrows: the region lasts until the holder has taken the lock it was
        // offered (a region that ends first keeps its turn and earns nothing), and 5 ms more.
        lending.come_back_on_loan(&gil, &mut g);
        stage.store(1, SeqCst);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            g.checkpoint().unwrap(); // 50 ms out of turn: far more than it earned
        }
        stage.store(2, SeqCst);
        // A region long enough for the lender to take the lock it is offered (then nobody is
        // queued); coming back in debt, this thread queues in line behind it.
        g.allow_threads(|| wait_until("the lender took the lock", || !gil.has_waiters()));
        drop(g);
        holder.join().unwrap();
    });
    // The first return was a loan (the holder lets go before the second return only to a
    // thread in line, which then tries again); the second was not.
    assert_eq!(gil.stats().loans, 1, "lent again to a thread in debt");
}

/// A borrower that never blocks again does not keep the lock: once the lender's slice is over,
/// the clock asks, and the borrower's checkpoint hands the lock back to the lender. (The two
/// sides of a loan leave the clock alone while they stay awake; this is what they must arm it
/// for when they go to sleep.) The lender checkpoints all along.
#[test]
fn a_loan_that_does_not_end_ends_with_the_lenders_slice() {
    let gil = Gil::with_switch_interval(Duration::from_millis(20));
    gil.set_fast_return(true);
    let lent = AtomicBool::new(false);
    let lender_back = AtomicBool::new(false);
    let lending = Lending::default();
    thread::scope(|s| {
        let mut g = gil.acquire();
        let lender = s.spawn(|| {
            let mut h = gil.acquire(); // queued behind `g`
            wait_until("a loan", || {
                h.checkpoint().unwrap(); // lends here, and comes back only when given back
                lent.load(SeqCst) || lending.hand_over_if_queued(&gil, &mut h)
            });
            lender_back.store(true, SeqCst);
        });
        wait_until("the lender queued", || gil.has_waiters());
        lending.come_back_on_loan(&gil, &mut g);
        lent.store(true, SeqCst); // holding again, out of turn: the lender is in its checkpoint
        wait_until("the lender got the lock back", || {
            g.checkpoint().unwrap();
            lender_back.load(SeqCst)
        });
        drop(g);
        lender.join().unwrap();
    });
    assert_eq!(gil.stats().loans, 1);
}
