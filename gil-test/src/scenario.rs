//! Real threads on one `gil_std::Gil`, doing what the input bytes say: acquire, checkpoint,
//! blocking regions, yields, timed acquires, drop requests, interval changes, nested `ensure`.
//! Used by the fuzz target `std_threads` and by the ordinary test that replays its corpus.
//!
//! Checked: one holder at a time (an "inside" counter), no lost update (a non-atomic counter
//! behind the lock equals the number of holds), and the run finishes (a watchdog panics if it
//! takes more than [`LIMIT`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{AcquireError, Gil, GilCell, GilGuard};

/// Longest a scenario may take before the watchdog calls it a hang.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Operations per thread, at most: keeps a run short.
const MAX_OPS: usize = 48;

/// What one thread does in one step.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Acquire, work with `n` checkpoints, release.
    Work(u8),
    /// Acquire, run a blocking region around a short sleep, release.
    Region,
    /// Acquire and hand over to whoever waits.
    HandOver,
    /// `try_acquire_for` with a limit of `n` × 10 µs.
    Timed(u8),
    /// Ask the holder for a drop, without the lock.
    RequestDrop,
    /// Change the switch interval to one of a few values.
    Interval(u8),
    /// `ensure`, nested once inside.
    Ensure,
}

fn decode(bytes: &[u8]) -> (Duration, Vec<Vec<Step>>) {
    let threads = 2 + usize::from(bytes.first().copied().unwrap_or(0) % 3);
    let interval = interval_of(bytes.get(1).copied().unwrap_or(0));
    let mut plans = vec![Vec::new(); threads];
    for (i, &b) in bytes.iter().skip(2).enumerate() {
        let plan = &mut plans[i % threads];
        if plan.len() == MAX_OPS {
            continue;
        }
        let n = b >> 3;
        plan.push(match b & 7 {
            0 | 1 => Step::Work(n),
            2 => Step::Region,
            3 => Step::HandOver,
            4 => Step::Timed(n),
            5 => Step::RequestDrop,
            6 => Step::Interval(n),
            _ => Step::Ensure,
        });
    }
    (interval, plans)
}

fn interval_of(b: u8) -> Duration {
    [
        Duration::from_micros(10),
        Duration::from_micros(100),
        Duration::from_millis(1),
    ][usize::from(b % 3)]
}

/// Runs the scenario the bytes describe. Returns how many holds happened.
///
/// # Panics
///
/// On two holders at once, a lost update, an unexpected `Closed`, or a run longer than [`LIMIT`].
pub fn run(bytes: &[u8]) -> u64 {
    let (interval, plans) = decode(bytes);
    let gil = Gil::with_switch_interval(interval);
    let counter = GilCell::new(&gil, Cell::new(0u64));
    let inside = AtomicUsize::new(0);
    let holds = AtomicU64::new(0);
    let done = AtomicBool::new(false);

    let hold = |guard: &GilGuard<'_>| {
        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders at once");
        let c = counter.get(guard);
        c.set(c.get() + 1);
        holds.fetch_add(1, SeqCst);
        inside.fetch_sub(1, SeqCst);
    };

    thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            while !done.load(SeqCst) {
                assert!(start.elapsed() < LIMIT, "the scenario hung: {plans:?}");
                thread::sleep(Duration::from_millis(5));
            }
        });
        let workers: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (gil, hold) = (&gil, &hold);
                s.spawn(move || {
                    for &step in plan {
                        match step {
                            Step::Work(n) => {
                                let mut g = gil.acquire();
                                for _ in 0..n {
                                    hold(&g);
                                    g.checkpoint().unwrap();
                                }
                                hold(&g);
                            }
                            Step::Region => {
                                let mut g = gil.acquire();
                                hold(&g);
                                g.allow_threads(|| thread::sleep(Duration::from_micros(20)));
                                hold(&g);
                            }
                            Step::HandOver => {
                                let mut g = gil.acquire();
                                hold(&g);
                                g.hand_over();
                                hold(&g);
                            }
                            Step::Timed(n) => {
                                let limit = Duration::from_micros(u64::from(n) * 10);
                                match gil.try_acquire_for(limit) {
                                    Ok(g) => hold(&g),
                                    Err(AcquireError::Timeout) => {}
                                    Err(AcquireError::Closed) => panic!("nobody closes"),
                                }
                            }
                            Step::RequestDrop => gil.request_drop(),
                            Step::Interval(n) => gil.set_switch_interval(interval_of(n)).unwrap(),
                            Step::Ensure => {
                                let outer = gil.ensure().into_guard();
                                let mut outer = outer.expect("not held before: acquires");
                                hold(&mut outer);
                                let inner = gil.ensure().into_guard();
                                let mut inner = inner.expect_err("held: nested");
                                inner.checkpoint().unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, SeqCst);
    });
    let holds = holds.load(SeqCst);
    assert_eq!(counter.get(&gil.acquire()).get(), holds, "a lost update");
    holds
}
