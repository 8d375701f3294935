//! Waiting for a `std` mutex while holding the `Gil` (`Blocking`): the plain call deadlocks
//! against a thread that holds the mutex and waits for the `Gil`; the helper does not.
#![cfg(not(loom))]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Blocking, Gil};

mod common;
use common::wait_until;

/// Thread B holds the `Gil`; thread A takes the mutex and waits for the `Gil`; then B locks
/// the mutex, plainly or through the helper. Returns whether B finished within `within`.
/// The threads are left behind if it did not (they deadlocked).
fn lock_order_inversion(helper: bool, within: Duration) -> bool {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let mutex: &'static Mutex<u32> = Box::leak(Box::new(Mutex::new(0)));
    let done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (gil_held, wait_gil_held) = mpsc::channel();
    let (mutex_held, wait_mutex_held) = mpsc::channel();
    thread::spawn(move || {
        wait_gil_held.recv().unwrap();
        let mut m = mutex.lock().unwrap();
        mutex_held.send(()).unwrap();
        let _g = gil.acquire(); // waits for B
        *m += 1;
    });
    thread::spawn(move || {
        let mut g = gil.acquire();
        gil_held.send(()).unwrap();
        wait_mutex_held.recv().unwrap();
        wait_until("A waits for the Gil", || gil.has_waiters());
        let mut m = if helper {
            g.lock(mutex).unwrap()
        } else {
            mutex.lock().unwrap()
        };
        *m += 1;
        drop(m);
        drop(g);
        done.store(true, SeqCst);
    });
    let until = Instant::now() + within;
    while !done.load(SeqCst) && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    let finished = done.load(SeqCst);
    if finished {
        assert_eq!(*mutex.lock().unwrap(), 2, "both threads had the mutex once");
    }
    finished
}

#[test]
fn a_plain_lock_under_the_gil_deadlocks() {
    // Shown with a bounded wait: neither thread can move on.
    assert!(!lock_order_inversion(false, Duration::from_millis(500)));
}

#[test]
fn the_helper_lets_the_gil_go_and_does_not_deadlock() {
    assert!(lock_order_inversion(true, Duration::from_secs(60)));
}

/// A free mutex is taken at once, through either guard.
#[test]
fn the_helper_takes_a_free_mutex_without_letting_go() {
    let gil = Gil::new();
    let mutex = Mutex::new(0);
    let mut g = gil.acquire();
    *g.lock(&mutex).unwrap() += 1;
    assert!(gil.is_held_by_current_thread());
    let mut e = gil.ensure();
    *e.lock(&mutex).unwrap() += 1;
    drop(e);
    assert_eq!(*mutex.lock().unwrap(), 2);
}
