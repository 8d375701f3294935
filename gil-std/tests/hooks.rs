//! Event hooks and the recorder under real threads: each thread sees a consistent sequence.
#![cfg(not(loom))]

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use gil_std::{Event, Gil, Recorder};

/// Checks one thread's events against the lock's per-thread state machine: it starts and exits
/// first and last, holds between `Got` and `Released`, waits only when not holding, and a
/// blocking region encloses a release.
fn check_sequence(name: &str, events: &[Event]) {
    let (mut holding, mut waiting, mut blocking) = (false, false, false);
    assert_eq!(
        events.first(),
        Some(&Event::ThreadStarted),
        "{name}: starts first"
    );
    assert_eq!(
        events.last(),
        Some(&Event::ThreadExited),
        "{name}: exits last"
    );
    for (i, &e) in events.iter().enumerate() {
        let ok = match e {
            Event::ThreadStarted => i == 0,
            Event::ThreadExited => i == events.len() - 1 && !holding && !waiting && !blocking,
            Event::Wants => !holding && !waiting,
            Event::Got => !holding,
            Event::Released => holding,
            Event::BlockingEntered => holding && !blocking,
            Event::BlockingLeft => blocking && !holding,
            Event::DropRequested => true,
            _ => true,
        };
        assert!(ok, "{name}: event {i} ({e}) out of order in {events:?}");
        match e {
            Event::Wants => waiting = true,
            Event::Got => (holding, waiting) = (true, false),
            Event::Released => holding = false,
            Event::BlockingEntered => blocking = true,
            Event::BlockingLeft => blocking = false,
            _ => {}
        }
    }
    assert!(!holding && !blocking, "{name}: ends holding or blocking");
}

#[test]
fn every_thread_sees_a_consistent_sequence() {
    let gil = Gil::new();
    let recorder = Recorder::start(&gil);
    // The main thread holds the lock until a worker has queued, so they surely contend.
    let started = Barrier::new(5);
    let held = gil.acquire();
    thread::scope(|s| {
        for t in 0..4 {
            let (gil, started) = (&gil, &started);
            thread::Builder::new()
                .name(format!("worker {t}"))
                .spawn_scoped(s, move || {
                    let _registered = gil.register_thread();
                    started.wait();
                    let mut guard = gil.acquire();
                    for i in 0..300 {
                        if i % 7 == 0 {
                            guard.allow_threads(thread::yield_now);
                        }
                        if i % 5 == 0 {
                            gil.request_drop();
                        }
                        guard.checkpoint().unwrap();
                    }
                    drop(guard);
                })
                .unwrap();
        }
        started.wait();
        while !gil.has_waiters() {
            thread::yield_now();
        }
        drop(held);
    });
    let trace = recorder.stop();
    let workers: Vec<_> = trace
        .threads
        .iter()
        .filter(|t| t.name.starts_with("worker"))
        .collect();
    assert_eq!(workers.len(), 4);
    for t in &workers {
        let events: Vec<Event> = t.events.iter().map(|&(_, e)| e).collect();
        check_sequence(&t.name, &events);
        assert!(
            t.events.windows(2).all(|w| w[0].0 <= w[1].0),
            "times go forward"
        );
        let regions = events
            .iter()
            .filter(|&&e| e == Event::BlockingEntered)
            .count();
        assert_eq!(regions, 300 / 7 + 1, "{}: every region seen", t.name);
    }
    assert!(gil.stats().switches > 0, "a worker was handed the lock");
    assert!(
        workers
            .iter()
            .any(|t| t.events.iter().any(|&(_, e)| e == Event::Wants)),
        "a worker waited"
    );
}

#[test]
fn a_panicking_hook_is_removed_and_the_lock_goes_on() {
    let gil = Gil::new();
    gil.set_event_hook(Some(&|_, _| panic!("a broken hook")));
    let guard = gil.acquire(); // the hook panics on `Got`: caught and removed
    drop(guard);
    assert!(gil.try_acquire().is_some(), "the lock is free and usable");
}

/// A blocking region in RAII form that is dropped instead of relocked ends the hold for good,
/// and the region with it: its thread's events close with `BlockingLeft`.
#[test]
fn an_unlocked_region_dropped_ends_in_order() {
    let gil = Gil::new();
    let recorder = Recorder::start(&gil);
    thread::scope(|s| {
        thread::Builder::new()
            .name("region".into())
            .spawn_scoped(s, || {
                let _registered = gil.register_thread();
                let unlocked = gil.acquire().unlock();
                drop(unlocked);
            })
            .unwrap();
    });
    let trace = recorder.stop();
    let t = trace.threads.iter().find(|t| t.name == "region").unwrap();
    let events: Vec<Event> = t.events.iter().map(|&(_, e)| e).collect();
    check_sequence(&t.name, &events);
    assert!(events.contains(&Event::BlockingLeft), "{events:?}");
    assert!(gil.try_acquire().is_some(), "let go for good");
}

/// Hold timing off, holds are not timed, whatever else the lock watches (here an event hook).
#[test]
fn holds_are_not_timed_with_timing_off() {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    gil.set_event_hook(Some(&|_, _| {}));
    let g = gil.acquire();
    thread::sleep(std::time::Duration::from_millis(2));
    drop(g);
    gil.set_event_hook(None);
    assert_eq!(gil.stats().hold_time, std::time::Duration::ZERO);
}

/// A runtime that keeps a "current thread state" (CPython's thread-state pointer) swaps it in
/// the hook: on `Got` to the thread that now holds, on `Released` back to none. Through
/// hand-overs at checkpoints, blocking regions and their loans, the state is always the
/// holder's own whenever the holder looks.
#[test]
fn a_runtime_swaps_its_current_thread_state_at_every_change_of_hands() {
    static GIL: Gil = Gil::with_switch_interval(Duration::from_micros(200));
    /// The state of the thread holding the lock; 0 while nobody does.
    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    /// Swaps that found another thread's state, or a holder that looked and found not its own.
    static WRONG: AtomicUsize = AtomicUsize::new(0);
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, SeqCst);
    }
    let mine = || MINE.with(|m| *m);
    GIL.set_event_hook(Some(&|_, event| {
        let (from, to) = match event {
            Event::Got => (0, MINE.with(|m| *m)),
            Event::Released => (MINE.with(|m| *m), 0),
            _ => return,
        };
        if CURRENT.swap(to, SeqCst) != from {
            WRONG.fetch_add(1, SeqCst);
        }
    }));
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(move || {
                for _ in 0..100 {
                    let mut g = GIL.acquire();
                    // Long enough that waiters ask for the lock (every 200 µs).
                    let until = std::time::Instant::now() + Duration::from_micros(500);
                    while std::time::Instant::now() < until {
                        g.checkpoint().unwrap();
                        if CURRENT.load(SeqCst) != mine() {
                            WRONG.fetch_add(1, SeqCst);
                        }
                    }
                    g.allow_threads(thread::yield_now);
                    if CURRENT.load(SeqCst) != mine() {
                        WRONG.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    });
    GIL.set_event_hook(None);
    assert_eq!(WRONG.load(SeqCst), 0);
    assert_eq!(CURRENT.load(SeqCst), 0, "nobody holds");
    assert!(GIL.stats().forced_drops > 0, "checkpoints handed over");
}

/// A hook that panics with a payload whose own drop panics: the payload is not dropped where
/// the lock reported the event, so nothing unwinds out of the lock's path.
#[test]
fn a_hook_panic_whose_payload_panics_on_drop_goes_no_further() {
    static GIL: Gil = Gil::new();
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("the payload's drop");
        }
    }
    GIL.set_event_hook(Some(&|_, _| std::panic::panic_any(PanicsOnDrop)));
    let registered = std::panic::catch_unwind(|| drop(GIL.register_thread()));
    assert!(
        registered.is_ok(),
        "the panic went no further than the hook"
    );
    drop(GIL.acquire());
    GIL.set_event_hook(None);
}

/// While a hand-over sets a hold with nested guards aside, its thread is quiet: no hook runs
/// on it. Once the hold is back, and has ended, the thread's next hold is reported again.
#[test]
fn a_thread_is_heard_again_once_its_hold_is_no_longer_set_aside() {
    use std::cell::Cell;
    thread_local! {
        static GOT: Cell<u32> = const { Cell::new(0) };
    }
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    gil.set_event_hook(Some(&|_, event| {
        if event == Event::Got {
            GOT.with(|got| got.set(got.get() + 1));
        }
    }));
    let mut outer = gil.acquire();
    let nested = gil.ensure();
    thread::scope(|s| {
        s.spawn(|| drop(gil.acquire()));
        while !gil.has_waiters() {
            thread::yield_now();
        }
        assert!(outer.hand_over(), "handed over to the waiter");
    });
    drop(nested);
    drop(outer);
    let before = GOT.with(Cell::get);
    drop(gil.acquire());
    assert_eq!(
        GOT.with(Cell::get),
        before + 1,
        "the next hold went unreported"
    );
    gil.set_event_hook(None);
}

/// Every event heard by the hook of [`logged`], with its thread.
static LOG: std::sync::Mutex<Vec<(thread::ThreadId, Event)>> = std::sync::Mutex::new(Vec::new());

/// A leaked lock whose hook logs its events in [`LOG`].
fn logged() -> &'static Gil {
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
        Gil::MAX_SWITCH_INTERVAL,
    )));
    gil.set_event_hook(Some(&|_, event| {
        LOG.lock().unwrap().push((thread::current().id(), event));
    }));
    gil
}

/// The events heard on this thread while `f` ran.
fn heard_during(f: impl FnOnce()) -> Vec<Event> {
    let me = thread::current().id();
    let before = LOG.lock().unwrap().len();
    f();
    let log = LOG.lock().unwrap();
    log[before..]
        .iter()
        .filter(|&&(on, _)| on == me)
        .map(|&(_, event)| event)
        .collect()
}

/// Whether `event` is in the log from `since` on, or comes within 200 ms. (A quiet thread's
/// event never comes while it waits; one that is heard comes at once, and the margin is for a
/// thread preempted on its way to the hook.)
fn heard_since(since: usize, event: (thread::ThreadId, Event)) -> bool {
    let give_up = std::time::Instant::now() + Duration::from_millis(200);
    loop {
        if LOG.lock().unwrap()[since..].contains(&event) {
            return true;
        }
        if std::time::Instant::now() > give_up {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `gil` has a waiter.
fn until_waited_for(gil: &Gil) {
    while !gil.has_waiters() {
        thread::yield_now();
    }
}

/// A thread that closes a lock is heard again afterwards: the close wakes tasks quietly, and
/// only for its own length.
#[test]
fn a_thread_that_closed_a_lock_is_heard_again() {
    let gil = logged();
    drop(Gil::new().close()); // no calls were queued
    let events = heard_during(|| drop(gil.acquire()));
    assert_eq!(
        events,
        [Event::Got, Event::Released],
        "the hold after a close"
    );
}

/// A plain hold's hand-over is heard as it waits, although another thread's hold is set
/// aside meanwhile: only the thread whose hold it is keeps quiet.
#[test]
fn a_hand_over_is_heard_while_another_threads_hold_is_set_aside() {
    let gil = logged();
    let mut outer = gil.acquire();
    let nested = gil.ensure();
    thread::scope(|s| {
        let other = s.spawn(|| {
            let mut guard = gil.acquire();
            // The first thread's hold is set aside, its thread in line.
            until_waited_for(gil);
            assert!(guard.hand_over(), "handed back");
        });
        until_waited_for(gil);
        let since = LOG.lock().unwrap().len();
        assert!(
            outer.hand_over(),
            "handed over with the nested guard set aside"
        );
        until_waited_for(gil);
        // The other thread's only release is its hand-over's, which waits now.
        let heard = heard_since(since, (other.thread().id(), Event::Released));
        drop(nested);
        drop(outer);
        assert!(
            heard,
            "the other thread's hand-over went unheard as it waited"
        );
    });
}

/// A thread that takes `gil` and keeps it until somebody waits for it, then looks whether
/// the hook had heard `Wants` from `waiter` in the log from `since` on. A thread whose hold is set aside with
/// guards waits quietly, and reports its wait once it holds again. Gives a receiver that
/// hears once the thread holds.
fn look_for_wants(
    gil: &'static Gil,
    waiter: thread::ThreadId,
    since: usize,
) -> (std::sync::mpsc::Receiver<()>, thread::JoinHandle<bool>) {
    let (holding, held) = std::sync::mpsc::channel();
    let looking = thread::spawn(move || {
        let guard = gil.acquire();
        holding.send(()).unwrap();
        until_waited_for(gil);
        let heard = heard_since(since, (waiter, Event::Wants));
        drop(guard);
        heard
    });
    (held, looking)
}

/// Polls `gil.acquire_async()` on this thread until it resolves, parking between polls; gives
/// the threads its waker was woken on.
fn task_waiting_for(gil: &Gil) -> Vec<thread::ThreadId> {
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Wake, Waker};
    struct Woken(Mutex<Vec<thread::ThreadId>>, thread::Thread);
    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.lock().unwrap().push(thread::current().id());
            self.1.unpark();
        }
    }
    let woken = Arc::new(Woken(Mutex::new(Vec::new()), thread::current()));
    let waker = Waker::from(woken.clone());
    let mut taking = std::pin::pin!(gil.acquire_async());
    while taking
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending()
    {
        thread::park();
    }
    woken.0.lock().unwrap().clone()
}

/// Opens a region with `open`, in which another thread takes the lock and keeps it until this
/// thread waits to take it back: returns whether this thread's wait was heard by then.
fn region_heard_in_line(gil: &'static Gil, open: impl FnOnce(&mut (dyn FnMut() + Send))) -> bool {
    let mut looking = None;
    let since = LOG.lock().unwrap().len();
    open(&mut || {
        let (held, other) = look_for_wants(gil, thread::current().id(), since);
        held.recv().unwrap();
        looking = Some(other);
    });
    looking.unwrap().join().unwrap()
}

/// A region of a fresh `EnsureGuard` sets nothing aside: its wait to take the lock back is
/// heard as it begins.
#[test]
fn a_fresh_ensure_guards_region_is_heard_as_it_waits() {
    let gil = logged();
    let mut guard = gil.ensure();
    let heard = region_heard_in_line(gil, |region| {
        // SAFETY: the region reaches nothing borrowed under the lock.
        unsafe { guard.allow_threads(region) }
    });
    drop(guard);
    assert!(heard, "the region's wait went unheard");
}

/// An initialiser runs on behalf of a hold set aside: its own hold is heard, but a region or
/// a hand-over in it sets that hold aside again, although the initialiser's guards are none
/// of its own, and keeps the thread quiet until it is back: its wait goes unheard, and the
/// task it hands over to is woken on the lock's waker thread.
#[test]
fn an_initialiser_is_heard_and_its_thread_quiet_while_it_lets_others_hold() {
    use gil_std::Blocking;
    use std::sync::OnceLock;
    let gil = logged();
    let outer = gil.acquire();
    let mut nested = gil.ensure();
    let (region, hand_over) = (OnceLock::new(), OnceLock::new());
    let in_initialiser = heard_during(|| {
        nested.get_or_init(&region, || {
            let mut inner = gil.ensure();
            region_heard_in_line(gil, |region| {
                // SAFETY: the region reaches nothing borrowed under the lock.
                unsafe { inner.allow_threads(region) }
            })
        });
    });
    assert!(
        !region.get().unwrap(),
        "a region inside the initialiser was heard while it waited"
    );
    use Event::*;
    assert_eq!(
        in_initialiser,
        [
            BlockingEntered,
            Released,
            Got, // the initialiser's hold begins
            BlockingEntered,
            Released,
            BlockingLeft,
            Wants,
            Got, // its region, quiet
            Released,
            BlockingLeft,
            Got
        ],
        "the initialiser's events"
    );
    let woken_on = nested.get_or_init(&hand_over, || {
        let mut inner = gil.ensure();
        let task = thread::spawn(move || task_waiting_for(gil));
        until_waited_for(gil);
        gil.request_drop();
        inner.checkpoint().unwrap();
        task.join().unwrap()
    });
    assert!(
        !woken_on.contains(&thread::current().id()),
        "a hand-over inside the initialiser woke a task on its thread"
    );
    drop(nested);
    drop(outer);
}
