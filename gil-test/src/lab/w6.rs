//! W6, async waiters: tokio tasks and OS threads sharing one lock, on a runtime of two worker
//! threads, while a timer task that never takes the lock measures how late its ticks come.
//!
//! Each run: 64 tasks and 4 OS threads each take the lock over and over, hold it for
//! [`WORK`] of CPU work, and let it go; the tasks take it one of four ways:
//! - **`acquire_async`**: `gil.acquire_async().await` — the task waits in line without its
//!   worker thread;
//! - **`spawn_blocking`**: the work, blocking `acquire()` included, moved to tokio's blocking
//!   pool (`spawn_blocking(..).await`);
//! - **tokio `Mutex` in front**: the workaround of projects without an async acquire — a
//!   `tokio::sync::Mutex` taken first, so that at most one task blocks its worker in
//!   `acquire()`;
//! - **blocking on the worker**: `acquire()` called from the task itself, which blocks its
//!   worker thread while it waits.
//!
//! Beside them, a run with the timer task alone (no lock traffic) is the timer's reference.
//! Reported: the timer's p99 lateness, against the reference; and the lock work done per
//! second (tasks and threads together), against `spawn_blocking`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::Gil;

/// CPU work done under the lock per unit.
pub const WORK: Duration = Duration::from_micros(20);
/// Tasks that take the lock.
pub const TASKS: usize = 64;
/// OS threads that take the lock.
pub const THREADS: usize = 4;
/// The runtime's worker threads.
pub const WORKERS: usize = 2;
/// The timer task's period.
pub const TICK: Duration = Duration::from_millis(1);

/// How the tasks take the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// No lock traffic at all: the timer alone.
    TimerAlone,
    /// `gil.acquire_async().await`.
    AcquireAsync,
    /// `spawn_blocking(|| gil.acquire() ..).await`.
    SpawnBlocking,
    /// A `tokio::sync::Mutex` taken first, then a blocking `acquire()` on the worker.
    TokioMutexInFront,
    /// A blocking `acquire()` on the worker.
    BlockingOnTheWorker,
}

impl Way {
    /// Every way, the reference first.
    pub const ALL: [Way; 5] = [
        Way::TimerAlone,
        Way::AcquireAsync,
        Way::SpawnBlocking,
        Way::TokioMutexInFront,
        Way::BlockingOnTheWorker,
    ];

    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Way::TimerAlone => "timer alone (no lock traffic)",
            Way::AcquireAsync => "gil acquire_async",
            Way::SpawnBlocking => "gil acquire() in spawn_blocking",
            Way::TokioMutexInFront => "tokio Mutex in front of acquire()",
            Way::BlockingOnTheWorker => "acquire() blocking the worker",
        }
    }

    /// The row's JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Way::TimerAlone => "timer_alone",
            Way::AcquireAsync => "acquire_async",
            Way::SpawnBlocking => "spawn_blocking",
            Way::TokioMutexInFront => "tokio_mutex_in_front",
            Way::BlockingOnTheWorker => "blocking_on_the_worker",
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// How the tasks took the lock.
    pub way: Way,
    /// The timer task's lateness: median and 99th percentile.
    pub timer_p50: Duration,
    /// See `timer_p50`.
    pub timer_p99: Duration,
    /// Ticks the timer saw.
    pub ticks: usize,
    /// Units of lock work per second, tasks and threads together.
    pub units_per_second: f64,
    /// Of those, the tasks' share.
    pub task_units_per_second: f64,
}

/// Holds the lock's worth of work: spins for [`WORK`].
fn work() {
    let until = Instant::now() + WORK;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Runs `way` for `time`.
pub fn run(way: Way, time: Duration) -> Run {
    let gil: &'static Gil = Box::leak(Box::new(Gil::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let task_units = Arc::new(AtomicU64::new(0));
    let thread_units = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let traffic = way != Way::TimerAlone;
    let threads: Vec<_> = (0..if traffic { THREADS } else { 0 })
        .map(|_| {
            let (stop, units) = (stop.clone(), thread_units.clone());
            thread::spawn(move || {
                while !stop.load(Relaxed) {
                    let g = gil.acquire();
                    work();
                    drop(g);
                    units.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    let front = Arc::new(tokio::sync::Mutex::new(()));
    let start = Instant::now();
    let lateness = runtime.block_on(async {
        let tasks: Vec<_> = (0..if traffic { TASKS } else { 0 })
            .map(|_| {
                let (stop, units, front) = (stop.clone(), task_units.clone(), front.clone());
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        match way {
                            Way::TimerAlone => {}
                            Way::AcquireAsync => {
                                let g = gil.acquire_async().await.expect("open");
                                work();
                                drop(g);
                            }
                            Way::SpawnBlocking => {
                                tokio::task::spawn_blocking(move || {
                                    let _g = gil.acquire();
                                    work();
                                })
                                .await
                                .expect("the blocking work");
                            }
                            Way::TokioMutexInFront => {
                                let _front = front.lock().await;
                                let _g = gil.acquire();
                                work();
                            }
                            Way::BlockingOnTheWorker => {
                                let _g = gil.acquire();
                                work();
                            }
                        }
                        units.fetch_add(1, Relaxed);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                let mut interval = tokio::time::interval(TICK);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Relaxed) {
                    let due = interval.tick().await;
                    late.push(Instant::now().saturating_duration_since(due.into_std()));
                }
                late
            })
        };
        tokio::time::sleep(time).await;
        stop.store(true, Relaxed);
        for t in tasks {
            t.await.expect("a task");
        }
        timer.await.expect("the timer")
    });
    let elapsed = start.elapsed();
    for t in threads {
        t.join().expect("a thread");
    }
    runtime.shutdown_background();
    let mut late = lateness;
    late.sort_unstable();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    let tasks = task_units.load(Relaxed) as f64 / elapsed.as_secs_f64();
    let threads = thread_units.load(Relaxed) as f64 / elapsed.as_secs_f64();
    Run {
        way,
        timer_p50: at(0.5),
        timer_p99: at(0.99),
        ticks: late.len(),
        units_per_second: tasks + threads,
        task_units_per_second: tasks,
    }
}
