//! The torture run: many threads on one `gil_std::Gil`, each doing a seeded random mix of
//! every public operation — acquire (plain, try, timed, nested `ensure`), checkpoints, yields,
//! both forms of blocking region (and panics inside them), interval changes, the fast return
//! toggled, interrupts, pending calls, runtime bits, event hooks — until the lock is closed
//! under them while they wait.
//!
//! Checked: one holder at a time (an "inside" counter); a non-atomic counter behind the lock
//! equals the number of holds that wrote it; every pending call queued ran exactly once or
//! was handed back by `close`; every thread finished; and a watchdog fails a run that makes
//! no progress for [`STUCK`].

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use gil_core::Breaker;
use gil_std::{AcquireError, Event, Gil, GilCell, GilGuard, Holds, InterruptHandle};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// A run that completes no operation for this long has hung.
pub const STUCK: Duration = Duration::from_secs(20);

/// What a run did, for its caller to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Operations done, over all threads.
    pub ops: u64,
    /// Holds that wrote the counter.
    pub holds: u64,
    /// Switches of the lock (its `stats`).
    pub switches: u32,
    /// Pending calls queued.
    pub calls_queued: u64,
    /// Pending calls that ran.
    pub calls_run: u64,
    /// Interrupts reported to the thread interrupted.
    pub interrupts: u64,
    /// Threads still waiting when the lock closed (their acquire got `Closed`).
    pub closed_waiting: u64,
}

/// The shared state of one run, leaked: handlers and hooks are `'static`.
struct Run {
    gil: &'static Gil,
    counter: GilCell<'static, Cell<u64>>,
    inside: AtomicUsize,
    holds: AtomicU64,
    ops: AtomicU64,
    calls_queued: AtomicU64,
    calls_run: AtomicU64,
    /// One flag per pending call queued: set when it runs, so a second run is caught.
    ran: Mutex<Vec<bool>>,
    interrupts: AtomicU64,
    closed_waiting: AtomicU64,
    /// Pending calls `close` handed back.
    handed_back: AtomicU64,
    /// The counter as the last hold left it: read at the end, when the closed lock can no
    /// longer be taken.
    last_count: AtomicU64,
    events: AtomicU64,
    closed: AtomicBool,
    handles: Mutex<Vec<InterruptHandle<'static>>>,
}

/// The runtime bit the run raises; its handler holds like any step.
const BIT: u32 = 1 << 8;
const _: () = assert!(BIT & Breaker::RUNTIME_BITS == BIT);

impl Run {
    /// What every hold does: one holder at a time, and a read-modify-write no other holder
    /// may interleave with.
    fn hold(&self, proof: &impl Holds) {
        assert_eq!(self.inside.fetch_add(1, SeqCst), 0, "two holders at once");
        let c = self.counter.get(proof);
        let seen = c.get();
        std::hint::spin_loop();
        c.set(seen + 1);
        self.last_count.store(seen + 1, SeqCst);
        self.holds.fetch_add(1, SeqCst);
        assert_eq!(self.inside.fetch_sub(1, SeqCst), 1, "two holders at once");
    }

    /// A checkpoint's outcome: an interrupt is counted, nothing else may come.
    fn checked(&self, outcome: Result<(), gil_std::Interrupted>) {
        if outcome.is_err() {
            self.interrupts.fetch_add(1, SeqCst);
        }
    }

    /// Takes the lock as `how` says, or nothing once it is closed.
    fn take(&'static self, rng: &mut SmallRng) -> Option<GilGuard<'static>> {
        match rng.random_range(0..4u8) {
            0 => self.gil.try_acquire(),
            1 => {
                let limit = Duration::from_micros(rng.random_range(0..300));
                match self.gil.try_acquire_for(limit) {
                    Ok(g) => Some(g),
                    Err(AcquireError::Timeout) => None,
                    Err(AcquireError::Closed) => self.closed_while_waiting(),
                }
            }
            _ => match self.gil.acquire_checked() {
                Ok(g) => Some(g),
                Err(_) => self.closed_while_waiting(),
            },
        }
    }

    fn closed_while_waiting(&self) -> Option<GilGuard<'static>> {
        assert!(
            self.closed.load(SeqCst),
            "Closed before the lock was closed"
        );
        self.closed_waiting.fetch_add(1, SeqCst);
        None
    }

    fn queue_call(&'static self) {
        let id = {
            let mut ran = self.ran.lock().unwrap();
            ran.push(false);
            ran.len() - 1
        };
        let call = move |g: &GilGuard<'_>| {
            let twice = std::mem::replace(&mut self.ran.lock().unwrap()[id], true);
            assert!(!twice, "pending call {id} ran twice");
            self.hold(g);
            self.calls_run.fetch_add(1, SeqCst);
        };
        // Refused (full, or closed): handed back, and dropped unrun here.
        if self.gil.add_pending_call(call).is_ok() {
            self.calls_queued.fetch_add(1, SeqCst);
        }
    }

    /// One random operation.
    fn step(&'static self, rng: &mut SmallRng) {
        let gil = self.gil;
        match rng.random_range(0..16u8) {
            // Work with checkpoints.
            0..=2 => {
                if let Some(mut g) = self.take(rng) {
                    for _ in 0..rng.random_range(1..64) {
                        self.hold(&g);
                        self.checked(g.checkpoint());
                    }
                }
            }
            // Nested ensure, dropped in either order.
            3 => {
                let Ok(outer) = catch_unwind(AssertUnwindSafe(|| gil.ensure())) else {
                    // Closed: `ensure` panics like `acquire`.
                    return;
                };
                let mut inner = gil.ensure();
                self.hold(&inner);
                self.checked(inner.checkpoint());
                let last = if rng.random_bool(0.5) {
                    drop(outer);
                    inner
                } else {
                    drop(inner);
                    outer
                };
                self.hold(&last);
            }
            4 => {
                if let Some(mut g) = self.take(rng) {
                    self.hold(&g);
                    g.hand_over();
                    self.hold(&g);
                }
            }
            // The closure region, the RAII one, a panic inside one, one with an unblock
            // function.
            5 => {
                if let Some(mut g) = self.take(rng) {
                    self.hold(&g);
                    g.allow_threads(|| short_block(rng));
                    self.hold(&g);
                }
            }
            6 => {
                if let Some(g) = self.take(rng) {
                    self.hold(&g);
                    let away = g.unlock();
                    short_block(rng);
                    if rng.random_bool(0.9) {
                        let g = away.relock();
                        self.hold(&g);
                    }
                }
            }
            7 => {
                if let Some(mut g) = self.take(rng) {
                    let caught = catch_unwind(AssertUnwindSafe(|| {
                        g.allow_threads(|| std::panic::panic_any(Quiet));
                    }));
                    assert!(caught.is_err());
                    self.hold(&g);
                }
            }
            8 => {
                if let Some(mut g) = self.take(rng) {
                    let (wake, wait) = mpsc::channel::<()>();
                    let limit = Duration::from_micros(rng.random_range(10..500));
                    g.allow_threads_with_unblock(
                        || {
                            let _ = wait.recv_timeout(limit);
                        },
                        || {
                            let _ = wake.send(());
                        },
                    );
                    self.hold(&g);
                }
            }
            9 => {
                let interval = [10, 100, 1_000, 5_000][rng.random_range(0..4)];
                gil.set_switch_interval(Duration::from_micros(interval))
                    .unwrap();
            }
            10 => gil.set_fast_return(rng.random_bool(0.5)),
            11 => {
                let handles = self.handles.lock().unwrap();
                let victim = handles[rng.random_range(0..handles.len())].clone();
                drop(handles);
                victim.interrupt();
            }
            12 => self.queue_call(),
            13 => drop(gil.raise(BIT)),
            14 => gil.request_drop(),
            _ => {
                if let Some(g) = gil.try_acquire() {
                    self.hold(&g);
                }
            }
        }
        self.ops.fetch_add(1, SeqCst);
    }
}

/// The payload of the panics the run makes on purpose (the panic hook stays quiet for it).
struct Quiet;

/// A blocking call of a few microseconds: a sleep, or a spin.
fn short_block(rng: &mut SmallRng) {
    let micros = rng.random_range(0..50);
    if rng.random_bool(0.5) {
        thread::sleep(Duration::from_micros(micros));
    } else {
        let until = Instant::now() + Duration::from_micros(micros);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

/// Runs `threads` threads for `length` from `seed`, then closes the lock while they go on
/// taking it, and checks everything the module says.
///
/// # Panics
///
/// On a broken invariant, or a run stuck for [`STUCK`], with the seed in the message.
pub fn run(seed: u64, threads: usize, length: Duration) -> Report {
    quiet_panics();
    let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(Duration::from_micros(
        100,
    ))));
    let run: &'static Run = Box::leak(Box::new(Run {
        gil,
        counter: GilCell::new(gil, Cell::new(0)),
        inside: AtomicUsize::new(0),
        holds: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        calls_queued: AtomicU64::new(0),
        calls_run: AtomicU64::new(0),
        ran: Mutex::new(Vec::new()),
        interrupts: AtomicU64::new(0),
        closed_waiting: AtomicU64::new(0),
        handed_back: AtomicU64::new(0),
        last_count: AtomicU64::new(0),
        events: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        handles: Mutex::new(Vec::new()),
    }));
    let handler = Box::leak(Box::new(move |g: &GilGuard<'_>, _bit: u32| run.hold(g)));
    gil.set_breaker_handler(BIT, Some(handler)).unwrap();
    let hook = Box::leak(Box::new(move |_: &Gil, _: Event| {
        run.events.fetch_add(1, SeqCst);
    }));
    gil.set_event_hook(Some(hook));

    let (done, finished) = mpsc::channel::<thread::Result<()>>();
    let registered: &'static std::sync::Barrier =
        Box::leak(Box::new(std::sync::Barrier::new(threads + 1)));
    // Detached threads, not scoped ones: a run that hangs must fail without joining them.
    for t in 0..threads {
        let done = done.clone();
        thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed ^ (t as u64).wrapping_mul(0x9e37));
            run.handles.lock().unwrap().push(gil.interrupt_handle());
            registered.wait();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let _registration = gil.register_thread();
                // The close meets threads waiting, holding and away; each goes on for a few
                // steps after it, against the closed lock.
                let mut after_close = 0;
                while after_close < 4 {
                    run.step(&mut rng);
                    if run.closed.load(SeqCst) {
                        after_close += 1;
                    }
                }
            }));
            let _ = done.send(outcome);
        });
    }
    drop(done);
    registered.wait();
    watch(run, length, seed, threads, &finished);
    assert!(
        gil.close().is_empty(),
        "seed {seed}: a call queued after the close"
    );
    let report = Report {
        ops: run.ops.load(SeqCst),
        holds: run.holds.load(SeqCst),
        switches: gil.stats().switches,
        calls_queued: run.calls_queued.load(SeqCst),
        calls_run: run.calls_run.load(SeqCst),
        interrupts: run.interrupts.load(SeqCst),
        closed_waiting: run.closed_waiting.load(SeqCst),
    };
    assert_eq!(
        report.calls_run + run.handed_back.load(SeqCst),
        report.calls_queued,
        "seed {seed}: a pending call was lost"
    );
    assert_eq!(
        run.last_count.load(SeqCst),
        report.holds,
        "seed {seed}: a lost update"
    );
    assert!(
        run.events.load(SeqCst) > 0,
        "seed {seed}: the hook saw nothing"
    );
    report
}

/// Closes the lock after `length` and waits for every thread, failing the run if no
/// operation completes for [`STUCK`].
fn watch(
    run: &'static Run,
    length: Duration,
    seed: u64,
    threads: usize,
    finished: &mpsc::Receiver<thread::Result<()>>,
) {
    let close_at = Instant::now() + length;
    let mut last = (run.ops.load(SeqCst), Instant::now());
    let mut left = threads;
    // Closed from a thread of its own, so that a close that never returns (a lock left
    // half-changed spins every thread on it) is a run without progress, not a watchdog stuck.
    let mut closer = None;
    while left > 0
        || closer
            .as_ref()
            .is_some_and(|c: &thread::JoinHandle<()>| !c.is_finished())
    {
        if closer.is_none() && Instant::now() >= close_at {
            run.closed.store(true, SeqCst);
            closer = Some(thread::spawn(move || {
                let calls = run.gil.close();
                run.handed_back.fetch_add(calls.len() as u64, SeqCst);
            }));
        }
        match finished.recv_timeout(Duration::from_millis(10)) {
            Ok(Ok(())) => left -= 1,
            Ok(Err(panic)) => {
                eprintln!("torture: seed {seed}: a thread failed");
                std::panic::resume_unwind(panic);
            }
            Err(_) => {}
        }
        let ops = run.ops.load(SeqCst);
        if ops != last.0 {
            last = (ops, Instant::now());
        }
        assert!(
            last.1.elapsed() < STUCK,
            "torture: seed {seed}: no progress for {STUCK:?} ({left} threads not done)"
        );
    }
    if let Some(closer) = closer {
        // Finished: the join only passes on what it did.
        closer.join().expect("torture: close panicked");
    }
}

/// Keeps the panic hook quiet for the run's own panics (`Quiet`), and for the refusals the
/// lock makes on purpose.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let closed = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("closed Gil"));
            if info.payload().downcast_ref::<Quiet>().is_none() && !closed {
                before(info);
            }
        }));
    });
}
