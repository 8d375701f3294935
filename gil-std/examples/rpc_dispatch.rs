//! rpc_dispatch — a thread pool dispatching requests into servants that live behind a `Gil`, as
//! an RPC servant runtime does.
//!
//! A pool thread takes a request off the queue (without the lock), takes the lock, and runs the
//! servant. A servant may make an *outgoing call*: the request goes to a remote peer (a thread
//! that never takes the lock), and its reply comes back as a *callback*, queued to the pool
//! and run by another pool thread under the lock. The servant waits for the callback inside
//! `allow_threads`, so the callback can take the lock; waiting with the lock held instead would
//! deadlock, which [`Config::hold_lock_while_calling`] shows (the wait gives up after a while
//! instead of hanging).
//!
//! With a pool of one thread, servants run strictly one after another, in the order requests
//! were submitted (outgoing calls need a second thread for their callback).
//!
//! ```text
//! cargo run --release -p gil-std --example rpc_dispatch -- 4
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use gil_std::{Gil, GilCell, ThreadStats};

/// A request to a servant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Compute for a while under the lock (`n` rounds), with checkpoints.
    Compute(u32),
    /// Do blocking I/O for `micros` (a blocking region).
    Io(u64),
    /// Ask the remote peer to double `x` and wait for its callback.
    CallOut(i64),
}

/// How to run the pool.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Pool threads.
    pub pool: usize,
    /// Wait for outgoing calls with the lock held (the bug this runtime avoids): each such
    /// wait gives up after `give_up` instead of hanging.
    pub hold_lock_while_calling: bool,
    /// How long a servant waits for a callback before it gives up.
    pub give_up: Duration,
}

/// What the servants saw, in the order it happened (recorded under the lock).
#[derive(Debug, Default)]
pub struct Report {
    /// `(request index, started)` for each servant start and end, in order.
    pub log: Vec<(usize, bool)>,
    /// The reply each outgoing call got, by request index (`None`: it gave up).
    pub replies: HashMap<usize, Option<i64>>,
    /// Callbacks run.
    pub callbacks: usize,
    /// Replies picked up that a callback had delivered on another thread than the servant's.
    pub delivered_elsewhere: usize,
    /// The pool threads' lock figures, summed.
    pub figures: ThreadStats,
}

impl Report {
    /// Whether servants ran strictly one after another, in request order.
    pub fn is_serial(&self) -> bool {
        self.log
            .chunks(2)
            .enumerate()
            .all(|(i, pair)| pair == [(i, true), (i, false)])
    }
}

/// Work for the pool.
enum Job {
    Request(usize, Request),
    /// The reply to request `usize`'s outgoing call.
    Callback(usize, i64),
    Stop,
}

/// The servants' state, shared under the lock.
#[derive(Default)]
struct Servants {
    report: Report,
    /// Replies delivered by callbacks, and on which thread, waiting for their servant.
    arrived: HashMap<usize, (i64, std::thread::ThreadId)>,
}

/// The pool's queue: a mutex and a condition variable, no lock of ours.
///
/// Callbacks go first. At most `pool − 1` servants wait in outgoing calls at once, so a pool
/// thread is always left to run their callbacks (else every thread could be waiting for a
/// callback that no thread is free to run).
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    pool: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    /// Servants waiting in outgoing calls.
    calling: usize,
}

impl Queue {
    fn push(&self, job: Job) {
        self.state.lock().unwrap().jobs.push_back(job);
        self.ready.notify_all();
    }

    fn pop(&self) -> Job {
        let mut state = self.state.lock().unwrap();
        loop {
            let callback = state
                .jobs
                .iter()
                .position(|j| matches!(j, Job::Callback(..)));
            let may_call = state.calling + 1 < self.pool;
            let next = callback.or_else(|| {
                state
                    .jobs
                    .iter()
                    .position(|j| may_call || !matches!(j, Job::Request(_, Request::CallOut(_))))
            });
            if let Some(i) = next {
                let job = state.jobs.remove(i).expect("found just above");
                if matches!(job, Job::Request(_, Request::CallOut(_))) {
                    state.calling += 1;
                }
                return job;
            }
            state = self.ready.wait(state).unwrap();
        }
    }

    /// An outgoing call is over: its pool thread may take another.
    fn call_done(&self) {
        self.state.lock().unwrap().calling -= 1;
        self.ready.notify_all();
    }
}

/// Runs `requests` through a pool and returns what happened.
///
/// # Panics
///
/// If an outgoing call is asked of a pool of one thread: its callback could never run.
pub fn dispatch(config: Config, requests: &[Request]) -> Report {
    assert!(config.pool >= 1);
    assert!(
        config.pool >= 2 || !requests.iter().any(|r| matches!(r, Request::CallOut(_))),
        "outgoing calls need a second pool thread to run their callback"
    );
    let gil = Gil::new();
    let servants = GilCell::new(&gil, RefCell::new(Servants::default()));
    let queue = Queue {
        state: Mutex::new(QueueState {
            jobs: VecDeque::new(),
            calling: 0,
        }),
        ready: Condvar::new(),
        pool: config.pool,
    };
    // The remote peer: answers outgoing calls by queuing a callback. It never takes the lock.
    let (to_remote, remote_inbox) = mpsc::channel::<(usize, i64)>();
    // Each waiting servant's wake-up, by request index.
    let wakers: Mutex<HashMap<usize, mpsc::Sender<()>>> = Mutex::new(HashMap::new());
    let done = std::sync::atomic::AtomicUsize::new(0);

    std::thread::scope(|s| {
        s.spawn(|| {
            for (index, x) in remote_inbox {
                queue.push(Job::Callback(index, 2 * x));
            }
        });
        let mut pool = Vec::new();
        let (gil, servants, queue, wakers, done) = (&gil, &servants, &queue, &wakers, &done);
        for _ in 0..config.pool {
            let to_remote = to_remote.clone();
            pool.push(s.spawn(move || {
                let before = ThreadStats::current();
                loop {
                    let job = queue.pop();
                    let mut guard = gil.acquire();
                    match job {
                        Job::Stop => break,
                        Job::Callback(index, reply) => {
                            let mut sv = servants.get(&guard).borrow_mut();
                            sv.arrived
                                .insert(index, (reply, std::thread::current().id()));
                            sv.report.callbacks += 1;
                            drop(sv);
                            if let Some(wake) = wakers.lock().unwrap().remove(&index) {
                                let _ = wake.send(());
                            }
                            continue;
                        }
                        Job::Request(index, request) => {
                            servants
                                .get(&guard)
                                .borrow_mut()
                                .report
                                .log
                                .push((index, true));
                            match request {
                                Request::Compute(rounds) => {
                                    let mut x = index as u64;
                                    for _ in 0..rounds {
                                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                                        guard.checkpoint().expect("no interrupts here");
                                    }
                                    std::hint::black_box(x);
                                }
                                Request::Io(micros) => guard.allow_threads(|| {
                                    std::thread::sleep(Duration::from_micros(micros))
                                }),
                                Request::CallOut(x) => {
                                    let (wake, woken) = mpsc::channel();
                                    wakers.lock().unwrap().insert(index, wake);
                                    to_remote.send((index, x)).unwrap();
                                    let wait = || woken.recv_timeout(config.give_up).is_ok();
                                    if config.hold_lock_while_calling {
                                        wait(); // the callback needs the lock we hold
                                    } else {
                                        guard.allow_threads(wait);
                                    }
                                    // What the callback delivered, if it ran.
                                    let mut sv = servants.get(&guard).borrow_mut();
                                    let reply = sv.arrived.remove(&index);
                                    if reply.is_some_and(|(_, t)| t != std::thread::current().id())
                                    {
                                        sv.report.delivered_elsewhere += 1;
                                    }
                                    sv.report.replies.insert(index, reply.map(|(r, _)| r));
                                    drop(sv);
                                    queue.call_done();
                                }
                            }
                            servants
                                .get(&guard)
                                .borrow_mut()
                                .report
                                .log
                                .push((index, false));
                        }
                    }
                    drop(guard);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                ThreadStats::current() - before
            }));
        }
        for (index, &request) in requests.iter().enumerate() {
            queue.push(Job::Request(index, request));
        }
        // Every request finished (a callback that came after its servant gave up is not
        // waited for: it runs or not before the pool stops).
        while done.load(std::sync::atomic::Ordering::SeqCst) < requests.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..config.pool {
            queue.push(Job::Stop);
        }
        let mut figures = ThreadStats::default();
        for thread in pool {
            let t = thread.join().unwrap();
            figures.contended += t.contended;
            figures.wait_time += t.wait_time;
            figures.forced_drops += t.forced_drops;
        }
        drop(to_remote); // the remote peer's loop ends
        let guard = gil.acquire();
        let mut sv = servants.get(&guard).borrow_mut();
        sv.report.figures = figures;
        std::mem::take(&mut sv.report)
    })
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    let pool: usize = std::env::args()
        .nth(1)
        .map_or(4, |a| a.parse().expect("the pool size, a number"));
    let give_up = Duration::from_millis(200);
    let requests: Vec<Request> = (0..24)
        .map(|i| match i % 3 {
            0 => Request::Compute(20_000),
            1 => Request::Io(500),
            _ if pool >= 2 => Request::CallOut(i),
            _ => Request::Io(100),
        })
        .collect();
    let config = Config {
        pool,
        hold_lock_while_calling: false,
        give_up,
    };
    let report = dispatch(config, &requests);
    let answered = report.replies.values().filter(|r| r.is_some()).count();
    println!(
        "pool of {pool}: {} requests, {answered} of {} outgoing calls answered through a \
         callback on another pool thread; servants ran {}; the pool waited {} times for the \
         lock, {:?} in all",
        requests.len(),
        report.replies.len(),
        if report.is_serial() {
            "strictly one after another"
        } else {
            "interleaved"
        },
        report.figures.contended,
        report.figures.wait_time,
    );
    if pool >= 2 {
        let config = Config {
            pool,
            hold_lock_while_calling: true,
            give_up,
        };
        let report = dispatch(config, &[Request::CallOut(21)]);
        println!(
            "the same outgoing call with the lock held while waiting: {:?} (the callback could \
             not take the lock; it gave up after {give_up:?})",
            report.replies[&0]
        );
    }
}
