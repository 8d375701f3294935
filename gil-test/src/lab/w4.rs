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

/// A span this long in which no thread made progress is the machine's stall, not the lock's
/// doing: a handoff between two threads takes ~30 µs here (a futex wake), a host that
/// deschedules the VM takes milliseconds.
pub const STALL: Duration = Duration::from_micros(200);

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Fairness {
    /// Threads.
    pub n: usize,
    /// Units each thread did.
    pub units: Vec<u64>,
    /// Each thread's longest stretch without progress, from the common start to the end.
    pub worst_stretch: Vec<Duration>,
    /// Each thread's longest stretch without progress less the machine's stalls within it:
    /// the spans of at least [`STALL`] in which no thread progressed. Empty when not measured
    /// (CPython).
    pub worst_net: Vec<Duration>,
    /// Units per second, all threads together.
    pub throughput: f64,
}

impl Fairness {
    /// Jain's fairness index of the units: 1 when all are equal, 1/N when one did everything.
    pub fn jain(&self) -> f64 {
        super::jain(&self.units)
    }

    /// The longest stretch any thread went without progress.
    pub fn worst(&self) -> Duration {
        self.worst_stretch.iter().copied().max().unwrap_or_default()
    }

    /// The longest stretch any thread went without progress, net of the machine's stalls;
    /// `None` when not measured.
    pub fn worst_net(&self) -> Option<Duration> {
        self.worst_net.iter().copied().max()
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
    let results: Vec<(u64, Instant, [Instant; 2], Vec<Instant>)> = thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (stop, start) = (&stop, &start);
                super::w3::named(s, format!("CPU {}", i + 1), move || {
                    start.wait();
                    let mut last = Instant::now();
                    let mut worst = [last, last];
                    // Every look, for the stretches net of the machine's stalls (~16 bytes per
                    // 2.5 µs of progress: some 20 MB over a 3 s run).
                    let mut marks = vec![last];
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
                        marks.push(now);
                    }
                    (units, last, worst, marks)
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
        .map(|&(_, last, [from, to], _)| within(from, to).max(within(last, end)))
        .collect();
    let worst_net = net_of_stalls(
        &results.iter().map(|r| r.3.as_slice()).collect::<Vec<_>>(),
        began,
        end,
    );
    let total: u64 = results.iter().map(|r| r.0).sum();
    Fairness {
        n,
        units: results.iter().map(|r| r.0).collect(),
        worst_stretch,
        worst_net,
        throughput: total as f64 / (end - began).as_secs_f64(),
    }
}

/// Each thread's longest stretch without progress within `[began, end]`, less the machine's
/// stalls within it: the spans of at least [`STALL`] between two looks of any thread, i.e. in
/// which no thread progressed. `marks` are each thread's looks at the clock, in order.
pub fn net_of_stalls(marks: &[&[Instant]], began: Instant, end: Instant) -> Vec<Duration> {
    // Each span [from, to], clipped to the run.
    let clip = |from: Instant, to: Instant| (from.max(began), to.min(end).max(began));
    let spans = |m: &[Instant]| -> Vec<(Instant, Instant)> {
        m.windows(2)
            .map(|w| (w[0], w[1]))
            .chain(m.last().map(|&l| (l, end)))
            .map(|(a, b)| clip(a, b))
            .filter(|(a, b)| b > a)
            .collect()
    };
    let mut all: Vec<Instant> = marks.iter().flat_map(|m| m.iter().copied()).collect();
    all.sort_unstable();
    all.push(end);
    let stalls: Vec<(Instant, Instant)> = all
        .windows(2)
        .filter(|w| w[1] - w[0] >= STALL)
        .map(|w| clip(w[0], w[1]))
        .collect();
    marks
        .iter()
        .map(|m| {
            // Both lists are in time order: one pass over the stalls for all the spans.
            let mut first = 0;
            spans(m)
                .into_iter()
                .map(|(a, b)| {
                    while first < stalls.len() && stalls[first].1 <= a {
                        first += 1;
                    }
                    let stalled: Duration = stalls[first..]
                        .iter()
                        .take_while(|s| s.0 < b)
                        .map(|&(s0, s1)| s1.min(b).saturating_duration_since(s0.max(a)))
                        .sum();
                    (b - a).saturating_sub(stalled)
                })
                .max()
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thread 0 waits 10 ms while thread 1 progresses, except for 3 ms in which neither does
    /// (the machine stopped both): its worst stretch net of that stall is 7 ms. Thread 1's own
    /// 3 ms stall is all stall: its worst net stretch is its longest gap outside it.
    #[test]
    fn a_stall_of_every_thread_is_taken_out_of_the_stretch() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let us = |u: u64| t0 + Duration::from_micros(u);
        let a = [ms(0), ms(10), ms(11)];
        // Thread 1 looks every 100 µs from 0 to 11 ms, except from 4 to 7 ms.
        let b: Vec<Instant> = (0..=110)
            .map(|i| us(i * 100))
            .filter(|&t| t <= ms(4) || t >= ms(7))
            .collect();
        let net = net_of_stalls(&[&a, &b], t0, ms(11));
        assert_eq!(net[0], Duration::from_millis(7));
        assert_eq!(net[1], Duration::from_micros(100));
    }
}
