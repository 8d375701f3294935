//! The lab: the workloads of docs/workloads.md (W1–W5 and more) for gil and its peers, run
//! side by side, reported as a table of ratios (and JSON), with timelines of gil's convoy and
//! fairness runs.
//!
//! - [`contenders`] — gil and the peers behind one interface.
//! - [`w2`], [`w3`], [`w4`], [`w5`], [`w6`] — the workloads ([`crate::w1`] is W1); [`abuse`], the
//!   abuse case; [`timed`], timed acquire's lateness.
//! - [`busy`] — W3 beside busy loops, and oversubscribed.
//! - [`cpython`] — W3 and W4 run by CPython through `python3`.
//! - [`lua`] — a real engine (mlua) behind the lock: the hook's cost, and four threads
//!   sharing one Lua state.
//! - [`timeline`] — Chrome trace JSON and SVG from a [`gil_std::Recorder`] trace.

pub mod abuse;
pub mod busy;
pub mod cli;
pub mod contenders;
pub mod cpython;
pub mod lua;
pub mod timed;
pub mod timeline;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;

use std::time::Duration;

use gil_std::{Gil, Recorder, Trace};

/// How long the lab runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// W1: operations per round and rounds.
    pub w1: (u64, usize),
    /// W2: handoffs per contender, over all rounds.
    pub w2_samples: usize,
    /// W2: rounds; each runs every contender and the floor for its share of the samples, and
    /// the percentiles are of all rounds' samples together.
    pub w2_rounds: usize,
    /// W3: time per run.
    pub w3_time: Duration,
    /// W3: rounds; each runs the baselines and every contender once, and the tables show the
    /// median of the rounds' ratios.
    pub w3_rounds: usize,
    /// W3 loaded and oversubscribed: rounds, each as W3's, at W3's time per run.
    pub w3_busy_rounds: usize,
    /// W4: time per run.
    pub w4_time: Duration,
    /// W5: time per preemption demo.
    pub w5_time: Duration,
    /// Lua: time per run.
    pub lua_time: Duration,
    /// W6: time per run.
    pub w6_time: Duration,
    /// W6's grant row: numbers of queued tasks, and rounds of each (gil and tokio in turn).
    pub w6_grants: (&'static [usize], usize),
}

impl Plan {
    /// The README's run: about a minute.
    pub const QUICK: Plan = Plan {
        w1: (2_000_000, 10),
        w2_samples: 2_000,
        w2_rounds: 2,
        w3_time: Duration::from_millis(500),
        w3_rounds: 3,
        w3_busy_rounds: 3,
        w4_time: Duration::from_millis(800),
        w5_time: Duration::from_millis(300),
        lua_time: Duration::from_millis(500),
        w6_time: Duration::from_secs(1),
        w6_grants: (&[1_000, 10_000, 100_000], 3),
    };
    /// The full run: W4 at 3 s per run.
    pub const FULL: Plan = Plan {
        w1: (10_000_000, 40),
        w2_samples: 10_000,
        w2_rounds: 5,
        w3_time: Duration::from_secs(2),
        w3_rounds: 3,
        w3_busy_rounds: 5,
        w4_time: Duration::from_secs(3),
        w5_time: Duration::from_secs(1),
        lua_time: Duration::from_secs(2),
        w6_time: Duration::from_secs(3),
        w6_grants: (&[1_000, 10_000, 100_000, 1_000_000], 5),
    };
}

/// W3's numbers of CPU threads (K).
pub const KS: [usize; 3] = [1, 2, 4];
/// W4's thread counts.
pub const NS: [usize; 4] = [2, 4, 8, 16];

/// The switch interval every contender uses (the default, CPython's).
pub const INTERVAL: Duration = Gil::DEFAULT_SWITCH_INTERVAL;

/// Records `gil` while `work` runs on it, from its start for `until` (so every thread's state
/// is known from its first event on; cut the window to draw with [`timeline::rows`]).
pub fn record(gil: &Gil, until: Duration, work: impl FnOnce(&Gil) + Send) -> Trace {
    let recorder = Recorder::start(gil);
    std::thread::scope(|s| {
        s.spawn(|| work(gil));
        std::thread::sleep(until);
        recorder.stop()
    })
}

/// Jain's fairness index of the threads' units of work, (Σx)² ÷ (n Σx²): 1 when all are equal,
/// 1/n when one did everything (0 when nobody did anything).
pub fn jain(units: &[u64]) -> f64 {
    let sum: f64 = units.iter().map(|&u| u as f64).sum();
    let squares: f64 = units.iter().map(|&u| (u as f64).powi(2)).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (units.len() as f64 * squares)
}
