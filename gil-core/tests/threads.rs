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
