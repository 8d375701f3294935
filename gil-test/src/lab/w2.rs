//! W2, handoff: from a drop request to the requester running with the lock, between two
//! threads; against the floor, a raw futex wake between two threads.
//!
//! The two threads play ping-pong: the holder works through checkpoints until it sees the other
//! thread queued, then stamps the time and requests a drop; its checkpoint hands over, and
//! queues it behind. The other thread, back from its checkpoint with the lock, reads the stamp.
//! With `sleep_first`, the holder lets the waiter fall asleep on its futex before asking (the
//! case a switch-interval preemption meets); without, the waiter is still in its short spin.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::Gil;

/// How long a waiter is given to fall asleep before the request, when it should be asleep.
pub const ASLEEP_AFTER: Duration = Duration::from_micros(200);

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Samples.
    pub samples: usize,
}

/// Percentiles of latencies given in nanoseconds.
pub fn percentiles(mut ns: Vec<u64>) -> Latency {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Latency {
        p50: at(0.5),
        p99: at(0.99),
        samples: ns.len(),
    }
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// A stamp: the time, and which player wrote it in the low bit (0 is "none").
fn stamp_of(epoch: Instant, me: u64) -> u64 {
    ((now_ns(epoch) + 1) << 1) | me
}

/// The latency since `stamp` if the other player wrote it.
fn since(epoch: Instant, stamp: u64, me: u64) -> Option<u64> {
    (stamp != 0 && stamp & 1 != me).then(|| (now_ns(epoch) + 1).saturating_sub(stamp >> 1))
}

/// gil: drop request to the requester running, `samples` handoffs; latencies in nanoseconds.
pub fn gil_samples(samples: usize, sleep_first: bool) -> Vec<u64> {
    let gil = Gil::new();
    ping_pong(
        samples,
        || gil.acquire(),
        |guard, done, mark| {
            let mut state = 1u64;
            while !gil.has_waiters() && !done.load(Relaxed) {
                super::contenders::unit(&mut state);
                guard.checkpoint().unwrap();
            }
            if sleep_first {
                busy_wait(ASLEEP_AFTER);
            }
            mark();
            gil.request_drop();
            guard.checkpoint().unwrap();
        },
    )
}

/// Two players take turns with a lock: each, holding it, reads the other's stamp (the time it
/// asked to hand over), then calls `hand_over`, which stamps with `mark` and gives the lock to
/// the other player, returning once it has it back. Returns the latencies, in nanoseconds.
fn ping_pong<G>(
    samples: usize,
    acquire: impl Fn() -> G + Sync,
    hand_over: impl Fn(&mut G, &AtomicBool, &dyn Fn()) + Sync,
) -> Vec<u64> {
    let epoch = Instant::now();
    let stamp = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let per_thread = samples / 2;
    let mut all: Vec<u64> = thread::scope(|s| {
        let players: Vec<_> = (0..2u64)
            .map(|me| {
                let (stamp, done, acquire, hand_over) = (&stamp, &done, &acquire, &hand_over);
                s.spawn(move || {
                    let mut seen = Vec::with_capacity(per_thread);
                    let mut guard = acquire();
                    let mark = || stamp.store(stamp_of(epoch, me), Relaxed);
                    while seen.len() < per_thread && !done.load(Relaxed) {
                        // Our turn: read the other's stamp (none on the first turn).
                        if let Some(ns) = since(epoch, stamp.load(Relaxed), me) {
                            stamp.store(0, Relaxed);
                            seen.push(ns);
                        }
                        hand_over(&mut guard, done, &mark);
                    }
                    done.store(true, Relaxed);
                    seen
                })
            })
            .collect();
        players
            .into_iter()
            .flat_map(|p| p.join().expect("W2 player"))
            .collect()
    });
    all.truncate(samples);
    all
}

fn busy_wait(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {}
}

/// The floor: a futex wake from one thread to another sleeping on it, `samples` wakes;
/// latencies in nanoseconds.
pub fn futex_samples(samples: usize) -> Vec<u64> {
    let word = AtomicU32::new(0);
    let epoch = Instant::now();
    let stamp = AtomicU64::new(0);
    let mut seen = Vec::with_capacity(samples);
    thread::scope(|s| {
        let (word, stamp) = (&word, &stamp);
        // The word says whose turn it is: 1, the waker's (this thread); 2, the sleeper's.
        s.spawn(move || {
            for _ in 0..samples {
                loop {
                    let w = word.load(SeqCst);
                    if w == 1 {
                        break;
                    }
                    atomic_wait::wait(word, w);
                }
                let until = Instant::now() + ASLEEP_AFTER;
                while Instant::now() < until {}
                stamp.store(now_ns(epoch), SeqCst);
                word.store(2, SeqCst);
                atomic_wait::wake_one(word);
            }
        });
        for _ in 0..samples {
            word.store(1, SeqCst);
            atomic_wait::wake_one(word);
            loop {
                let w = word.load(SeqCst);
                if w == 2 {
                    break;
                }
                atomic_wait::wait(word, w);
            }
            seen.push(now_ns(epoch) - stamp.load(SeqCst));
            word.store(0, SeqCst);
        }
    });
    seen
}

/// parking_lot: `bump()` with the other thread parked in `lock()`, `samples` handoffs;
/// latencies in nanoseconds.
pub fn parking_lot_bump_samples(samples: usize) -> Vec<u64> {
    let m = parking_lot::Mutex::new(());
    ping_pong(
        samples,
        || m.lock(),
        |guard, _, mark| {
            // parking_lot cannot tell whether anyone waits: give the other thread the same time
            // to queue and fall asleep.
            busy_wait(ASLEEP_AFTER);
            mark();
            parking_lot::MutexGuard::bump(guard);
        },
    )
}
