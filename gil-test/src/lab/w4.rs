//! W4, fairness: N CPU-bound threads on one lock; how evenly they progress, their longest
//! stretch without progress, and the throughput all of them get together.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use super::contenders::{Contender, Held, Visit, unit};

/// Units between two looks at the clock: the resolution of the stretch measurement
/// (~2.5 µs of work).
const SAMPLE: u64 = 256;

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Fairness {
    /// Threads.
    pub n: usize,
    /// Units each thread did.
    pub units: Vec<u64>,
    /// Each thread's longest stretch without progress, from the common start to the end.
    pub worst_stretch: Vec<Duration>,
    /// Units per second, all threads together.
    pub throughput: f64,
}

impl Fairness {
    /// Jain's fairness index of the units: 1 when all are equal, 1/N when one did everything.
    pub fn jain(&self) -> f64 {
        let sum: f64 = self.units.iter().map(|&u| u as f64).sum();
        let squares: f64 = self.units.iter().map(|&u| (u as f64).powi(2)).sum();
        if squares == 0.0 {
            return 0.0;
        }
        sum * sum / (self.units.len() as f64 * squares)
    }

    /// The longest stretch any thread went without progress.
    pub fn worst(&self) -> Duration {
        self.worst_stretch.iter().copied().max().unwrap_or_default()
    }
}

/// One W4 run.
pub struct Run {
    /// Threads.
    pub n: usize,
    /// How long.
    pub time: Duration,
}

impl Visit for Run {
    type Out = Fairness;
    fn visit<C: Contender>(self, lock: &C) -> Fairness {
        run(lock, self.n, self.time)
    }
}

/// Runs W4 on `lock`.
pub fn run<C: Contender>(lock: &C, n: usize, time: Duration) -> Fairness {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(n + 1);
    let mut began = Instant::now();
    let mut end = began;
    let results: Vec<(u64, Instant, [Instant; 2])> = thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (stop, start) = (&stop, &start);
                super::w3::named(s, format!("CPU {}", i + 1), move || {
                    start.wait();
                    let mut last = Instant::now();
                    let mut worst = [last, last];
                    let mut held = lock.acquire();
                    let mut state = 0x2545_f491_4f6c_dd1d ^ i as u64;
                    let mut units = 0u64;
                    while !stop.load(Relaxed) {
                        for _ in 0..SAMPLE {
                            unit(&mut state);
                            held.checkpoint();
                        }
                        units += SAMPLE;
                        let now = Instant::now();
                        if now - last > worst[1] - worst[0] {
                            worst = [last, now];
                        }
                        last = now;
                    }
                    (units, last, worst)
                })
            })
            .collect();
        start.wait();
        began = Instant::now();
        thread::sleep(time);
        stop.store(true, Relaxed);
        end = Instant::now();
        threads
            .into_iter()
            .map(|t| t.join().expect("W4 thread"))
            .collect()
    });
    // Only the measured window counts: a stretch is cut at its start and end, and a thread
    // that ended waiting has been without progress since its last sample.
    let within =
        |from: Instant, to: Instant| to.min(end).saturating_duration_since(from.max(began));
    let worst_stretch = results
        .iter()
        .map(|&(_, last, [from, to])| within(from, to).max(within(last, end)))
        .collect();
    let total: u64 = results.iter().map(|r| r.0).sum();
    Fairness {
        n,
        units: results.iter().map(|r| r.0).collect(),
        worst_stretch,
        throughput: total as f64 / (end - began).as_secs_f64(),
    }
}
