//! W3, the convoy: an I/O thread does one-byte echo round trips over a socket pair with an echo
//! thread that never takes the lock, holding the lock between round trips and releasing it
//! around each blocking send and receive; K CPU-bound threads hold the lock and checkpoint
//! between ~10 ns units of work. The oversubscribed run has two I/O threads, and the loaded
//! runs have [`BusyLoops`] beside them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{
    AtomicBool, AtomicU32,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::contenders::{Contender, Held, Visit, unit};

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    /// Echo round trips per second, all I/O threads together.
    pub round_trips: f64,
    /// Units of CPU work per second, all CPU threads together.
    pub units: f64,
}

/// One W3 run: `k` CPU threads and `ios` I/O threads for `time`.
pub struct Run {
    /// CPU-bound threads.
    pub k: usize,
    /// I/O threads, each with an echo thread of its own.
    pub ios: usize,
    /// How long.
    pub time: Duration,
}

impl Visit for Run {
    type Out = Rates;
    fn visit<C: Contender>(self, lock: &C) -> Rates {
        run(lock, self.k, self.ios, self.time)
    }
}

/// Runs W3 on `lock`.
pub fn run<C: Contender>(lock: &C, k: usize, ios: usize, time: Duration) -> Rates {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(k + ios + 1);
    let (rates, elapsed) = thread::scope(|s| {
        let io_threads: Vec<_> = (0..ios)
            .map(|i| {
                let (mut near, mut far) = UnixStream::pair().expect("socket pair");
                named(s, format!("echo {}", i + 1), move || echo(&mut far));
                let (stop, start) = (&stop, &start);
                named(s, format!("I/O {}", i + 1), move || {
                    start.wait();
                    let mut held = lock.acquire();
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
            })
            .collect();
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
        let trips: u64 = io_threads
            .into_iter()
            .map(|t| t.join().expect("I/O thread"))
            .sum();
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

/// Threads that spin on the CPU and take no lock, outside load for the loaded runs; they stop
/// when this is dropped.
pub struct BusyLoops {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl BusyLoops {
    /// Starts `n` busy loops (none for 0).
    pub fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let stop = Arc::clone(&stop);
                thread::Builder::new()
                    .name(format!("busy {}", i + 1))
                    .spawn(move || {
                        let mut state = i as u64 + 1;
                        while !stop.load(Relaxed) {
                            unit(&mut state);
                        }
                    })
                    .expect("spawn a busy loop")
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn echo(stream: &mut UnixStream) {
    let mut byte = [0u8];
    while stream.read_exact(&mut byte).is_ok() {
        if stream.write_all(&byte).is_err() {
            break;
        }
    }
}

/// The word of [`Floor`]: the lender (the CPU thread) holds and nobody asks.
const HELD: u32 = 0;
/// The borrower (the I/O thread) asks for the loan.
const ASKED: u32 = 1;
/// The borrower holds the loan.
const LENT: u32 = 2;
/// The lender has stopped: nothing more is lent, and asking returns at once.
const GONE: u32 = 3;

/// W3's floor at K = 1: the least any lock can cost when the I/O thread takes it twice per
/// round trip. Not a lock: only the loan itself, for [`run`] with one CPU thread (the lender,
/// which calls `checkpoint`) and the I/O thread (the borrower, which calls `blocking`). The
/// borrower asks on one word and spins until the lender, which looks at the word at each
/// checkpoint, grants it; it gives the word back as each blocking call begins. Nothing is
/// queued, counted or timed, and nobody sleeps. With two CPU threads it would exclude nothing.
#[derive(Default)]
#[repr(align(128))] // a line of its own, like the contenders' lock words
pub struct Floor(AtomicU32);

/// A thread's side of [`Floor`].
pub struct FloorSide<'a> {
    word: &'a AtomicU32,
    /// This side called `blocking`: it is the borrower.
    borrower: bool,
    /// The borrower holds a loan.
    lent: bool,
}

impl Contender for Floor {
    type Held<'a> = FloorSide<'a>;
    fn acquire(&self) -> FloorSide<'_> {
        FloorSide {
            word: &self.0,
            borrower: false,
            lent: false,
        }
    }
}

impl Held for FloorSide<'_> {
    #[inline]
    fn checkpoint(&mut self) {
        // One relaxed load, as the locks' own checkpoints.
        if self.word.load(Relaxed) == ASKED {
            // Only the lender moves ASKED on. Release pairs with the borrower's Acquire.
            self.word.store(LENT, Release);
            // Acquire pairs with the borrower's Release as it gives the word back.
            while self.word.load(Acquire) == LENT {
                std::hint::spin_loop();
            }
        }
    }

    fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.borrower = true;
        self.give_back();
        let out = f();
        // Asks, unless the lender is gone. Relaxed: the Acquire load below orders the loan.
        if self
            .word
            .compare_exchange(HELD, ASKED, Relaxed, Relaxed)
            .is_ok()
        {
            // Acquire pairs with the lender's Release store of LENT. GONE: the lender left.
            loop {
                match self.word.load(Acquire) {
                    LENT => {
                        self.lent = true;
                        break;
                    }
                    GONE => break,
                    _ => std::hint::spin_loop(),
                }
            }
        }
        out
    }
}

impl FloorSide<'_> {
    /// The borrower gives the loan back, if it holds one.
    fn give_back(&mut self) {
        if self.lent {
            self.lent = false;
            // Only the borrower moves LENT on. Release pairs with the lender's Acquire.
            self.word.store(HELD, Release);
        }
    }
}

impl Drop for FloorSide<'_> {
    fn drop(&mut self) {
        if self.borrower {
            self.give_back();
        } else {
            // The lender leaves; a borrower asking or about to ask stops waiting.
            self.word.store(GONE, Relaxed);
        }
    }
}
