//! The conductor: starts the workers, hands each step to its thread in the program's order,
//! waits for it to finish (or to block, a moment), and at the end watches for hangs, drops the
//! tasks left, and runs the final checks.
//!
//! Steps start in the program's order, and a step that does not block finishes before the
//! next starts, so a run replays the same way; a step that blocks goes on in the background,
//! and its thread's later steps queue behind it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use gil_std::Gil;

use super::Options;
use super::callbacks::{self, BIT, message, panic_allowed};
use super::local;
use super::program::{Lock, Op};
use super::tasks;
use super::worker::Worker;
use super::world::{Finding, Oracle, World};

/// How long the conductor waits for a step before it starts the next one.
const SETTLE: Duration = if cfg!(miri) {
    Duration::from_millis(100)
} else {
    Duration::from_millis(5)
};

/// How long the workers may take to finish their queued steps before the tasks left are
/// dropped (a task handed the lock and never polled again holds it until then).
const WIND_DOWN: Duration = if cfg!(miri) {
    Duration::from_millis(500)
} else {
    Duration::from_millis(20)
};

/// How long a run whose hang a leak or a lock-order cycle excuses is given to finish anyway.
const EXCUSED_AFTER: Duration = if cfg!(miri) {
    Duration::from_secs(5)
} else {
    Duration::from_millis(50)
};

/// How long the final check waits for each lock.
const FINAL_WAIT: Duration = if cfg!(miri) {
    Duration::from_secs(10)
} else {
    Duration::from_secs(2)
};

enum Command {
    Step(usize, Op),
    Finish,
}

/// A worker's queue of commands.
#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Command>>,
    ready: Condvar,
}

impl Mailbox {
    fn send(&self, command: Command) {
        lock(&self.queue).push_back(command);
        self.ready.notify_one();
    }

    fn receive(&self) -> Command {
        let mut queue = lock(&self.queue);
        loop {
            if let Some(command) = queue.pop_front() {
                return command;
            }
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Where each worker is.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    sent: usize,
    done: usize,
    /// The step it runs, if any.
    current: Option<usize>,
    finished: bool,
}

#[derive(Default)]
struct Board {
    workers: Mutex<Vec<Progress>>,
    changed: Condvar,
}

impl Board {
    fn update(&self, worker: usize, f: impl FnOnce(&mut Progress)) {
        f(&mut lock(&self.workers)[worker]);
        self.changed.notify_all();
    }

    /// Waits until `until` holds of the workers, or `timeout` passes. Returns whether it holds.
    fn wait(&self, timeout: Duration, until: impl Fn(&[Progress]) -> bool) -> bool {
        let workers = lock(&self.workers);
        let (workers, _) = self
            .changed
            .wait_timeout_while(workers, timeout, |w| !until(w))
            .unwrap_or_else(PoisonError::into_inner);
        until(&workers)
    }

    fn snapshot(&self) -> Vec<Progress> {
        lock(&self.workers).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the world's program and returns what the oracles found.
pub(crate) fn conduct(world: &'static World, options: Options) -> Vec<Finding> {
    let program = &world.program;
    let threads = program.setup.threads;
    callbacks::install(world);
    let board = Arc::new(Board {
        workers: Mutex::new(vec![Progress::default(); threads]),
        changed: Condvar::new(),
    });
    let mailboxes: Vec<Arc<Mailbox>> = (0..threads).map(|_| Arc::default()).collect();
    for (index, mailbox) in mailboxes.iter().enumerate() {
        let (mailbox, board) = (Arc::clone(mailbox), Arc::clone(&board));
        thread::Builder::new()
            .name(format!("adversary-{index}"))
            .spawn(move || work(world, index, options, &mailbox, &board))
            .expect("a worker thread");
    }

    for (k, &(t, op)) in program.steps.iter().enumerate() {
        board.update(t, |p| p.sent += 1);
        mailboxes[t].send(Command::Step(k, op));
        board.wait(SETTLE, |w| w[t].done == w[t].sent);
    }
    for mailbox in &mailboxes {
        mailbox.send(Command::Finish);
    }
    board.wait(WIND_DOWN, all_finished);
    // A task left in line would be handed the lock and hold it, unpolled, for ever; one
    // handed it already holds it until dropped. Off this thread: dropping a future handed the
    // lock releases it, which runs hooks and wakers that may wait for the other lock. A worker
    // held up by such a task goes on once it is dropped, and its later steps may start tasks
    // of their own: those are dropped too, until every worker has finished.
    let janitor_board = Arc::clone(&board);
    let janitor = spawn_helper(world, local::JANITOR, "adversary-janitor", move || {
        loop {
            tasks::drop_all(world);
            // A waker that polled inline here, as a drop handed its lock on, may keep a guard
            // on this thread: it ends now, not with the thread, which the workers may wait for.
            drop_kept_here(world, local::JANITOR);
            let done = janitor_board.wait(Duration::from_millis(1), all_finished);
            if done || world.over.load(SeqCst) {
                tasks::drop_all(world);
                break;
            }
        }
    });
    let mut janitor_done = false;

    // The threads stuck in a step (ids from 1), the janitor among them if it is.
    let stuck = |workers: &[Progress], janitor_done: bool| -> Vec<usize> {
        let workers = workers.iter().enumerate().filter(|(_, p)| !p.finished);
        let mut stuck: Vec<usize> = workers.map(|(t, _)| t + 1).collect();
        if !janitor_done {
            stuck.push(local::JANITOR);
        }
        stuck
    };
    let start = Instant::now();
    let finished = loop {
        let workers_done = board.wait(Duration::from_millis(10), all_finished);
        janitor_done |= janitor.try_recv().is_ok();
        if workers_done && janitor_done {
            break true;
        }
        let waited = start.elapsed();
        let excused = world.hang_excused(&stuck(&board.snapshot(), janitor_done));
        if waited > options.limit || (excused && waited > EXCUSED_AFTER) {
            break false;
        }
    };
    if !finished && !world.hang_excused(&stuck(&board.snapshot(), janitor_done)) {
        world.record(
            Oracle::Hang,
            format!(
                "the run did not finish within {:?} of its last step, and no leak or lock-order \
                 cycle explains it; {}{}",
                options.limit,
                describe(&board.snapshot(), program),
                if janitor_done {
                    ""
                } else {
                    "; dropping the tasks left did not finish"
                },
            ),
        );
    }
    if finished {
        final_checks(world, local::CHECKER);
    }
    check_drop_requests(world);
    let findings = world.findings();
    world.over.store(true, SeqCst);
    if !finished {
        // The threads left behind: wake those waiting to take a lock (their steps panic, and
        // nobody looks any more), so that fewer of them stay asleep for ever.
        for lock in Lock::BOTH {
            drop(world.gil(lock).close());
        }
    }
    findings
}

/// Whether every worker has finished.
fn all_finished(workers: &[Progress]) -> bool {
    workers.iter().all(|p| p.finished)
}

/// A worker's life: the steps its mailbox brings, then its end.
fn work(world: &'static World, index: usize, options: Options, mailbox: &Mailbox, board: &Board) {
    let mut worker = Worker::start(world, index, options);
    while let Command::Step(k, op) = mailbox.receive() {
        if !world.over.load(SeqCst) {
            board.update(index, |p| p.current = Some(k));
            worker.step(k, op);
        }
        board.update(index, |p| {
            p.done += 1;
            p.current = None;
        });
    }
    worker.finish();
    board.update(index, |p| p.finished = true);
}

/// Runs `f` on a thread of its own, as thread `id` of the run; the receiver gets what it
/// returns.
fn spawn_helper<R: Send + 'static>(
    world: &'static World,
    id: usize,
    name: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> mpsc::Receiver<R> {
    let (done, finished) = mpsc::channel();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            local::set_me(id);
            let out = f();
            // Guards hooks and wakers kept on this thread end with it.
            drop_kept_here(world, id);
            let _ = done.send(out);
        })
        .expect("a helper thread");
    finished
}

/// Drops the guards hooks and wakers kept on this helper thread (`id`); leaks those a hook
/// keeps again at every drop.
fn drop_kept_here(world: &World, id: usize) {
    match catch_unwind(local::drain_kept) {
        Ok(left) => world.leak_kept(left),
        Err(payload) if !panic_allowed(&*payload, false) => world.record(
            Oracle::UnexpectedPanic,
            format!(
                "dropping kept guards on {}: {}",
                local::who(id),
                message(&*payload)
            ),
        ),
        Err(_) => {}
    }
}

/// Once every worker has finished: each lock that is not closed can be taken, and its
/// counter equals the increments made.
fn final_checks(world: &'static World, id: usize) {
    for lock in Lock::BOTH {
        let gil = world.gil(lock);
        // What the hooks and handlers would do is done; the check needs just the lock.
        gil.set_event_hook(None);
        let _ = gil.set_breaker_handler(BIT, None);
        // A closed lock cannot be taken; a leaked one may never be free again.
        if world.closed[lock.index()].load(SeqCst) || world.leaked(lock.into()) {
            continue;
        }
        let checked = spawn_helper(world, id, "adversary-check", move || {
            world.waits(id, 0, lock.into());
            // Taking the lock runs the pending calls left, which may panic as planned (each
            // runs once): try again then. A thread that leaked a hold and exited leaves its
            // token as the owner's, and a new thread may reuse the token: it is then refused
            // as one that holds the lock already (documented), and nothing can be checked.
            let leaked = world.hang_excused(&[id]);
            for _ in 0..Gil::PENDING_CALLS + 1 {
                match catch_unwind(AssertUnwindSafe(|| gil.try_acquire_for(FINAL_WAIT))) {
                    Ok(taken) => return taken.ok().map(|g| world.count_mismatch(lock, &g)),
                    Err(payload) if payload.is::<callbacks::Planned>() => {}
                    Err(payload) if panic_allowed(&*payload, leaked) => return None,
                    Err(payload) => {
                        world.record(
                            Oracle::UnexpectedPanic,
                            format!("taking lock {lock:?} at the end: {}", message(&*payload)),
                        );
                        return Some(None);
                    }
                }
            }
            None
        });
        match checked.recv_timeout(2 * FINAL_WAIT).ok() {
            Some(Some(None)) => {}
            Some(Some(Some((seen, made)))) => world.record(
                Oracle::LostUpdate,
                format!("the counter behind lock {lock:?} is {seen} after {made} increments"),
            ),
            // Its pending calls, run by the taking, may wait for something leaked too.
            _ if world.hang_excused(&[id]) => {}
            _ => world.record(
                Oracle::Hang,
                format!(
                    "lock {lock:?} could not be taken after every thread finished, and no leak \
                     explains it"
                ),
            ),
        }
    }
}

/// A lock with an hour's interval that nothing in the program asks to drop must never have
/// been asked.
fn check_drop_requests(world: &World) {
    for lock in Lock::BOTH {
        if world.program.may_request_drop_of(lock) {
            continue;
        }
        let stats = world.gil(lock).stats();
        let seen = world.drop_events[lock.index()].load(SeqCst);
        if stats.clock_requests != 0 || stats.forced_drops != 0 || seen != 0 {
            world.record(
                Oracle::StrayDropRequest,
                format!(
                    "lock {lock:?} (an hour's interval, nobody asking) had clock_requests {}, \
                     forced_drops {}, and its hook saw {seen} drop requests",
                    stats.clock_requests, stats.forced_drops
                ),
            );
        }
    }
}

fn describe(workers: &[Progress], program: &super::program::Program) -> String {
    let mut out = Vec::new();
    for (t, p) in workers.iter().enumerate() {
        let state = match (p.finished, p.current) {
            (true, _) => "finished".to_owned(),
            (false, Some(k)) => format!("stuck in step {k} ({:?})", program.steps[k].1),
            (false, None) => format!("between steps, {} of {} done", p.done, p.sent),
        };
        out.push(format!("thread {t}: {state}"));
    }
    out.join("; ")
}
