//! Waiting for a `std` mutex while holding the `Gil` (`Blocking`): the plain call deadlocks
//! against a thread that holds the mutex and waits for the `Gil`; the helper does not.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Blocking, Gil};

mod common;
use common::wait_until;

/// Thread B holds the `Gil`; thread A takes the mutex and waits for the `Gil`; then B locks
/// the mutex, plainly or through the helper. Returns whether B finished within `within`.
/// The threads are left behind if it did not (they deadlocked).
fn lock_order_inversion(helper: bool, within: Duration) -> bool {
    inversion(helper, within, Other::Mutex)
}

/// The other lock of `inversion`.
#[derive(Clone, Copy)]
enum Other {
    Mutex,
    RwLockWrite,
    RwLockRead,
}

/// `lock_order_inversion` with a choice of the other lock; A holds it for writing.
fn inversion(helper: bool, within: Duration, other: Other) -> bool {
    let rwlock: &'static RwLock<u32> = Box::leak(Box::new(RwLock::new(0)));
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let mutex: &'static Mutex<u32> = Box::leak(Box::new(Mutex::new(0)));
    let done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (gil_held, wait_gil_held) = mpsc::channel();
    let (mutex_held, wait_mutex_held) = mpsc::channel();
    thread::spawn(move || {
        wait_gil_held.recv().unwrap();
        let mut m = mutex.lock().unwrap();
        let mut w = rwlock.write().unwrap();
        mutex_held.send(()).unwrap();
        let _g = gil.acquire(); // waits for B
        *m += 1;
        *w += 1;
    });
    thread::spawn(move || {
        let mut g = gil.acquire();
        gil_held.send(()).unwrap();
        wait_mutex_held.recv().unwrap();
        wait_until("A waits for the Gil", || gil.has_waiters());
        match (other, helper) {
            (Other::Mutex, true) => *g.lock(mutex).unwrap() += 1,
            (Other::Mutex, false) => *mutex.lock().unwrap() += 1,
            (Other::RwLockWrite, true) => *g.write(rwlock).unwrap() += 1,
            (Other::RwLockWrite, false) => *rwlock.write().unwrap() += 1,
            (Other::RwLockRead, true) => assert_eq!(*g.read(rwlock).unwrap(), 1),
            (Other::RwLockRead, false) => assert_eq!(*rwlock.read().unwrap(), 1),
        }
        drop(g);
        done.store(true, SeqCst);
    });
    let until = Instant::now() + within;
    while !done.load(SeqCst) && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    let finished = done.load(SeqCst);
    if finished && matches!(other, Other::Mutex) {
        assert_eq!(*mutex.lock().unwrap(), 2, "both threads had the mutex once");
    }
    if finished && matches!(other, Other::RwLockWrite) {
        assert_eq!(*rwlock.read().unwrap(), 2, "both threads wrote once");
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

#[test]
fn the_rwlock_helpers_do_not_deadlock_where_the_plain_calls_do() {
    for other in [Other::RwLockWrite, Other::RwLockRead] {
        assert!(!inversion(false, Duration::from_millis(300), other));
        assert!(inversion(true, Duration::from_secs(60), other));
    }
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
