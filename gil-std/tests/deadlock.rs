//! Deadlock detection (`Gil::set_deadlock_detection`): when every registered thread waits in a
//! `Blocking` helper for something only another of them could give, one of them panics with a
//! report naming each thread's wait; waits that another thread will end are left alone.
#![cfg(not(loom))]

use std::any::Any;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use gil_std::{Blocking, Gil};

/// Runs `body` on a thread named `name`; what it gives back, or how it panicked, when asked.
/// Asking fails the test after 30 s instead of waiting for ever.
fn within<R: Send + 'static>(
    name: &'static str,
    body: impl FnOnce() -> R + Send + 'static,
) -> impl FnOnce() -> thread::Result<R> {
    let (send, receive) = mpsc::channel();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let _ = send.send(result);
        })
        .unwrap();
    let name = name.to_string();
    move || {
        receive
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("thread {name} still waits after 30 s"))
    }
}

/// A leaked lock with detection on.
fn detecting() -> &'static Gil {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    gil.set_deadlock_detection(true);
    gil
}

/// The text of a panic.
fn message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|text| text.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn two_threads_waiting_for_each_others_message_are_reported() {
    let gil = detecting();
    let (to_a, for_a) = mpsc::channel::<u32>();
    let (to_b, for_b) = mpsc::channel::<u32>();
    let spawn = |name: &'static str, mut receive: mpsc::Receiver<u32>, send: mpsc::Sender<u32>| {
        within(name, move || {
            let _registered = gil.register_thread();
            let got = gil.acquire().recv_channel(&mut receive);
            drop(send);
            got
        })
    };
    let a = spawn("a", for_a, to_b);
    let b = spawn("b", for_b, to_a);
    let (a, b) = (a(), b());
    // One reports; its sender is dropped as it unwinds, so the other sees a hung-up channel.
    let (report, other) = match (a, b) {
        (Err(report), Ok(other)) | (Ok(other), Err(report)) => (message(report), other),
        (a, b) => panic!("exactly one thread reports: {a:?} {b:?}"),
    };
    assert!(other.is_err(), "the other's sender went with the report");
    assert!(report.starts_with("gil: deadlock:"), "{report}");
    for name in ["thread 'a'", "thread 'b'"] {
        let line = report.lines().find(|l| l.contains(name)).expect(name);
        assert!(
            line.contains("waits for a message on the channel"),
            "{report}"
        );
    }
    assert_eq!(report.matches("(this thread)").count(), 1, "{report}");
}

#[test]
fn a_mutex_held_across_a_wait_is_reported_with_both_waits() {
    let gil = detecting();
    let mutex: &'static Mutex<u32> = Box::leak(Box::new(Mutex::new(0)));
    let changed: &'static Condvar = Box::leak(Box::new(Condvar::new()));
    let other = Box::leak(Box::new(Mutex::new(false)));
    let (locked, wait_locked) = mpsc::channel();
    // A takes the mutex and then waits on a condition variable nobody will notify.
    let a = within("holder", move || {
        let _registered = gil.register_thread();
        let mut g = gil.acquire();
        let _m = g.lock_mutex(mutex).unwrap();
        locked.send(()).unwrap();
        let flag = g.lock_mutex(other).unwrap();
        drop(g.wait_condvar_while(changed, flag, |set| !*set));
    });
    wait_locked.recv().unwrap();
    // B wants the mutex. The holder's report unwinds through its guard of the mutex, which
    // poisons it: the wanter takes it all the same.
    let b = within("wanter", move || {
        let _registered = gil.register_thread();
        let mut g = gil.acquire();
        *g.lock_mutex(mutex)
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
    });
    let (a, b) = (a(), b());
    // Either may report first. If the holder does, its unwinding unlocks the mutex and the
    // wanter goes on. If the wanter does, the holder is left the only registered thread,
    // waiting for a notification nobody can give: reported next, alone.
    let report = match (a, b) {
        (Err(report), Ok(())) => message(report),
        (Err(alone), Err(report)) => {
            let alone = message(alone);
            assert_eq!(alone.lines().count(), 2, "{alone}");
            message(report)
        }
        _ => panic!("the holder's wait is reported"),
    };
    let line = |name: &str| report.lines().find(|l| l.contains(name)).expect(name);
    assert!(
        line("'holder'").contains("waits on the Condvar at"),
        "{report}"
    );
    assert!(
        line("'wanter'").contains("waits for the Mutex at"),
        "{report}"
    );
}

/// A wait that a registered thread which is not waiting will end (it sleeps, then sends), and
/// a wait of an unregistered thread, are not reported.
#[test]
fn waits_that_others_will_end_are_not_reported() {
    let gil = detecting();
    let (send, mut receive) = mpsc::channel::<u32>();
    let sender = thread::spawn(move || {
        let _registered = gil.register_thread();
        thread::sleep(Duration::from_millis(400));
        send.send(1).unwrap();
    });
    let waiter = thread::spawn(move || {
        let _registered = gil.register_thread();
        gil.acquire().recv_channel(&mut receive)
    });
    assert_eq!(waiter.join().unwrap(), Ok(1));
    sender.join().unwrap();

    // Alone and unregistered: nobody to report to, the message comes from outside.
    let (send, mut receive) = mpsc::channel::<u32>();
    let waiter = thread::spawn(move || gil.acquire().recv_channel(&mut receive));
    thread::sleep(Duration::from_millis(300));
    send.send(2).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(2));
}

/// Off, the same cycle is not reported (both threads are left waiting, bounded here).
#[test]
fn detection_is_off_by_default() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let (to_a, mut for_a) = mpsc::channel::<u32>();
    let (to_b, mut for_b) = mpsc::channel::<u32>();
    let (done, finished) = mpsc::channel::<()>();
    let done_b = done.clone();
    thread::spawn(move || {
        let _registered = gil.register_thread();
        let _ = gil.acquire().recv_channel(&mut for_a);
        drop((to_b, done));
    });
    thread::spawn(move || {
        let _registered = gil.register_thread();
        let _ = gil.acquire().recv_channel(&mut for_b);
        drop((to_a, done_b));
    });
    assert_eq!(
        finished.recv_timeout(Duration::from_millis(500)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
}
