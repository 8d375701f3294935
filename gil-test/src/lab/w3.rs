//! W3, the convoy: an I/O thread does one-byte echo round trips over a socket pair with an echo
//! thread that never takes the lock, holding the lock between round trips and releasing it
//! around each blocking send and receive; K CPU-bound threads hold the lock and checkpoint
//! between ~10 ns units of work.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Barrier;
use std::sync::atomic::{
    AtomicBool, AtomicU32,
    Ordering::{Acquire, Relaxed, Release},
};
use std::thread;
use std::time::{Duration, Instant};

use super::contenders::{Contender, Held, Visit, unit};

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    /// Echo round trips per second.
    pub round_trips: f64,
    /// Units of CPU work per second, all CPU threads together.
    pub units: f64,
}

/// One W3 run: `k` CPU threads (and the I/O thread unless `io` is false) for `time`.
pub struct Run {
    /// CPU-bound threads.
    pub k: usize,
    /// Whether the I/O thread runs.
    pub io: bool,
    /// How long.
    pub time: Duration,
}

impl Visit for Run {
    type Out = Rates;
    fn visit<C: Contender>(self, lock: &C) -> Rates {
        run(lock, self.k, self.io, self.time)
    }
}

/// Runs W3 on `lock`.
pub fn run<C: Contender>(lock: &C, k: usize, io: bool, time: Duration) -> Rates {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(k + usize::from(io) + 1);
    let (mut near, mut far) = UnixStream::pair().expect("socket pair");
    let (rates, elapsed) = thread::scope(|s| {
        if io {
            named(s, "echo".into(), move || echo(&mut far));
        }
        let io_thread = io.then(|| {
            let (stop, start) = (&stop, &start);
            named(s, "I/O".into(), move || {
                let mut held = lock.acquire();
                start.wait();
                let mut trips = 0u64;
                let mut byte = [7u8];
                while !stop.load(Relaxed) {
                    held.blocking(|| near.write_all(&byte)).expect("send");
                    held.blocking(|| near.read_exact(&mut byte))
                        .expect("receive");
                    trips += 1;
                }
                drop(held);
                drop(near); // the echo thread sees end of file and ends
                trips
            })
        });
        let cpus: Vec<_> = (0..k)
            .map(|i| {
                let (stop, start) = (&stop, &start);
                named(s, format!("CPU {}", i + 1), move || {
                    start.wait();
                    cpu_bound(lock, stop, i as u64)
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        thread::sleep(time);
        stop.store(true, Relaxed);
        let elapsed = began.elapsed();
        let trips = io_thread.map_or(0, |t| t.join().expect("I/O thread"));
        let units: u64 = cpus
            .into_iter()
            .map(|t| t.join().expect("CPU thread"))
            .sum();
        ((trips, units), elapsed)
    });
    let secs = elapsed.as_secs_f64();
    Rates {
        round_trips: rates.0 as f64 / secs,
        units: rates.1 as f64 / secs,
    }
}

/// A CPU-bound thread: takes the lock and does units of work with a checkpoint between them
/// until `stop`. Returns the units done.
pub(crate) fn cpu_bound<C: Contender>(lock: &C, stop: &AtomicBool, seed: u64) -> u64 {
    let mut held = lock.acquire();
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ seed;
    let mut units = 0u64;
    while !stop.load(Relaxed) {
        for _ in 0..64 {
            unit(&mut state);
            held.checkpoint();
        }
        units += 64;
    }
    units
}

/// Spawns a named scoped thread.
pub(crate) fn named<'scope, T: Send + 'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> thread::ScopedJoinHandle<'scope, T> {
    thread::Builder::new()
        .name(name)
        .spawn_scoped(s, f)
        .expect("spawn a thread")
}

fn echo(stream: &mut UnixStream) {
    let mut byte = [0u8];
    while stream.read_exact(&mut byte).is_ok() {
        if stream.write_all(&byte).is_err() {
            break;
        }
    }
}

/// W3's floor at K = 1: the least any lock can cost when the I/O thread takes it twice per
/// round trip. No lock at all, only the loan itself: the I/O thread raises a request on one
/// word and spins until the CPU thread, which looks at the word at each checkpoint, grants it;
/// it gives the word back before each send and receive. Nothing is queued, counted or timed,
/// and nobody sleeps. Not a lock anybody could use (one borrower, one lender, both always
/// spinning); a row to read the locks against, for a machine whose cross-core trips vary.
pub fn floor(time: Duration) -> Rates {
    /// The lender holds; nobody asks.
    const HELD: u32 = 0;
    /// The I/O thread asks for the loan.
    const ASKED: u32 = 1;
    /// The I/O thread holds the loan.
    const LENT: u32 = 2;
    // On a line of its own, like the lock words of the contenders.
    #[repr(align(128))]
    struct Word(AtomicU32);
    let word = Word(AtomicU32::new(HELD));
    let word = &word.0;
    let stop = AtomicBool::new(false);
    let start = Barrier::new(3);
    let (mut near, mut far) = UnixStream::pair().expect("socket pair");
    let ((trips, units), elapsed) = thread::scope(|s| {
        named(s, "echo".into(), move || echo(&mut far));
        let (stop, start) = (&stop, &start);
        let io = named(s, "I/O".into(), move || {
            // Release pairs with the lender's Acquire load: not needed for the data (there is
            // none), kept so that the floor pays what a real handoff pays.
            let give = || word.store(HELD, Release);
            let take = || {
                word.store(ASKED, Release);
                // Acquire pairs with the lender's Release store of LENT.
                while word.load(Acquire) != LENT && !stop.load(Relaxed) {
                    std::hint::spin_loop();
                }
            };
            start.wait();
            take();
            let mut trips = 0u64;
            let mut byte = [7u8];
            while !stop.load(Relaxed) {
                give();
                near.write_all(&byte).expect("send");
                take();
                give();
                near.read_exact(&mut byte).expect("receive");
                take();
                trips += 1;
            }
            give();
            drop(near); // the echo thread sees end of file and ends
            trips
        });
        let cpu = named(s, "CPU 1".into(), move || {
            start.wait();
            let mut state = 0x9e37_79b9_7f4a_7c15;
            let mut units = 0u64;
            while !stop.load(Relaxed) {
                for _ in 0..64 {
                    unit(&mut state);
                    // The checkpoint: one relaxed load, as the locks' own.
                    if word.load(Relaxed) == ASKED {
                        // Release pairs with the I/O thread's Acquire; Acquire below with its
                        // Release store of HELD.
                        word.store(LENT, Release);
                        // A grant can land after the I/O thread's last give-back: stop anyway.
                        while word.load(Acquire) == LENT && !stop.load(Relaxed) {
                            std::hint::spin_loop();
                        }
                    }
                }
                units += 64;
            }
            units
        });
        start.wait();
        let began = Instant::now();
        thread::sleep(time);
        stop.store(true, Relaxed);
        let elapsed = began.elapsed();
        let trips = io.join().expect("I/O thread");
        let units = cpu.join().expect("CPU thread");
        ((trips, units), elapsed)
    });
    let secs = elapsed.as_secs_f64();
    Rates {
        round_trips: trips as f64 / secs,
        units: units as f64 / secs,
    }
}
