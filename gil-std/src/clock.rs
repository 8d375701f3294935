//! The clock: one thread per process that turns switch intervals into drop requests and
//! acquire deadlines into wake-ups.
//!
//! Each waiter sleeps on its own futex word, so a grant wakes exactly the thread it chose. A
//! waiter with a deadline sleeps with a timeout of its own on Linux
//! ([`park_until`](crate::sync)); `atomic-wait` has no timeouts, so elsewhere the
//! clock wakes it. The rest of what is timed is done here, by one thread that sleeps on a
//! condition variable until the earliest deadline (`Condvar::wait_timeout`, a futex wait with a timeout on Linux), or
//! without a timeout when nothing is armed. It never polls. It starts when a lock first has a
//! waiter, and does nothing while no lock is contended.
//!
//! Two kinds of timer:
//!
//! - **Preemption** — one per `Gil` with waiters. At its deadline: if nobody was handed the
//!   lock for a whole interval while somebody waited, set the drop request (unless it is still
//!   set, unanswered); the holder's next checkpoint hands over, and reports the request to the
//!   event hook. If somebody was, look again one interval after that switch. The clock thread
//!   runs no user code: no hook, no handler, nothing under its mutex but its own timers.
//! - **Wake** — one per waiter with a deadline (`try_acquire_for`), where waiters have no
//!   timeouts of their own (not Linux). At its deadline, wake the
//!   waiter's futex word, and again every millisecond until the waiter cancels the ticket (a
//!   wake that comes between the waiter's look at the time and its sleep is lost). The waiter
//!   checks the time itself and cancels. Waking needs only the word's address, which may dangle
//!   (`atomic_wait::wake_one` allows it), so nothing here depends on the waiter still being
//!   there.
//! - **Watch** — one per lock with futures waiting in line
//!   ([`Gil::acquire_async`](crate::Gil::acquire_async)): at its time, wake the one task that
//!   watches for the others, whose poll looks at its lock itself (`TaskTimer::look`). The
//!   clock keeps the lock's [`TaskWatch`], which lives apart from the lock, and nothing of the
//!   lock itself: a future can be leaked while it waits, and its lock then moved or dropped,
//!   so only the futures' own polls, which borrow the lock while they run, may act on it. A
//!   waker thread takes the waker out of the watch and wakes it, outside the clock's mutex.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, fence};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use gil_core::Breaker;

use crate::bits::SLICE_TIMER;
use crate::sync::{CLOCK, Condvar, Mutex, MutexGuard, Raw, now, timing};

/// A lock's preemption timer: its switch interval, when its slice began, and how many of its
/// threads wait timed. One per `Gil`, next to its `Raw`; the clock reads both while it lists
/// the lock.
#[derive(Debug)]
pub(crate) struct Timer {
    /// The switch interval in nanoseconds, within the range `Gil::with_switch_interval`
    /// checks. Read by the clock at each look.
    interval_nanos: AtomicU64,
    /// How many threads wait timed (counted in by [`Clock::arm`], out by [`Clock::leave`]);
    /// the clock lists the lock exactly while this is above zero.
    waiting: AtomicU32,
    /// When the lock was last handed to a waiting thread (nanoseconds on the clock's epoch),
    /// written by the thread that received it.
    last_switch: AtomicU64,
    /// When the thread whose arming listed the lock queued (nanoseconds on the clock's epoch):
    /// somebody has waited since then. Written under the clock's mutex, read by the holder
    /// timing its slice ([`Timer::slice_over`]).
    listed_since: AtomicU64,
    /// Slices begun: grants to a thread waiting its turn in line. Loans, and a lender getting
    /// the lock back, are not slices: the clock measures the interval by this count.
    slices: AtomicU32,
    /// The clock asked the holder to hand over (its backstop): the holder's checkpoint that
    /// answers reports it, since the clock thread runs no hook. Set by the clock, cleared by
    /// the holder.
    asked: AtomicBool,
    /// Drop requests the clock made.
    requests: AtomicU64,
    /// Tests only: the clock never asks this lock's holder to hand over, so that a test can
    /// show the holder ends its slice on its own.
    #[cfg(test)]
    pub(crate) quiet: AtomicBool,
}

impl Timer {
    /// A timer with a switch interval of `interval_nanos` (already checked).
    pub(crate) const fn new(interval_nanos: u64) -> Self {
        Self {
            interval_nanos: AtomicU64::new(interval_nanos),
            waiting: AtomicU32::new(0),
            last_switch: AtomicU64::new(0),
            listed_since: AtomicU64::new(0),
            slices: AtomicU32::new(0),
            asked: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            #[cfg(test)]
            quiet: AtomicBool::new(false),
        }
    }

    /// The switch interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos.load(Relaxed)
    }

    /// Sets the switch interval (already checked) and, if the lock is listed, takes it into
    /// account now, not at the old deadline.
    pub(crate) fn set_interval(&self, nanos: u64) {
        self.interval_nanos.store(nanos, Relaxed);
        if self.waiting.load(Relaxed) > 0 {
            clock().reschedule(self);
        }
    }

    /// How many threads wait timed.
    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(Relaxed)
    }

    /// A thread waiting its turn was handed the lock at `now` (nanoseconds on the clock's
    /// epoch): a new slice begins.
    pub(crate) fn begin_slice(&self, now: u64) {
        self.slices.fetch_add(1, Relaxed);
        self.last_switch.store(now, Relaxed);
    }

    /// Whether the holder's slice is over: somebody has waited in line a whole switch interval
    /// with nobody switching in — the rule the clock's looks go by, read by the holder itself
    /// (its own clock read is not late, where the clock thread's wake-up can be by
    /// milliseconds on a busy machine). Called by the holder while [`SLICE_TIMER`] is set.
    pub(crate) fn slice_over(&self) -> bool {
        // Pairs with the Release of `SLICE_TIMER`'s `set` in `sync_listing`: `listed_since` is
        // the listing's, or later.
        fence(Acquire);
        let since = self
            .last_switch
            .load(Relaxed)
            .max(self.listed_since.load(Relaxed));
        now_nanos() >= since.saturating_add(self.interval_nanos())
    }

    /// Whether the clock asked for the drop request being answered now; clears the mark.
    /// Relaxed: a report only; the request itself came with the breaker's Acquire.
    pub(crate) fn take_asked(&self) -> bool {
        self.asked.load(Relaxed) && self.asked.swap(false, Relaxed)
    }

    /// Forgets the clock's request: a switch answered it.
    pub(crate) fn forget_asked(&self) {
        self.asked.store(false, Relaxed);
    }

    /// Drop requests the clock made.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Slices begun so far (wrapping).
    pub(crate) fn slices(&self) -> u32 {
        self.slices.load(Relaxed)
    }

    /// When the lock was last handed to a waiting thread.
    pub(crate) fn last_switch(&self) -> Instant {
        instant_at(self.last_switch.load(Relaxed))
    }

    /// A look at `raw` at `now`, by the clock or by a waiting task, `seen` being the slices
    /// begun at the look before: if somebody has waited a whole interval since, with nobody
    /// handed the lock (no slice begun, and threads still wait), asks the holder to hand over.
    /// Returns when to look next, and the slices begun by now.
    fn look(&self, raw: &Raw, seen: u32, now: Instant) -> (Instant, u32) {
        let slices = self.slices();
        let interval = self.interval();
        let next = if slices == seen
            && raw.has_waiters()
            && !self.quiet()
            && !cfg!(bite = "the-clock-never-asks")
        {
            self.backstop(raw);
            now + interval.max(REASK_AFTER)
        } else {
            look_at(self.last_switch(), interval).max(now + interval / 8)
        };
        (next, slices)
    }

    /// Asks the holder of `raw` to hand over, for a waiter that has waited a whole interval
    /// with nobody handed the lock (the clock's backstop, or a waiting task's own): unless a
    /// request is still unanswered, which the holder has not reached a checkpoint since, and
    /// asking again would only spin the asker. The holder that answers reports it.
    fn backstop(&self, raw: &Raw) {
        // Relaxed: a hint; a request the holder takes meanwhile is made again at the next look.
        if raw.breaker().pending() & Breaker::DROP_REQUEST == 0 {
            // Before the request: the holder that takes it reports it.
            self.asked.store(true, Relaxed);
            raw.request_drop();
            self.requests.fetch_add(1, Relaxed);
        }
    }

    /// Whether a test silenced the clock's drop requests (never outside tests).
    fn quiet(&self) -> bool {
        #[cfg(test)]
        return self.quiet.load(Relaxed);
        #[cfg(not(test))]
        false
    }
}

pub(crate) struct Clock {
    timers: Mutex<Timers>,
    changed: Condvar,
}

struct Timers {
    preempt: Vec<Preempt>,
    /// The wakes, by ticket: each one's time and whom it wakes.
    wakes: HashMap<u64, Wake>,
    /// The wakes' tickets in the order they are due (by time, then ticket): a wake is added,
    /// cancelled and found due in logarithmic time, however many tasks wait.
    due: BTreeSet<(Instant, u64)>,
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    next_wake_id: u64,
}

/// A lock with waiters, and when to look at it next.
struct Preempt {
    /// The lock and its timer, borrowed by some thread for as long as they are listed: a lock
    /// is listed exactly while its count of waiting threads (`Timer::waiting`) is above zero,
    /// and each of those threads borrows it. The thread that brings the count to zero unlists
    /// it under the mutex before its own borrow ends. So the clock never looks at a lock that
    /// could be dropped or moved.
    raw: *const Raw,
    timer: *const Timer,
    at: Instant,
    /// `Timer::slices` when last looked at.
    slices: u32,
}

/// While [`SLICE_TIMER`] is set, the holder reads the clock at every `LOOK_EVERY`th
/// checkpoint, so its slice ends within that many checkpoints of its deadline. A clock read
/// costs far more than a checkpoint, about as much as the lab's typical work between two
/// (docs/benchmarks.md, "The constants"): read at every checkpoint it would cost more than the
/// work. Under loom, at every checkpoint: a model makes a few.
pub(crate) const LOOK_EVERY: u32 = if cfg!(loom) { 1 } else { 256 };

/// How long after a deadline's wake-up the clock wakes the waiter again, in case the first was
/// lost; see `Timers::fire`.
const WAKE_RETRY: Duration = Duration::from_millis(1);

/// How often, at most, the clock looks again at a holder that has not answered its drop
/// request: with a short switch interval, looking every interval would keep this thread busy
/// while the holder runs on without a checkpoint.
const REASK_AFTER: Duration = Duration::from_millis(1);

struct Wake {
    at: Instant,
    whom: Whom,
}

/// Who a [`Wake`] wakes.
enum Whom {
    /// A thread sleeping on this futex word. Only ever passed to `wake_one`, never
    /// dereferenced.
    Word(*const core::sync::atomic::AtomicU32),
    /// A lock's waiting tasks: the one that watches is woken, to look at the lock.
    Watch(Arc<TaskWatch>),
}

// SAFETY: the raw pointers are only used under the mutex: `raw` and `timer` are dereferenced
// only while listed, and a listed lock is borrowed by a waiting thread (see `Preempt::raw`);
// a `Whom::Word` is never dereferenced. Wakers are `Send`.
unsafe impl Send for Timers {}

/// The instant all `Gil` timestamps count from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now, as nanoseconds since [`epoch`]: what `Gil` stores in an `AtomicU64`.
pub(crate) fn now_nanos() -> u64 {
    nanos_at(now())
}

/// Nanoseconds since [`epoch`], plus one: 0 is left free to mean "never".
pub(crate) fn nanos_at(at: Instant) -> u64 {
    let since = at.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
}

fn instant_at(nanos: u64) -> Instant {
    epoch() + Duration::from_nanos(nanos.saturating_sub(1))
}

#[cfg(not(loom))]
static CLOCK_THREAD: OnceLock<Clock> = OnceLock::new();

// Under loom, one clock per execution (its mutex is loom's), and no thread: a model looks with
// `model_time::clock_look`.
#[cfg(loom)]
loom::lazy_static! {
    static ref MODEL_CLOCK: Clock = Clock::new();
}

/// Whether the clock lists `timer`'s lock (for a debug check when a `Gil` is dropped).
/// Compares addresses only: a listed lock is not read here.
pub(crate) fn is_listed(timer: &Timer) -> bool {
    #[cfg(not(loom))]
    let clock = CLOCK_THREAD.get();
    #[cfg(loom)]
    let clock = timing().then(clock);
    clock.is_some_and(|clock| {
        let timers = clock.lock();
        timers.preempt.iter().any(|p| std::ptr::eq(p.timer, timer))
    })
}

/// The process's clock, started on first use.
pub(crate) fn clock() -> &'static Clock {
    #[cfg(loom)]
    return &MODEL_CLOCK;
    #[cfg(not(loom))]
    CLOCK_THREAD.get_or_init(|| {
        if CLOCK {
            std::thread::Builder::new()
                .name("gil-clock".into())
                .spawn(|| clock().run())
                .expect("gil: could not start the clock thread");
        }
        Clock::new()
    })
}

impl Clock {
    fn new() -> Self {
        Clock {
            timers: Mutex::new(Timers {
                preempt: Vec::new(),
                wakes: HashMap::new(),
                due: BTreeSet::new(),
                next_wake_id: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// One look at what is due now, by the calling thread: a loom model's stand-in for the
    /// clock thread's wake-up (`model_time::clock_look`). Tasks' watches are not kept under
    /// loom, so none is due.
    #[cfg(loom)]
    pub(crate) fn look_now(&self) {
        let watches = self.lock().fire(now());
        debug_assert!(watches.is_empty(), "no task watch under loom");
    }

    fn lock(&self) -> MutexGuard<'_, Timers> {
        // Nothing that can panic runs under this mutex; recover from poison all the same.
        self.timers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    #[cfg_attr(loom, allow(dead_code))]
    fn run(&self) -> ! {
        let mut timers = self.lock();
        loop {
            let now = now();
            let watches = timers.fire(now);
            if !watches.is_empty() {
                // A task's waker is the executor's code, which the clock thread runs none of:
                // a waker thread takes one out of each watch and wakes it, once this mutex is
                // released.
                drop(timers);
                for (watch, ticket) in watches {
                    hand_off_job(Job::Watch(watch, ticket));
                }
                timers = self.lock();
                continue;
            }
            timers = match timers.next_deadline() {
                None => self.changed.wait(timers).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let slept = self.changed.wait_timeout(timers, at - now);
                    slept.unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// Called by a thread that queued on `raw` at `queued`, before it waits: counts it in, and
    /// lists the lock if it is the first. Nothing where the clock does not run (the facade's
    /// `CLOCK`).
    pub(crate) fn arm(&self, raw: &Raw, timer: &Timer, queued: Instant) {
        // Relaxed: the count decides only who takes the mutex; the decision itself is made
        // under the mutex, which orders every thread's count change before the next holder's
        // look (see `sync_listing`).
        if timing() && timer.waiting.fetch_add(1, Relaxed) == 0 {
            self.sync_listing(raw, timer, queued);
        }
    }

    /// Called by a thread that has left `raw`'s queue (granted, timed out or closed), while it
    /// still borrows the lock: counts it out, and unlists the lock if it was the last.
    pub(crate) fn leave(&self, raw: &Raw, timer: &Timer) {
        // Relaxed: as in `arm`.
        if timing() && timer.waiting.fetch_sub(1, Relaxed) == 1 {
            self.sync_listing(raw, timer, now());
        }
    }

    /// Under the mutex, makes the listing of the lock agree with its count of waiting threads.
    /// A lock listed now has had a waiter since `queued` (the caller's own queueing, which may
    /// be well before it runs again to get here: the wake-up of the thread it handed the lock
    /// to can preempt it for milliseconds).
    ///
    /// Only threads that changed the count between 0 and 1 come here, and the last of them to
    /// take the mutex sees every count change made by the ones before (they released the
    /// mutex after their change) and its own; later changes are followed by a visit of their
    /// own. So once every waiting thread has left, the lock is unlisted, by a thread that still
    /// borrowed it.
    ///
    /// This is why the listing counts threads instead of looking at the queue: a granted thread
    /// can see its grant before the granter clears `QUEUED`, so "nobody queued" seen by the
    /// last leaver is not reliable, and a lock left listed could be read by the clock after it
    /// is dropped (Miri found exactly that).
    fn sync_listing(&self, raw: &Raw, timer: &Timer, queued: Instant) {
        let mut timers = self.lock();
        let at = timers
            .preempt
            .iter()
            .position(|p| std::ptr::eq(p.timer, timer));
        match (timer.waiting.load(Relaxed) > 0, at) {
            (true, None) => {
                let queued = nanos_at(queued);
                let since = queued.max(timer.last_switch.load(Relaxed));
                timer.listed_since.store(queued, Relaxed);
                // Release (in `set`), after the store above: a holder that sees the bit and
                // looks at the clock reads `listed_since` after an Acquire fence (`slice_over`).
                raw.breaker().set(SLICE_TIMER);
                timers.preempt.push(Preempt {
                    raw,
                    timer,
                    at: look_at(instant_at(since), timer.interval()),
                    slices: timer.slices.load(Relaxed),
                });
                self.changed.notify_one();
            }
            (false, Some(i)) => {
                raw.breaker().take(SLICE_TIMER);
                timers.preempt.swap_remove(i);
            }
            _ => {}
        }
    }

    /// The interval of `timer` changed: if it is listed, take the new interval into account
    /// now, not at the old deadline.
    fn reschedule(&self, timer: &Timer) {
        let mut timers = self.lock();
        let interval = timer.interval();
        if let Some(p) = timers
            .preempt
            .iter_mut()
            .find(|p| std::ptr::eq(p.timer, timer))
        {
            // Somebody has waited since the listing or the last switch, whichever is later: the
            // rule the looks go by (`Timer::slice_over`).
            let since = timer
                .last_switch
                .load(Relaxed)
                .max(timer.listed_since.load(Relaxed));
            p.at = p.at.min(look_at(instant_at(since), interval).max(now()));
            self.changed.notify_one();
        }
    }

    /// Wakes the futex `word` at `at`. Returns a ticket for [`cancel_wake`](Clock::cancel_wake).
    /// For waiters that cannot sleep with a timeout of their own (not on Linux).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(crate) fn wake_at(&self, at: Instant, word: *const core::sync::atomic::AtomicU32) -> u64 {
        self.add_wake(at, Whom::Word(word))
    }

    /// Wakes the task that watches `watch` at `at`. Returns a ticket for
    /// [`cancel_wake`](Clock::cancel_wake).
    fn wake_watch_at(&self, at: Instant, watch: Arc<TaskWatch>) -> u64 {
        self.add_wake(at, Whom::Watch(watch))
    }

    fn add_wake(&self, at: Instant, whom: Whom) -> u64 {
        let mut timers = self.lock();
        let id = timers.next_wake_id;
        timers.next_wake_id += 1;
        // The clock sleeps until its next deadline: tell it only of an earlier one.
        let earlier = timers.next_deadline().is_none_or(|next| at < next);
        timers.wakes.insert(id, Wake { at, whom });
        timers.due.insert((at, id));
        if earlier {
            self.changed.notify_one();
        }
        id
    }

    /// Drops a wake that is no longer needed (the waiter is done). A wake that already fired
    /// is gone: nothing to do. What it kept is dropped after the mutex is released.
    pub(crate) fn cancel_wake(&self, id: u64) {
        let cancelled = {
            let mut timers = self.lock();
            let wake = timers.wakes.remove(&id);
            if let Some(wake) = &wake {
                timers.due.remove(&(wake.at, id));
            }
            wake
        };
        drop(cancelled);
    }
}

/// The threads that run tasks' wakers for the lock: the wakers of tasks whose watch's look
/// the clock fires, and those handed over by a thread that runs no code of the user's at the moment
/// (`owner::is_quiet`). Apart from the clock, so that a waker holds up no timer; and as many as
/// are busy at once, plus one while wakers are due, so that a waker that blocks (one that
/// polls its task inline and waits for a lock) holds up no other: a task's grant could be queued behind it,
/// and the waker wait for that very grant. Each thread, once started, lives as long as the
/// process, asleep while there is nothing to wake.
struct Wakers {
    queue: std::sync::Mutex<WakerQueue>,
    ready: std::sync::Condvar,
}

struct WakerQueue {
    /// What to run, in the order it came.
    due: std::collections::VecDeque<Job>,
    /// Threads asleep for want of a waker to run.
    idle: usize,
}

static WAKERS: Wakers = Wakers {
    queue: std::sync::Mutex::new(WakerQueue {
        due: std::collections::VecDeque::new(),
        idle: 0,
    }),
    ready: std::sync::Condvar::new(),
};

/// A waker thread's job.
enum Job {
    /// Wake this waker.
    Wake(Waker),
    /// Only drop it.
    Drop(Waker),
    /// Wake a task of this watch: the clock's wake-up of this ticket is due.
    Watch(Arc<TaskWatch>, u64),
}

/// Wakes `waker` (or, `wake` false, only drops it) on a waker thread, soon.
pub(crate) fn hand_off(waker: Waker, wake: bool) {
    hand_off_job(if wake {
        Job::Wake(waker)
    } else {
        Job::Drop(waker)
    });
}

/// Has a waker thread run `job`, soon; starts one if none is idle to take it.
fn hand_off_job(job: Job) {
    let mut queue = WAKERS.queue.lock().unwrap_or_else(|p| p.into_inner());
    queue.due.push_back(job);
    if wants_thread(&queue) {
        start_waker_thread(queue);
    } else {
        drop(queue);
        WAKERS.ready.notify_one();
    }
}

/// Whether a waker thread must start: wakers are due and no thread is idle to take them.
fn wants_thread(queue: &WakerQueue) -> bool {
    if cfg!(bite = "a-waker-thread-per-waker") {
        return queue.due.len() > queue.idle;
    }
    !queue.due.is_empty() && queue.idle == 0
}

/// Starts a waker thread, counted idle from now: it takes a waker as soon as it runs.
fn start_waker_thread(mut queue: std::sync::MutexGuard<'_, WakerQueue>) {
    queue.idle += 1;
    drop(queue);
    std::thread::Builder::new()
        .name("gil-waker".into())
        .spawn(run_wakers)
        .expect("gil: could not start a waker thread");
}

/// A waker thread: runs wakers one at a time, outside the queue's mutex, asleep between.
fn run_wakers() {
    loop {
        let job = {
            let mut queue = WAKERS.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(next) = queue.due.pop_front() {
                    queue.idle -= 1;
                    // Busy from here: if wakers are left and no thread is idle to take them,
                    // one more, so that this waker, should it block, holds up no other.
                    if wants_thread(&queue) {
                        start_waker_thread(queue);
                    }
                    break next;
                }
                queue = WAKERS.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        match job {
            Job::Wake(waker) => run_waker(waker, true),
            Job::Drop(waker) => run_waker(waker, false),
            Job::Watch(watch, ticket) => {
                if let Some(waker) = watch.due(ticket) {
                    run_waker(waker, true);
                }
                // The last reference, if the lock is gone (a future leaked while it waited):
                // the wakers it keeps are the executor's code.
                executors_code(|| drop(watch));
            }
        }
        WAKERS.queue.lock().unwrap_or_else(|p| p.into_inner()).idle += 1;
    }
}

/// Wakes a task (or, `wake` false, drops its waker). The waker is the executor's code: a panic
/// in it is reported and goes no further, so that the clock, or the lock's bookkeeping that
/// drops it, goes on.
fn run_waker(waker: Waker, wake: bool) {
    executors_code(|| {
        if wake {
            waker.wake();
        } else {
            drop(waker);
        }
    });
}

/// Runs `f`, the executor's code (a waker's wake or drop): a panic is reported and goes no
/// further.
fn executors_code(f: impl FnOnce()) {
    if crate::sync::caught(f).is_err() {
        crate::sync::report(format_args!(
            "gil: a task's waker panicked; the lock goes on without it"
        ));
    }
}

/// When the clock looks at a lock whose slice began at `since`: a quarter of an interval after
/// the slice is over. The holder ends its slice itself at its checkpoints ([`SLICE_TIMER`]), on
/// time; the clock is the backstop for a holder whose checkpoints are too far apart for that
/// count, and looking later keeps its wake-up away from the moment of the handoff.
fn look_at(since: Instant, interval: Duration) -> Instant {
    since + interval + interval / 4
}

impl Timers {
    fn next_deadline(&self) -> Option<Instant> {
        let preempt = self.preempt.iter().map(|p| p.at);
        preempt.chain(self.due.first().map(|&(at, _)| at)).min()
    }

    /// Fires what is due at `now`. Returns the task watches whose time came, taken out with
    /// their tickets, for the caller to hand to a waker thread once it has released the mutex.
    fn fire(&mut self, now: Instant) -> Vec<(Arc<TaskWatch>, u64)> {
        let mut watches = Vec::new();
        while let Some(&(at, id)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            let Some(wake) = self.wakes.get_mut(&id) else {
                continue;
            };
            match wake.whom {
                Whom::Word(word) => {
                    atomic_wait::wake_one(word);
                    // A futex wake is lost if the waiter had checked the time but not yet gone
                    // to sleep (its word did not change), so wake again until the waiter
                    // cancels the ticket, which it does as soon as it sees its deadline passed.
                    wake.at = now + WAKE_RETRY;
                    self.due.insert((wake.at, id));
                }
                Whom::Watch(_) => {
                    if let Some(Wake {
                        whom: Whom::Watch(watch),
                        ..
                    }) = self.wakes.remove(&id)
                    {
                        watches.push((watch, id));
                    }
                }
            }
        }
        self.preempt.retain_mut(|p| {
            if p.at > now {
                return true;
            }
            // SAFETY: listed, so borrowed by some thread (see `Preempt::raw`).
            let (raw, timer) = unsafe { (&*p.raw, &*p.timer) };
            (p.at, p.slices) = timer.look(raw, p.slices, now);
            true
        });
        watches
    }
}

/// The preemption timer of a lock's waiting tasks: the waker of the one task that times the
/// holder's slice for all of them (the watcher), and when it should look at the lock next. One
/// per lock, made with its services, and apart from the lock (an `Arc`, which the clock shares
/// while a look is due): a future can be leaked while it waits, and its lock then moved or
/// dropped, so the clock keeps nothing of the lock, and only a task's own poll, which borrows
/// the lock while it runs, acts on it (`TaskTimer::look`).
///
/// One task watches, not each: a look is by the rule the clock goes by for threads (somebody
/// waited a whole interval with nobody handed the lock), which one waiting task can apply for
/// all of them. A task whose poll finds a watcher stays out, at the cost of one load (a task
/// that reads the flag clear while a watcher has just come takes this mutex to find out). A task that leaves the line (granted, closed out, or
/// dropped) with nobody watching, the watcher itself included, wakes the last task in line
/// (`RawGil::wake_last_polled`), whose next poll finds no watcher and becomes it: the last in
/// line stays longest, so the watch seldom changes hands; a future left in line and never
/// polled again (leaked) takes the watch with it if it is the one woken, but the line ends
/// there anyway: granted, it keeps the lock. A close vacates the watch, and only a task in line
/// becomes the watcher, so that one leaked and closed out of line does not keep it from the
/// tasks that stay.
#[derive(Debug, Default)]
pub(crate) struct TaskWatch {
    /// Whether a task watches: set and cleared under the mutex, read without it by a task's
    /// poll and leave, as a hint (see `TaskTimer::look`).
    watched: AtomicBool,
    state: std::sync::Mutex<Watched>,
}

#[derive(Debug, Default)]
struct Watched {
    /// The watcher's number, if a task watches (its `TaskTimer::watching`).
    watcher: Option<u64>,
    /// Numbers given out so far.
    numbered: u64,
    /// The watcher's waker; `None` once the clock's wake-up took it, until the watcher's next
    /// poll puts it back.
    waker: Option<Waker>,
    /// When the watcher should look next, and the slices begun when that was set. Kept when
    /// the watch changes hands: the next watcher looks when its predecessor would have.
    next: Option<(Instant, u32)>,
    /// The clock's wake-up at `next`, if one is set.
    ticket: Option<u64>,
}

impl TaskWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        // Nothing that can panic runs under this mutex; recover from poison all the same.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The clock's wake-up `ticket` is due: takes the watcher's waker out, to be woken (its
    /// poll looks at the lock, puts its waker back and sets the next look). `None` if no task
    /// watches, or its waker was taken by an earlier wake-up, its poll still to come.
    fn due(&self, ticket: u64) -> Option<Waker> {
        let mut watched = self.lock();
        if watched.ticket == Some(ticket) {
            watched.ticket = None;
        }
        if cfg!(bite = "a-task-watch-wakes-nobody") {
            return None;
        }
        watched.waker.take()
    }

    /// The lock `raw` is closed, with this thread borrowing it: nobody watches any more, and
    /// the last task still in line (one relocking) is woken to watch. A watcher leaked in line
    /// was closed out of it, and would otherwise keep the watch for ever.
    pub(crate) fn vacate(&self, raw: &Raw) {
        let waker = {
            let mut watched = self.lock();
            watched.watcher = None;
            // Relaxed: a hint; the wake below publishes it (see `TaskTimer::look`).
            self.watched.store(false, Relaxed);
            watched.waker.take()
        };
        if let Some(waker) = waker {
            run_waker(waker, false);
        }
        self.hand_on(raw);
    }

    /// Nobody watches: wakes the last task in line to watch, after the caller cleared
    /// `watched`; with nobody in line, cancels the clock's wake-up.
    fn hand_on(&self, raw: &Raw) {
        // Quietly: this thread may hold the lock (a watcher granted it), and a waker that polls
        // inline would find it held.
        if crate::owner::quietly(|| raw.wake_last_polled()) {
            return;
        }
        let ticket = {
            let mut watched = self.lock();
            if watched.watcher.is_some() {
                // A task queued since, and watches.
                return;
            }
            watched.next = None;
            watched.ticket.take()
        };
        if let Some(ticket) = ticket {
            clock().cancel_wake(ticket);
        }
    }
}

/// Puts a clone of `waker` in `watch` as the watcher's, if `may` (run under the mutex) says
/// so; returns the mutex, held. The clone, and the waker it replaces or the clone unused, are
/// the executor's code: made before the mutex, and left in `later` to drop after it.
fn put_waker<'w>(
    watch: &'w TaskWatch,
    waker: &Waker,
    later: &mut DropLater,
    may: impl FnOnce(&mut Watched) -> bool,
) -> Option<std::sync::MutexGuard<'w, Watched>> {
    let clone = waker.clone();
    let mut watched = watch.lock();
    if !may(&mut watched) {
        later.0 = Some(clone);
        return None;
    }
    later.0 = watched.waker.replace(clone);
    Some(watched)
}

/// A waker dropped when this is, as the executor's code (`run_waker`): made before the watch's
/// mutex is taken, so that it is dropped after the mutex is released.
#[derive(Default)]
struct DropLater(Option<Waker>);

impl Drop for DropLater {
    fn drop(&mut self) {
        if let Some(waker) = self.0.take() {
            run_waker(waker, false);
        }
    }
}

/// A waiting task's part in its lock's [`TaskWatch`].
#[derive(Debug, Default)]
pub(crate) struct TaskTimer {
    /// This task's number as the watcher, if it became it (a close may have vacated the watch
    /// since).
    watching: Option<u64>,
}

impl TaskTimer {
    /// A poll of the waiting task, with the lock borrowed, `queued` being when the task queued
    /// (nanoseconds on the clock's epoch), and `in_line` whether it still is. A task in line
    /// finding no watcher becomes it, putting its
    /// waker in the lock's watch; the watcher puts its waker back after the clock took it, or
    /// when it changed. Then, unless the clock is to wake the watcher at the next look already:
    /// if a whole switch interval has passed since the task queued (or since the last switch)
    /// with nobody handed the lock, asks the holder to hand over; and has the clock wake the
    /// watcher at the next look.
    pub(crate) fn look(
        &mut self,
        raw: &Raw,
        timer: &Timer,
        watch: &Arc<TaskWatch>,
        queued: u64,
        waker: &Waker,
        in_line: impl Fn() -> bool,
    ) {
        if !CLOCK {
            return;
        }
        // Before any guard of the watch's mutex: dropped after them.
        let mut later = DropLater::default();
        let mut watching = None;
        if let Some(me) = self.watching {
            let watched = watch.lock();
            if watched.watcher != Some(me) {
                // A close vacated the watch: this task may watch again, as any.
                self.watching = None;
            } else if watched.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                watching = Some(watched);
            } else {
                drop(watched);
                watching = put_waker(watch, waker, &mut later, |watched| {
                    watched.watcher == Some(me)
                });
                if watching.is_none() {
                    // Vacated meanwhile.
                    self.watching = None;
                }
            }
        }
        let mut watched = match watching {
            Some(watched) => watched,
            None => {
                // Relaxed: a hint. A task that reads a watcher that has just left is in line
                // when the leaver, after clearing this, wakes the last task in line (whose
                // poll then reads it clear: the core orders the two), or a task that leaves
                // after it does.
                if watch.watched.load(Relaxed) {
                    return;
                }
                let mut me = None;
                let watched = put_waker(watch, waker, &mut later, |watched| {
                    // Still in line, or it would keep the watch from those who are: a close
                    // that took it out before this mutex did vacated the watch first, and
                    // this look, coming after, sees the close.
                    if watched.watcher.is_some()
                        || (!in_line() && !cfg!(bite = "a-task-out-of-line-watches"))
                    {
                        return false;
                    }
                    watched.numbered += 1;
                    me = Some(watched.numbered);
                    watched.watcher = me;
                    // Relaxed: a hint; set under the mutex, which decides.
                    watch.watched.store(true, Relaxed);
                    true
                });
                let Some(watched) = watched else {
                    return;
                };
                self.watching = me;
                watched
            }
        };
        if watched.next.is_some() && watched.ticket.is_some() {
            // The clock wakes the watcher at the next look: nothing to do before then.
            return;
        }
        let now = now();
        let (next, slices) = match watched.next {
            None => {
                // Relaxed: a time stamp, as the clock's own looks read it.
                let since = queued.max(timer.last_switch.load(Relaxed));
                (instant_at(since) + timer.interval(), timer.slices())
            }
            Some((at, _)) if at > now => (at, timer.slices()),
            Some((_, seen)) => timer.look(raw, seen, now),
        };
        watched.next = Some((next, slices));
        let old = watched.ticket.take();
        // The clock's mutex is taken under this one, never the other way round.
        let clock = clock();
        if let Some(old) = old {
            clock.cancel_wake(old);
        }
        watched.ticket = Some(clock.wake_watch_at(next, watch.clone()));
    }

    /// The task is done waiting, out of line, with the lock borrowed. The watcher leaves the
    /// watch. If nobody watches now, the watch is handed on (`TaskWatch::hand_on`): this task
    /// may be the one woken to take it over, leaving without a poll that would have (dropped,
    /// closed out, or handed the lock meanwhile).
    pub(crate) fn leave(&mut self, raw: &Raw, watch: &TaskWatch) {
        let watched_here = self.watching.is_some();
        if let Some(me) = self.watching.take() {
            let waker = {
                let mut watched = watch.lock();
                if watched.watcher == Some(me) {
                    watched.watcher = None;
                    // Relaxed: a hint; the wake in `hand_on` publishes it.
                    watch.watched.store(false, Relaxed);
                    watched.waker.take()
                } else {
                    None
                }
            };
            if let Some(waker) = waker {
                run_waker(waker, false);
            }
        }
        // Relaxed: a hint, as in `look`. A task woken to watch reads it clear: the leaver that
        // woke it cleared it first, and the core's queue lock, which both took (the wake, and
        // this task's leaving the line), orders the two.
        if watch.watched.load(Relaxed) || cfg!(bite = "a-watcher-leaves-nobody-in-its-place") {
            return;
        }
        if !watched_here && cfg!(bite = "only-the-watcher-hands-the-watch-on") {
            return;
        }
        watch.hand_on(raw);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{LOOK_EVERY, clock};
    use crate::Gil;
    use crate::bits::SLICE_TIMER;

    fn give_up() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Spawns a thread that takes `gil`, sets `got_in` and lets go.
    fn spawn_waiter<'scope>(
        s: &'scope thread::Scope<'scope, '_>,
        gil: &'scope Gil,
        got_in: &'scope AtomicBool,
    ) {
        s.spawn(move || {
            let _g = gil.acquire();
            got_in.store(true, SeqCst);
        });
    }

    /// The holder's loop: `step` until the waiter got in, failing after a minute.
    fn hold_until_in(waiter_in: &AtomicBool, mut step: impl FnMut()) {
        let give_up = give_up();
        while !waiter_in.load(SeqCst) {
            step();
            assert!(Instant::now() < give_up, "the holder never ended its slice");
        }
    }

    /// Spins until a thread is queued on `gil` and the clock lists it, failing after a minute.
    fn wait_until_timed(gil: &Gil) {
        let give_up = give_up();
        while !gil.has_waiters() || gil.raw.breaker().pending() & SLICE_TIMER == 0 {
            assert!(Instant::now() < give_up, "no waiter ever armed the clock");
            thread::yield_now();
        }
    }

    /// A waiter with a deadline sleeps with a timeout of its own: it does not wait for the
    /// clock thread's wake-up, which comes late by that thread's own wake-up.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_timed_waiter_wakes_itself() {
        let gil = Gil::new();
        let _held = gil.acquire();
        thread::scope(|s| {
            let waiter = s.spawn(|| gil.try_acquire_for(Duration::from_millis(30)).map(drop));
            while !waiter.is_finished() {
                let wakes = clock().lock().wakes.len();
                assert_eq!(wakes, 0, "the clock was asked to wake a timed waiter");
                thread::yield_now();
            }
            assert_eq!(waiter.join().unwrap(), Err(crate::AcquireError::Timeout));
        });
    }

    #[test]
    fn the_holder_ends_its_own_slice_with_the_clock_silent() {
        let gil = Gil::with_switch_interval(Duration::from_millis(1));
        gil.timer.quiet.store(true, SeqCst);
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let mut g = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            let before = crate::ThreadStats::current();
            hold_until_in(&waiter_in, || g.checkpoint().unwrap());
            let mine = crate::ThreadStats::current() - before;
            assert_eq!(mine.forced_drops, 1, "the thread's count");
        });
        assert_eq!(gil.stats().forced_drops, 1);
        assert_eq!(gil.stats().clock_requests, 0, "the clock was silent");
    }

    /// Nested `ensure` guards made anew for every checkpoint (as a callback makes them) count
    /// towards the look at the clock per hold: the holder still ends its slice.
    #[test]
    fn checkpoints_of_fresh_ensure_guards_end_the_slice() {
        let gil = Gil::with_switch_interval(Duration::from_millis(1));
        gil.timer.quiet.store(true, SeqCst);
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let _outer = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            hold_until_in(&waiter_in, || gil.ensure().checkpoint().unwrap());
        });
        assert_eq!(gil.stats().forced_drops, 1);
    }

    /// A holder that only asks `wants_checkpoint`, and checkpoints when told to, ends its
    /// slice: the asking looks at the clock, and asks for the drop itself.
    #[test]
    fn a_holder_that_asks_wants_checkpoint_ends_its_slice() {
        let gil = Gil::with_switch_interval(Duration::from_millis(1));
        gil.timer.quiet.store(true, SeqCst);
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let mut g = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            hold_until_in(&waiter_in, || {
                if gil.wants_checkpoint() {
                    g.checkpoint().unwrap();
                }
            });
        });
        assert_eq!(gil.stats().forced_drops, 1);
    }

    /// While threads wait, the holder looks at the clock at its `LOOK_EVERY`th checkpoint
    /// only: a slice already over ends there, not at a checkpoint before.
    #[test]
    fn the_holder_looks_at_the_clock_every_look_everyth_checkpoint() {
        let gil = Gil::with_switch_interval(Gil::MIN_SWITCH_INTERVAL);
        gil.timer.quiet.store(true, SeqCst);
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let mut g = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            wait_until_timed(&gil);
            thread::sleep(Duration::from_millis(1)); // 100 intervals: the slice is over
            for _ in 1..LOOK_EVERY {
                g.checkpoint().unwrap();
            }
            assert_eq!(gil.stats().forced_drops, 0, "looked at the clock early");
            g.checkpoint().unwrap();
            assert_eq!(gil.stats().forced_drops, 1, "did not look at the clock");
            assert!(waiter_in.load(SeqCst));
        });
    }

    /// A yield of the holder's own accord is a switch, not a forced drop.
    #[test]
    fn a_yield_is_not_a_forced_drop() {
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let mut g = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            wait_until_timed(&gil);
            let before = crate::ThreadStats::current();
            assert!(g.hand_over(), "the waiter was queued");
            assert!(waiter_in.load(SeqCst));
            assert_eq!((crate::ThreadStats::current() - before).forced_drops, 0);
        });
        assert_eq!(gil.stats().forced_drops, 0);
    }

    /// A drop request of the clock's that a release answered (the next holder was granted the
    /// lock with the request still set) is forgotten: that holder's hand-over later is
    /// reported once, as its own request (`Event::DropRequested`), not also as the clock's.
    #[test]
    fn a_clock_request_answered_by_a_release_is_not_reported_later() {
        use std::sync::atomic::AtomicU32;

        use crate::Event;

        // Leaked: a hook may run on the lock's threads until they are done with it.
        let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
            Duration::from_millis(1),
        )));
        static REPORTED: AtomicU32 = AtomicU32::new(0);
        gil.set_event_hook(Some(&|_, event| {
            if event == Event::DropRequested {
                REPORTED.fetch_add(1, SeqCst);
            }
        }));
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let g = gil.acquire();
            let next = s.spawn(|| {
                let mut h = gil.acquire();
                // From here on the holder times its own slices.
                gil.timer.quiet.store(true, SeqCst);
                spawn_waiter(s, gil, &waiter_in);
                let give_up = give_up();
                while !waiter_in.load(SeqCst) {
                    h.checkpoint().unwrap();
                    assert!(Instant::now() < give_up, "the holder never ended its slice");
                }
            });
            // This thread makes no checkpoint: the clock asks, and the request stays set.
            let give_up = give_up();
            while gil.stats().clock_requests == 0 {
                assert!(Instant::now() < give_up, "the clock never asked");
                thread::yield_now();
            }
            drop(g);
            next.join().unwrap();
        });
        gil.set_event_hook(None);
        assert_eq!(gil.stats().forced_drops, 1, "the second holder handed over");
        // The one report is the second holder's own request, at the end of its slice.
        assert_eq!(
            REPORTED.load(SeqCst),
            1,
            "a request answered long ago was reported again"
        );
    }

    #[test]
    fn the_holder_keeps_its_slice_until_it_is_over() {
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL); // an hour
        let waiter_in = AtomicBool::new(false);
        thread::scope(|s| {
            let mut g = gil.acquire();
            spawn_waiter(s, &gil, &waiter_in);
            wait_until_timed(&gil);
            // A hundred looks at the clock, an hour before the slice is over.
            for _ in 0..100 * LOOK_EVERY {
                g.checkpoint().unwrap();
            }
            assert!(!waiter_in.load(SeqCst), "handed over an hour early");
            assert_eq!(gil.stats().forced_drops, 0);
        });
        assert!(waiter_in.load(SeqCst));
    }

    /// The thread that hands over is counted in by the clock before it lets go: at its
    /// `Released` event inside the yield, the clock counts both it and the thread it hands the
    /// lock to, so the lock cannot be unlisted between the two. Deterministic, where the test
    /// below depends on who runs first.
    #[test]
    fn a_thread_handing_over_is_counted_in_before_it_lets_go() {
        use std::sync::OnceLock;
        use std::sync::atomic::AtomicU32;

        use crate::Event;

        // Leaked: a hook may run on the lock's threads until they are done with it.
        let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(
            Gil::MAX_SWITCH_INTERVAL,
        )));
        static YIELDER: OnceLock<thread::ThreadId> = OnceLock::new();
        static COUNTED: AtomicU32 = AtomicU32::new(u32::MAX);
        YIELDER.set(thread::current().id()).unwrap();
        gil.set_event_hook(Some(&|gil, event| {
            if event == Event::Released
                && gil.has_waiters()
                && YIELDER.get() == Some(&thread::current().id())
            {
                COUNTED.store(gil.timer.waiting(), SeqCst);
            }
        }));
        thread::scope(|s| {
            let mut g = gil.acquire();
            s.spawn(|| drop(gil.acquire()));
            wait_until_timed(gil);
            assert!(g.hand_over(), "the waiter was queued");
        });
        gil.set_event_hook(None);
        assert_eq!(
            COUNTED.load(SeqCst),
            2,
            "the yielder was not counted in when it let go"
        );
    }

    #[test]
    fn a_thread_handed_the_lock_times_its_slice_from_the_start() {
        // The thread that hands over arms the clock before it queues, so the lock stays listed
        // through the handoff: the new holder finds `SLICE_TIMER` set as soon as it runs, even
        // if the thread that handed over has not run since.
        let gil = Gil::with_switch_interval(Gil::MAX_SWITCH_INTERVAL);
        for _ in 0..50 {
            let timed = AtomicBool::new(false);
            thread::scope(|s| {
                let mut g = gil.acquire();
                s.spawn(|| {
                    let _g = gil.acquire();
                    timed.store(gil.raw.breaker().pending() & SLICE_TIMER != 0, SeqCst);
                });
                wait_until_timed(&gil);
                assert!(g.hand_over(), "the waiter was queued");
                assert!(timed.load(SeqCst), "the new holder's slice was not timed");
            });
        }
    }

    /// The waker threads' names in this process.
    fn waker_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.trim_end() == "gil-waker")
                    .count()
            })
            .unwrap_or(0)
    }

    /// Many wakers handed off at once (a clock that fires many tasks' timers) are run by a few
    /// threads, not one each: a thread is started only when none is idle to take the next.
    /// (Fewer than 64 is far above what a few quick wakers need, and far below one per waker.)
    #[test]
    #[cfg(target_os = "linux")]
    fn many_wakers_at_once_start_few_threads() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                // A waker that takes a little while (a task scheduled on a busy executor).
                let until = Instant::now() + Duration::from_micros(20);
                while Instant::now() < until {}
                self.0.fetch_add(1, SeqCst);
            }
        }
        const WAKERS: usize = 5_000;
        let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let before = waker_threads();
        for _ in 0..WAKERS {
            super::hand_off(waker.clone(), true);
        }
        let give_up = Instant::now() + Duration::from_secs(60);
        while count.0.load(SeqCst) < WAKERS {
            assert!(Instant::now() < give_up, "the wakers never all ran");
            thread::sleep(Duration::from_millis(1));
        }
        let started = waker_threads().saturating_sub(before);
        assert!(
            started <= 64,
            "{started} waker threads for {WAKERS} quick wakers"
        );
    }
}
