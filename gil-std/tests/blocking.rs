//! Waiting for a `std` mutex, rwlock, condition variable, channel or `OnceLock` while holding
//! the `Gil` (`Blocking`): the plain call deadlocks against a thread that needs the `Gil` to
//! let the waiter on; the helper does not.
#![cfg(not(loom))]

use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{Blocking, Event, Gil};

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
            (Other::Mutex, true) => *g.lock_mutex(mutex).unwrap() += 1,
            (Other::Mutex, false) => *mutex.lock().unwrap() += 1,
            (Other::RwLockWrite, true) => *g.write_rwlock(rwlock).unwrap() += 1,
            (Other::RwLockWrite, false) => *rwlock.write().unwrap() += 1,
            (Other::RwLockRead, true) => assert_eq!(*g.read_rwlock(rwlock).unwrap(), 1),
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
    *g.lock_mutex(&mutex).unwrap() += 1;
    assert!(gil.is_held_by_current_thread());
    let mut e = gil.ensure();
    *e.lock_mutex(&mutex).unwrap() += 1;
    drop(e);
    assert_eq!(*mutex.lock().unwrap(), 2);
}

/// Runs `body` on a thread of its own; whether it finished within `within`. The thread is left
/// behind if it did not (it deadlocked).
fn finishes(within: Duration, body: impl FnOnce() + Send + 'static) -> bool {
    let done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    thread::spawn(move || {
        body();
        done.store(true, SeqCst);
    });
    let until = Instant::now() + within;
    while !done.load(SeqCst) && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    done.load(SeqCst)
}

/// A thread holding the `Gil` waits on a condition variable for a flag that a second thread
/// can set only once it holds the `Gil`.
fn condvar_wait(helper: bool, within: Duration) -> bool {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let ready: &'static Mutex<bool> = Box::leak(Box::new(Mutex::new(false)));
    let changed: &'static Condvar = Box::leak(Box::new(Condvar::new()));
    finishes(within, move || {
        let mut g = gil.acquire();
        let setter = thread::spawn(move || {
            let mut g = gil.acquire();
            *g.lock_mutex(ready).unwrap() = true;
            changed.notify_all();
        });
        let flag = ready.lock().unwrap();
        let flag = if helper {
            g.wait_condvar_while(changed, flag, |ready| !*ready)
                .unwrap()
        } else {
            changed.wait_while(flag, |ready| !*ready).unwrap()
        };
        assert!(*flag);
        drop((flag, g));
        setter.join().unwrap();
    })
}

#[test]
fn a_plain_condvar_wait_under_the_gil_deadlocks_and_the_helper_does_not() {
    assert!(!condvar_wait(false, Duration::from_millis(300)));
    assert!(condvar_wait(true, Duration::from_secs(60)));
}

/// `Blocking::wait_condvar`, the one without a condition, lets the `Gil` go too: notified by a thread
/// that needs it, it returns.
#[test]
fn the_plain_wait_helper_lets_the_gil_go() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let ready: &'static Mutex<bool> = Box::leak(Box::new(Mutex::new(false)));
    let changed: &'static Condvar = Box::leak(Box::new(Condvar::new()));
    assert!(finishes(Duration::from_secs(60), move || {
        let mut g = gil.acquire();
        let setter = thread::spawn(move || {
            let mut g = gil.acquire();
            *g.lock_mutex(ready).unwrap() = true;
            changed.notify_all();
        });
        let mut flag = ready.lock().unwrap();
        while !*flag {
            flag = g.wait_condvar(changed, flag).unwrap();
        }
        drop((flag, g));
        setter.join().unwrap();
    }));
}

/// A thread holding the `Gil` waits for a message that a second thread sends only once it
/// holds the `Gil`.
fn channel_receive(helper: bool, within: Duration) -> bool {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    finishes(within, move || {
        let (send, mut receive) = mpsc::channel();
        let mut g = gil.acquire();
        let sender = thread::spawn(move || {
            let _g = gil.acquire();
            send.send(7).unwrap();
        });
        let message = if helper {
            g.recv_channel(&mut receive)
        } else {
            receive.recv()
        };
        assert_eq!(message, Ok(7));
        drop(g);
        sender.join().unwrap();
    })
}

#[test]
fn a_plain_receive_under_the_gil_deadlocks_and_the_helper_does_not() {
    assert!(!channel_receive(false, Duration::from_millis(300)));
    assert!(channel_receive(true, Duration::from_secs(60)));
}

/// A thread holding the `Gil` initialises a `OnceLock` with an initialiser that lets the `Gil`
/// go (a blocking region) until a second thread, holding the `Gil`, asks for the same value.
fn once_init(helper: bool, within: Duration) -> bool {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let cell: &'static OnceLock<u32> = Box::leak(Box::new(OnceLock::new()));
    finishes(within, move || {
        let (asking, mut wait_asking) = mpsc::channel::<()>();
        let init = move || {
            // Lets the Gil go until the other thread holds it and is about to ask.
            gil.ensure().recv_channel(&mut wait_asking).unwrap();
            5
        };
        let mut g = gil.acquire();
        let other = thread::spawn(move || {
            let mut g = gil.acquire();
            asking.send(()).unwrap();
            let value = if helper {
                *g.get_or_init(cell, || 6)
            } else {
                *cell.get_or_init(|| 6)
            };
            assert_eq!(value, 5);
        });
        let value = if helper {
            *g.get_or_init(cell, init)
        } else {
            *cell.get_or_init(init)
        };
        assert_eq!(value, 5);
        drop(g);
        other.join().unwrap();
    })
}

#[test]
fn a_plain_once_init_under_the_gil_deadlocks_and_the_helper_does_not() {
    assert!(!once_init(false, Duration::from_millis(300)));
    assert!(once_init(true, Duration::from_secs(60)));
}

/// What is there already is taken without a blocking region: a free mutex, a condition that
/// does not hold, a message waiting, an initialised cell.
#[test]
fn ready_values_are_taken_without_letting_the_gil_go() {
    static GIL: Gil = Gil::new();
    static REGIONS: AtomicU32 = AtomicU32::new(0);
    GIL.set_event_hook(Some(&|_, event| {
        if event == Event::BlockingEntered {
            REGIONS.fetch_add(1, SeqCst);
        }
    }));
    let mutex = Mutex::new(false);
    let changed = Condvar::new();
    let (send, mut receive) = mpsc::channel();
    let cell = OnceLock::new();
    send.send(1).unwrap();
    {
        let mut g = GIL.acquire();
        let flag = g.lock_mutex(&mutex).unwrap();
        drop(g.wait_condvar_while(&changed, flag, |set| *set).unwrap());
        assert_eq!(g.recv_channel(&mut receive), Ok(1));
        drop(send);
        assert!(
            g.recv_channel(&mut receive).is_err(),
            "a hung-up channel is an error at once"
        );
        assert_eq!(
            *g.get_or_init(&cell, || 2),
            2,
            "the first initialisation lets go"
        );
        assert_eq!(REGIONS.swap(0, SeqCst), 1);
        assert_eq!(*g.get_or_init(&cell, || 3), 2);
        let mut e = GIL.ensure();
        drop(e.lock_mutex(&mutex).unwrap());
        assert_eq!(*e.get_or_init(&cell, || 4), 2);
    }
    GIL.set_event_hook(None);
    assert_eq!(REGIONS.load(SeqCst), 0);
}
