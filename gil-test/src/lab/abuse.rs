//! The abuse case (docs/workloads.md, "Abuse case"): a thread that alternates 1 µs blocking
//! regions with 1 ms CPU bursts, against K pure CPU-bound threads. A fast-return policy must
//! not hand it more than its fair share: its units ÷ the mean of the CPU threads' units should
//! stay within 10 % of 1.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use super::contenders::{Contender, Held, Visit, unit};
use super::w3::named;

/// The abuser's blocking region and CPU burst.
pub const REGION: Duration = Duration::from_micros(1);
/// See [`REGION`].
pub const BURST: Duration = Duration::from_millis(1);

/// One run: `k` CPU threads and the abuser, for `time`.
pub struct Run {
    /// CPU-bound threads.
    pub k: usize,
    /// How long.
    pub time: Duration,
}

/// What a run measured: units per thread.
#[derive(Clone, Debug)]
pub struct Shares {
    /// The abuser's units.
    pub abuser: u64,
    /// Each CPU thread's units.
    pub cpu: Vec<u64>,
}

impl Shares {
    /// The abuser's units ÷ the mean of the CPU threads' units: 1 is a fair share.
    pub fn ratio(&self) -> f64 {
        let mean = self.cpu.iter().sum::<u64>() as f64 / self.cpu.len().max(1) as f64;
        self.abuser as f64 / mean
    }
}

impl Visit for Run {
    type Out = Shares;
    fn visit<C: Contender>(self, lock: &C) -> Shares {
        run(lock, self.k, self.time)
    }
}

/// Runs the abuse case on `lock`.
pub fn run<C: Contender>(lock: &C, k: usize, time: Duration) -> Shares {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(k + 2);
    thread::scope(|s| {
        let (stop, start) = (&stop, &start);
        let abuser = named(s, "abuser".into(), move || {
            start.wait();
            bursts(lock, stop, 3, true)
        });
        let cpus: Vec<_> = (0..k)
            .map(|i| {
                named(s, format!("CPU {}", i + 1), move || {
                    start.wait();
                    bursts(lock, stop, 4 + i as u64, false)
                })
            })
            .collect();
        start.wait();
        thread::sleep(time);
        stop.store(true, Relaxed);
        Shares {
            abuser: abuser.join().expect("abuser"),
            cpu: cpus
                .into_iter()
                .map(|c| c.join().expect("CPU thread"))
                .collect(),
        }
    })
}

/// Units of work in [`BURST`]s, each followed by a [`REGION`] if `abuse`. The CPU threads run
/// the same loop without the region, so that both pay the same clock reads per unit (timing the
/// bursts costs about 4 % of the units here), and the ratio shows only what the lock gives.
fn bursts<C: Contender>(lock: &C, stop: &AtomicBool, seed: u64, abuse: bool) -> u64 {
    let mut held = lock.acquire();
    let mut state = seed;
    let mut units = 0u64;
    while !stop.load(Relaxed) {
        let burst = Instant::now();
        while burst.elapsed() < BURST {
            for _ in 0..64 {
                unit(&mut state);
                held.checkpoint();
            }
            units += 64;
        }
        if abuse {
            held.blocking(|| {
                let until = Instant::now() + REGION;
                while Instant::now() < until {}
            });
        }
    }
    units
}
