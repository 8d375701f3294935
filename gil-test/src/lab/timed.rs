//! Timed acquire: how late `try_acquire_for` returns on a lock another thread holds, past the
//! deadline it was given. The figure a timed wait is judged by: a waiter that gives up should
//! give up on time.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gil_std::{AcquireError, Gil};

/// The timeouts asked for.
pub const TIMEOUTS: [Duration; 3] = [
    Duration::from_micros(50),
    Duration::from_micros(200),
    Duration::from_millis(1),
];

/// How late the timed acquires of one timeout came back.
#[derive(Clone, Copy, Debug)]
pub struct Lateness {
    /// The timeout asked for.
    pub timeout: Duration,
    /// Median lateness past the deadline.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// How many timed acquires were measured.
    pub samples: usize,
}

/// Measures `samples` timed acquires of each of [`TIMEOUTS`] on a lock held by another
/// thread for the whole run.
pub fn run(samples: usize) -> Vec<Lateness> {
    let gil = Gil::new();
    let ((held, is_held), (release, released)) = (mpsc::channel(), mpsc::channel::<()>());
    thread::scope(|s| {
        let gil = &gil;
        s.spawn(move || {
            let _g = gil.acquire();
            held.send(()).unwrap();
            released.recv().unwrap();
        });
        is_held.recv().unwrap();
        let figures = TIMEOUTS
            .iter()
            .map(|&timeout| {
                let mut late: Vec<Duration> = (0..samples)
                    .map(|_| {
                        let start = Instant::now();
                        let outcome = gil.try_acquire_for(timeout).map(drop);
                        assert_eq!(outcome, Err(AcquireError::Timeout), "the lock is held");
                        start.elapsed().saturating_sub(timeout)
                    })
                    .collect();
                late.sort_unstable();
                Lateness {
                    timeout,
                    p50: late[late.len() / 2],
                    p99: late[late.len() * 99 / 100],
                    samples,
                }
            })
            .collect();
        release.send(()).unwrap();
        figures
    })
}
