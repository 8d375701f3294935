//! The core under real threads with the spinning strategy.
#![cfg(not(loom))]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use gil_core::{RawGil, SpinPark};
use spin::relax::RelaxStrategy;

/// Spinning on a 2-core machine with more threads than cores hands the lock to descheduled
/// threads; yielding to the OS between looks keeps the test quick.
struct YieldToOs;
impl RelaxStrategy for YieldToOs {
    fn relax() {
        thread::yield_now();
    }
}

type Gil = RawGil<SpinPark<YieldToOs>>;

/// A counter only the lock protects: lost updates would show as a wrong total.
struct Guarded<T>(UnsafeCell<T>);
// SAFETY: only touched by the owner of the lock in these tests.
unsafe impl<T: Send> Sync for Guarded<T> {}

fn threads() -> usize {
    if cfg!(miri) { 3 } else { 4 }
}

fn rounds() -> usize {
    if cfg!(miri) { 30 } else { 5_000 }
}

#[test]
fn mutual_exclusion_with_yields_and_drop_requests() {
    let gil: Gil = RawGil::new();
    let counter = Guarded(UnsafeCell::new(0usize));
    let inside = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..threads() {
            let (gil, counter, inside) = (&gil, &counter, &inside);
            s.spawn(move || {
                for i in 0..rounds() {
                    gil.lock().unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two owners");
                    // SAFETY: we own the lock, which guards the counter.
                    unsafe { *counter.0.get() += 1 };
                    if (i + t) % 7 == 0 {
                        gil.request_drop();
                    }
                    inside.fetch_sub(1, Ordering::Relaxed);
                    // SAFETY: we own the lock.
                    unsafe { gil.checkpoint() };
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two owners");
                    inside.fetch_sub(1, Ordering::Relaxed);
                    // SAFETY: we own the lock.
                    unsafe { gil.unlock() };
                }
            });
        }
    });
    assert_eq!(counter.0.into_inner(), threads() * rounds());
    assert!(!gil.is_locked() && !gil.has_waiters());
}

#[test]
fn a_drop_request_lets_a_waiter_in_while_the_owner_never_releases() {
    let gil: Gil = RawGil::new();
    let waiter_ran = AtomicBool::new(false);
    gil.lock().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            gil.lock().unwrap();
            waiter_ran.store(true, Ordering::Relaxed);
            // SAFETY: we own the lock.
            unsafe { gil.unlock() };
        });
        // The owner spins in its hot loop, asking for a drop whenever somebody waits: it only
        // goes on once the other thread has been through the lock.
        while !waiter_ran.load(Ordering::Relaxed) {
            if gil.has_waiters() {
                gil.request_drop();
            }
            // SAFETY: this thread owns the lock.
            unsafe { gil.checkpoint() };
        }
        assert!(gil.is_locked());
        // SAFETY: we own it again.
        unsafe { gil.unlock() };
    });
}

#[test]
fn close_releases_every_waiter() {
    let gil: Gil = RawGil::new();
    let closed = AtomicUsize::new(0);
    gil.lock().unwrap();
    thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| {
                if gil.lock().is_err() {
                    closed.fetch_add(1, Ordering::Relaxed);
                } else {
                    // SAFETY: we own it.
                    unsafe { gil.unlock() };
                }
            });
        }
        while !gil.has_waiters() {
            thread::yield_now();
        }
        gil.close();
    });
    // Every thread either got in before close (impossible: we held it) or was told Closed.
    assert_eq!(closed.load(Ordering::Relaxed), threads());
    // SAFETY: we still own it: close lets the owner finish.
    unsafe { gil.unlock() };
}

/// A parking strategy that spins for the queue and, for a lender, sleeps in steps while the
/// breaker word holds the value it was given, counting its sleeps and the wake-ups.
struct CountPark;

static LENDER_PARKS: AtomicUsize = AtomicUsize::new(0);
static LENDER_WAKES: AtomicUsize = AtomicUsize::new(0);

impl gil_core::Park for CountPark {
    type Parker = ();
    type Unparker = ();

    fn parker() {}

    fn unparker(_: &(), _: &gil_core::AtomicU32) {}

    fn park(_: &(), _: &gil_core::AtomicU32) {
        thread::yield_now();
    }

    fn unpark(_: ()) {}

    fn park_word(word: &gil_core::AtomicU32, value: u32) {
        LENDER_PARKS.fetch_add(1, Ordering::SeqCst);
        // Polls instead of a futex: a sleep the give-back was not told of ends anyway, and
        // shows in the count of wake-ups instead of hanging the test.
        while word.load(Ordering::SeqCst) == value {
            thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    fn unpark_word(_: &gil_core::AtomicU32) {
        LENDER_WAKES.fetch_add(1, Ordering::SeqCst);
    }
}

/// A lender waiting for its loan to come back marks itself asleep and sleeps on the breaker
/// word once, for as long as the loan is out; the give-back sees the mark and wakes it.
#[test]
fn a_lender_sleeps_once_for_its_loan_and_is_woken() {
    static GIL: RawGil<CountPark> = RawGil::new();
    static LENT: AtomicBool = AtomicBool::new(false);
    GIL.lock().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            while !GIL.ask_loan() {
                thread::yield_now();
            }
            while GIL.loan() == gil_core::Loan::Asked {
                thread::yield_now();
            }
            assert_eq!(GIL.loan(), gil_core::Loan::Lent);
            LENT.store(true, Ordering::SeqCst);
            // Held on loan far longer than a lender takes to go to sleep.
            thread::sleep(std::time::Duration::from_millis(100));
            // SAFETY: this thread holds the lock on the loan it asked for.
            unsafe { GIL.give_back() };
        });
        while GIL.breaker().pending() & gil_core::Breaker::LOAN_ASKED == 0 {
            thread::yield_now();
        }
        // SAFETY: this thread owns the lock.
        assert!(unsafe { GIL.lend_asked() }, "the ask stood");
        // SAFETY: lent just above.
        unsafe { GIL.wait_loan_back() };
    });
    assert!(LENT.load(Ordering::SeqCst));
    assert_eq!(
        LENDER_PARKS.load(Ordering::SeqCst),
        1,
        "the lender's sleeps"
    );
    assert_eq!(
        LENDER_WAKES.load(Ordering::SeqCst),
        1,
        "the give-back's wake-ups"
    );
    // SAFETY: the loan is back; this thread owns the lock.
    unsafe { GIL.unlock() };
}
