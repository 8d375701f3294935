//! W1 (docs/workloads.md, "W1 uncontended"): the uncontended costs — acquire + release, and a
//! checkpoint with nothing pending — for gil and its peers, measured side by side in one run.
//!
//! Rounds of every contender are interleaved (A B C D, A B C D, …) so that a noisy neighbour
//! on the shared machine hits all of them alike; each contender's figure is its fastest round,
//! the one least disturbed.

use std::hint::black_box;
use std::time::Instant;

use gil_core::RawGil;
use lock_api::{RawMutex as _, RawMutexFair as _};

/// One measured contender.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured, e.g. "gil-core RawGil".
    pub name: &'static str,
    /// Nanoseconds per operation, fastest round.
    pub ns: f64,
}

/// W1's two tables.
#[derive(Clone, Debug)]
pub struct W1 {
    /// Uncontended acquire + release, ns per pair.
    pub acquire_release: Vec<Figure>,
    /// Checkpoint (or the peer's equivalent check) with nothing pending, ns per check.
    pub checkpoint: Vec<Figure>,
}

type Bench = (&'static str, Box<dyn FnMut(u64)>);

/// Runs W1 with `ops` operations per round and `rounds` rounds per contender.
pub fn run(ops: u64, rounds: usize) -> W1 {
    W1 {
        acquire_release: measure(acquire_release_benches(), ops, rounds),
        checkpoint: measure(checkpoint_benches(), ops, rounds),
    }
}

fn measure(mut benches: Vec<Bench>, ops: u64, rounds: usize) -> Vec<Figure> {
    let mut best = vec![f64::INFINITY; benches.len()];
    for _ in 0..rounds {
        for (i, (_, bench)) in benches.iter_mut().enumerate() {
            let start = Instant::now();
            bench(ops);
            let ns = start.elapsed().as_nanos() as f64 / ops as f64;
            best[i] = best[i].min(ns);
        }
    }
    benches
        .iter()
        .zip(best)
        .map(|((name, _), ns)| Figure { name, ns })
        .collect()
}

fn acquire_release_benches() -> Vec<Bench> {
    let gil: &'static RawGil = Box::leak(Box::new(RawGil::new()));
    let safe: &'static gil_std::Gil = Box::leak(Box::default());
    let pl: &'static parking_lot::RawMutex = Box::leak(Box::new(parking_lot::RawMutex::INIT));
    let std_mutex: &'static std::sync::Mutex<()> = Box::leak(Box::default());
    let ticket: &'static spin::mutex::TicketMutex<()> = Box::leak(Box::default());
    vec![
        (
            "gil-core RawGil",
            Box::new(move |n| {
                for _ in 0..n {
                    let gil = black_box(gil);
                    gil.lock().unwrap();
                    // SAFETY: locked just above on this thread.
                    unsafe { gil.unlock() };
                }
            }),
        ),
        (
            "gil-std Gil (safe API)",
            Box::new(move |n| {
                for _ in 0..n {
                    drop(black_box(safe).acquire());
                }
            }),
        ),
        (
            "parking_lot RawMutex",
            Box::new(move |n| {
                for _ in 0..n {
                    let pl = black_box(pl);
                    let guard = pl.lock();
                    // SAFETY: the guard state of the lock just taken.
                    unsafe { pl.unlock(guard) };
                }
            }),
        ),
        (
            "std Mutex",
            Box::new(move |n| {
                for _ in 0..n {
                    drop(black_box(std_mutex).lock().unwrap());
                }
            }),
        ),
        (
            "spin TicketMutex",
            Box::new(move |n| {
                for _ in 0..n {
                    drop(black_box(ticket).lock());
                }
            }),
        ),
    ]
}

/// The checks are written as in a real hot loop, without `black_box` on the lock: an atomic
/// load is never hoisted out of a loop, so each check is a real load and branch (the machine
/// code shows eight of each per round).
///
/// Checks per loop round. A check is about a cycle, so with one per round the loop's placement
/// in the binary decides the figure (whichever loop came first ran 2x slower, whatever it
/// checked); eight per round make the checks themselves what is measured.
const UNROLL: u64 = 8;

macro_rules! unroll {
    ($body:block) => {{
        $body $body $body $body $body $body $body $body
    }};
}

fn checkpoint_benches() -> Vec<Bench> {
    let gil: &'static RawGil = Box::leak(Box::new(RawGil::new()));
    gil.lock().unwrap(); // held for the life of the process: only this thread checks in
    let safe: &'static gil_std::Gil = Box::leak(Box::default());
    let mut guard_std = safe.acquire(); // likewise
    let pl: &'static parking_lot::RawMutex = Box::leak(Box::new(parking_lot::RawMutex::INIT));
    let mut guard = pl.lock(); // likewise
    vec![
        (
            "gil-core checkpoint",
            Box::new(move |n| {
                for _ in 0..n / UNROLL {
                    unroll!({
                        // SAFETY: this thread took the lock above and never releases it.
                        unsafe { gil.checkpoint() };
                    });
                }
            }),
        ),
        (
            "gil-std checkpoint",
            Box::new(move |n| {
                for _ in 0..n / UNROLL {
                    unroll!({
                        guard_std.checkpoint().unwrap();
                    });
                }
            }),
        ),
        (
            "parking_lot bump",
            Box::new(move |n| {
                for _ in 0..n / UNROLL {
                    unroll!({
                        // SAFETY: this thread holds the lock; `guard` is its state.
                        unsafe { pl.bump(&mut guard) };
                    });
                }
            }),
        ),
    ]
}
