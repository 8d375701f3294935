//! The core under real threads with the spinning strategy.
#![cfg(not(loom))]

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use gil_core::model::Steps;
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

/// A parking strategy that yields for the queue and, for a lender, sleeps in steps while the
/// breaker word holds the value it was given, counting its sleeps and the wake-ups. `N` picks
/// the counters, one pair per test.
struct CountPark<const N: usize>;

static LENDER_PARKS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static LENDER_WAKES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

impl<const N: usize> gil_core::Park for CountPark<N> {
    type Parker = ();
    type Unparker = ();

    fn parker() {}

    fn unparker(_: &(), _: &gil_core::AtomicU32) {}

    fn park(_: &(), _: &gil_core::AtomicU32) {
        thread::yield_now();
    }

    fn unpark(_: ()) {}

    fn park_word(word: &gil_core::AtomicU32, value: u32) {
        LENDER_PARKS[N].fetch_add(1, Ordering::SeqCst);
        // Polls instead of a futex: a sleep the give-back was not told of ends anyway, and
        // shows in the count of wake-ups instead of hanging the test.
        while word.load(Ordering::SeqCst) == value {
            thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    fn unpark_word(_: &gil_core::AtomicU32) {
        LENDER_WAKES[N].fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `done`, failing after ten seconds.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting for: {what}"
        );
        thread::yield_now();
    }
}

/// Lends `gil`, held by the caller, to `borrower` (which asks, holds and gives back) once an
/// ask stands; `then` runs between the grant and the wait for the loan to come back.
fn lend<const N: usize>(
    gil: &'static RawGil<CountPark<N>>,
    borrower: impl FnOnce() + Send,
    then: impl FnOnce(),
) {
    thread::scope(|s| {
        s.spawn(borrower);
        until("an ask", || {
            gil.breaker().pending() & gil_core::Breaker::LOAN_ASKED != 0
        });
        // SAFETY: the caller owns the lock.
        assert!(unsafe { gil.lend_asked() }, "the ask stood");
        then();
        // SAFETY: lent just above.
        unsafe { gil.wait_loan_back() };
    });
}

/// A lender waiting for its loan to come back marks itself asleep and sleeps on the breaker
/// word once, for as long as the loan is out; the give-back sees the mark and wakes it.
#[test]
fn a_lender_sleeps_once_for_its_loan_and_is_woken() {
    static GIL: RawGil<CountPark<0>> = RawGil::new();
    GIL.lock().unwrap();
    let borrower = || {
        until("a grant", || GIL.ask_loan());
        until("a grant", || GIL.loan() != gil_core::model::Loan::Asked);
        assert_eq!(GIL.loan(), gil_core::model::Loan::Lent);
        // Held on loan far longer than a lender takes to go to sleep.
        thread::sleep(std::time::Duration::from_millis(100));
        // SAFETY: this thread holds the lock on the loan it asked for.
        unsafe { GIL.give_back() };
    };
    lend(&GIL, borrower, || {});
    assert_eq!(
        LENDER_PARKS[0].load(Ordering::SeqCst),
        1,
        "the lender's sleeps"
    );
    assert_eq!(
        LENDER_WAKES[0].load(Ordering::SeqCst),
        1,
        "the give-back's wake-ups"
    );
    // SAFETY: the loan is back; this thread owns the lock.
    unsafe { GIL.unlock() };
}

/// A loan given back before its lender waits for it costs no sleep and no wake-up. The
/// borrower asks with `borrow_with`, which stays awake as its policy says until the grant,
/// and holds the lock on loan.
#[test]
fn a_loan_back_before_the_lender_waits_wakes_nobody() {
    static GIL: RawGil<CountPark<1>> = RawGil::new();
    static BACK: AtomicBool = AtomicBool::new(false);
    /// Stays awake until the ask is answered.
    struct Awake;
    impl gil_core::WaitPolicy<CountPark<1>> for Awake {
        fn spin(&mut self) -> bool {
            thread::yield_now();
            true
        }
    }
    GIL.lock().unwrap();
    let borrower = || {
        assert!(
            GIL.borrow_with(&mut Awake),
            "not lent, though the holder lent"
        );
        // SAFETY: this thread holds the lock on the loan it asked for.
        unsafe { GIL.give_back() };
        BACK.store(true, Ordering::SeqCst);
    };
    lend(&GIL, borrower, || {
        until("the loan back", || BACK.load(Ordering::SeqCst))
    });
    assert_eq!(
        LENDER_PARKS[1].load(Ordering::SeqCst),
        0,
        "the lender's sleeps"
    );
    assert_eq!(
        LENDER_WAKES[1].load(Ordering::SeqCst),
        0,
        "the give-back's wake-ups"
    );
    // SAFETY: the loan is back; this thread owns the lock.
    unsafe { GIL.unlock() };
}
