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
//!
//! The grant row ([`grants`]) times async grants alone: `N` tasks queued on a held lock, then
//! released one after another, on a `Gil` and on a `tokio::sync::Mutex`.

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

/// Who grants the lock in [`grants`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granter {
    /// A [`Gil`], the tasks waiting in `acquire_async`.
    Gil,
    /// A `tokio::sync::Mutex`, the tasks waiting in `lock`.
    TokioMutex,
}

impl Granter {
    /// Both, gil first.
    pub const ALL: [Granter; 2] = [Granter::Gil, Granter::TokioMutex];

    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Granter::Gil => "gil acquire_async",
            Granter::TokioMutex => "tokio Mutex::lock",
        }
    }

    /// The row's JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Granter::Gil => "gil",
            Granter::TokioMutex => "tokio_mutex",
        }
    }
}

/// The grant row: `waiters` tasks queue on a held lock, on a runtime of [`WORKERS`] worker
/// threads; then the holder lets go, and each task in turn is granted the lock, lets it go at
/// once (which grants the next) and ends. Returns the time from the holder's release to the
/// last task's end, divided by `waiters`: the cost of one async grant, from a release to the
/// next. The `Gil`'s switch interval is the longest, so that no slice ends during the run.
pub fn grants(granter: Granter, waiters: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let queued = Arc::new(AtomicU64::new(0));
    let left = Arc::new(AtomicU64::new(waiters as u64));
    let all_done = Arc::new(tokio::sync::Notify::new());
    let elapsed = runtime.block_on(async {
        let end = {
            let (left, all_done) = (left.clone(), all_done.clone());
            move || {
                if left.fetch_sub(1, Relaxed) == 1 {
                    all_done.notify_one();
                }
            }
        };
        match granter {
            Granter::Gil => {
                // The longest interval: no slice ends during the run, so what is timed is the
                // grants, not the asks a waiting task makes at a slice's end.
                let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
                    Gil::MAX_SWITCH_INTERVAL,
                )));
                let held = gil.acquire();
                for _ in 0..waiters {
                    let (queued, end) = (queued.clone(), end.clone());
                    tokio::spawn(async move {
                        let taking = gil.acquire_async();
                        queued.fetch_add(1, Relaxed);
                        drop(taking.await.expect("open"));
                        end();
                    });
                }
                released(held, &queued, waiters, &all_done).await
            }
            Granter::TokioMutex => {
                let mutex = Arc::new(tokio::sync::Mutex::new(()));
                let held = mutex.clone().lock_owned().await;
                for _ in 0..waiters {
                    let (queued, end, mutex) = (queued.clone(), end.clone(), mutex.clone());
                    tokio::spawn(async move {
                        let taking = mutex.lock();
                        queued.fetch_add(1, Relaxed);
                        drop(taking.await);
                        end();
                    });
                }
                released(held, &queued, waiters, &all_done).await
            }
        }
    });
    runtime.shutdown_background();
    elapsed / u32::try_from(waiters).expect("fewer than 2^32 waiters")
}

/// Waits until all `waiters` tasks are in line, then lets the lock go (drops `held`) and
/// returns the time until the last task ends (`all_done`). A task is counted (`queued`) just
/// before its first poll of its lock future, which queues it: once all are counted and the
/// workers are idle again, all are in line.
async fn released<H>(
    held: H,
    queued: &AtomicU64,
    waiters: usize,
    all_done: &tokio::sync::Notify,
) -> Duration {
    while queued.load(Relaxed) < waiters as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = Instant::now();
    drop(held);
    all_done.notified().await;
    start.elapsed()
}
