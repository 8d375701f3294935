//! The shared state of one run: the two locks and what sits behind them, the shadow owners,
//! what the oracles have seen, and the leaks and waits that excuse a hang.
//!
//! A world is leaked (`'static`): hooks, handlers and wakers must be, and a run that hangs
//! leaves threads behind that still use it.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use gil_std::{Gil, GilCell, Holds, InterruptHandle};

use super::local;
use super::program::{Lock, Program};
use super::tasks::Task;

/// Which oracle saw a run go wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Oracle {
    /// Two threads were in a critical section of one lock at once (the shadow owner was
    /// another thread's when one claimed it).
    TwoHolders,
    /// The counter behind a lock disagreed with the number of increments made.
    LostUpdate,
    /// A live guard's lock was not held by its thread.
    GuardProvesNothing,
    /// A thread held a lock with no guard of it left and no hold leaked.
    HeldWithoutGuard,
    /// A panic that no documented misuse explains.
    UnexpectedPanic,
    /// The run did not finish, and no leak or lock-order cycle explains it.
    Hang,
    /// A drop request reached a lock nobody asked about.
    StrayDropRequest,
}

/// One thing an oracle saw.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The oracle.
    pub oracle: Oracle,
    /// What it saw, for a person.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.oracle, self.detail)
    }
}

/// What a thread may wait for and hold: the two locks and the shared mutex of the `Blocking`
/// helpers. A bit each, in masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Res {
    A = 0,
    B = 1,
    Mutex = 2,
    /// The shared `GilMutex`.
    GilMutex = 3,
}

impl Res {
    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl From<Lock> for Res {
    fn from(lock: Lock) -> Res {
        match lock {
            Lock::A => Res::A,
            Lock::B => Res::B,
        }
    }
}

/// No thread: the shadow owner of a lock nobody is in.
const NOBODY: usize = 0;

/// The shared state of one run.
pub(crate) struct World {
    pub(crate) program: Program,
    pub(crate) gils: [&'static Gil; 2],
    /// The counter behind each lock: a plain `Cell`, so that two holders at once lose
    /// increments (and Miri sees a data race).
    cells: [GilCell<'static, Cell<u64>>; 2],
    /// Increments made to each counter.
    made: [AtomicU64; 2],
    /// Who is in a critical section of each lock (a worker's id), or [`NOBODY`].
    shadow: [AtomicUsize; 2],
    /// The mutex the `Blocking` helpers lock.
    pub(crate) mutex: Mutex<()>,
    /// The shared `GilMutex` and its counter: a plain `u64`, so that two holders at once
    /// lose increments.
    #[cfg(not(gil_old_api))]
    pub(crate) gil_mutex: gil_std::GilMutex<u64>,
    /// Increments made to the `GilMutex`'s counter.
    #[cfg(not(gil_old_api))]
    gil_mutex_made: AtomicU64,
    /// Who is in a critical section of the `GilMutex`, or [`NOBODY`].
    #[cfg(not(gil_old_api))]
    gil_mutex_shadow: AtomicUsize,
    /// The cell `Blocking::get_or_init` fills.
    pub(crate) once: OnceLock<u64>,
    pub(crate) tasks: Mutex<Vec<Arc<Task>>>,
    findings: Mutex<Vec<Finding>>,
    /// Resources (`Res` bits) a leak may keep held for ever.
    leaks: AtomicU8,
    /// Per thread id: what the thread held in its current step (at its start, and in user
    /// code the step ran), and what it waited for in it, as `Res` masks.
    activity: Vec<[AtomicU8; 2]>,
    /// `Event::DropRequested` seen by each lock's hook.
    pub(crate) drop_events: [AtomicU64; 2],
    /// Set just before a step closes the lock.
    pub(crate) closed: [AtomicBool; 2],
    /// Each worker's interrupt handle for each lock, at `2 * worker + lock`.
    pub(crate) handles: Mutex<Vec<Option<InterruptHandle<'static>>>>,
    /// The run is over: workers left behind stop at their next step.
    pub(crate) over: AtomicBool,
}

impl World {
    /// A world for `program`, leaked, with its locks made and nothing installed yet.
    pub(crate) fn new_leaked(program: Program) -> &'static World {
        let s = &program.setup;
        let gils = [0, 1].map(|i| {
            let gil: &'static Gil = Box::leak(Box::new(Gil::with_switch_interval(s.intervals[i])));
            gil.set_fast_return(!s.strict_fifo[i]);
            gil
        });
        let threads = s.threads;
        Box::leak(Box::new(World {
            program,
            gils,
            cells: gils.map(|gil| GilCell::new(gil, Cell::new(0))),
            made: [AtomicU64::new(0), AtomicU64::new(0)],
            shadow: [AtomicUsize::new(NOBODY), AtomicUsize::new(NOBODY)],
            mutex: Mutex::new(()),
            #[cfg(not(gil_old_api))]
            gil_mutex: gil_std::GilMutex::new(0),
            #[cfg(not(gil_old_api))]
            gil_mutex_made: AtomicU64::new(0),
            #[cfg(not(gil_old_api))]
            gil_mutex_shadow: AtomicUsize::new(NOBODY),
            once: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            findings: Mutex::new(Vec::new()),
            leaks: AtomicU8::new(0),
            // The workers, the janitor and the final check (see `World::activity`).
            activity: (0..threads + 2)
                .map(|_| [AtomicU8::new(0), AtomicU8::new(0)])
                .collect(),
            drop_events: [AtomicU64::new(0), AtomicU64::new(0)],
            closed: [AtomicBool::new(false), AtomicBool::new(false)],
            handles: Mutex::new((0..2 * threads).map(|_| None).collect()),
            over: AtomicBool::new(false),
        }))
    }

    pub(crate) fn gil(&self, lock: Lock) -> &'static Gil {
        self.gils[lock.index()]
    }

    /// Which of the two locks `gil` is, if either.
    pub(crate) fn lock_of(&self, gil: &Gil) -> Option<Lock> {
        Lock::BOTH
            .into_iter()
            .find(|&l| std::ptr::eq(self.gil(l), gil))
    }

    pub(crate) fn record(&self, oracle: Oracle, detail: String) {
        let mut findings = self.findings.lock().unwrap_or_else(PoisonError::into_inner);
        findings.push(Finding { oracle, detail });
    }

    pub(crate) fn findings(&self) -> Vec<Finding> {
        let findings = self.findings.lock().unwrap_or_else(PoisonError::into_inner);
        findings.clone()
    }

    /// The critical section: through `proof`, reads the counter behind `lock` and writes it
    /// back one higher, with `me` as the shadow owner. Checks that nobody else is inside and
    /// that the counter equals the increments made so far (every earlier increment finished
    /// before its section ended, and the lock orders the sections).
    ///
    /// # Panics
    ///
    /// Where `GilCell::get` does (a guard of another lock, a hold set aside).
    pub(crate) fn touch(&self, lock: Lock, proof: &impl Holds, me: usize) {
        let i = lock.index();
        let counter = self.cells[i].get(proof);
        let mine = self.claim(lock, me, "a critical section");
        let seen = counter.get();
        let made = self.made[i].load(SeqCst);
        if seen != made {
            self.record(
                Oracle::LostUpdate,
                format!(
                    "{} read {seen} behind lock {lock:?} after {made} increments",
                    local::who(me)
                ),
            );
        }
        counter.set(seen + 1);
        self.made[i].fetch_add(1, SeqCst);
        if mine {
            self.unclaim(lock, me);
        }
    }

    /// The `GilMutex`'s critical section: through its guard's `counter`, with `me` as the
    /// shadow owner, as [`touch`](World::touch) for a lock.
    #[cfg(not(gil_old_api))]
    pub(crate) fn touch_mutex(&self, counter: &mut u64, me: usize) {
        let mine = self.claim_shadow(
            &self.gil_mutex_shadow,
            me,
            "a critical section of the GilMutex",
        );
        let made = self.gil_mutex_made.load(SeqCst);
        if *counter != made {
            self.record(
                Oracle::LostUpdate,
                format!(
                    "{} read {} behind the GilMutex after {made} increments",
                    local::who(me),
                    *counter
                ),
            );
        }
        *counter += 1;
        self.gil_mutex_made.fetch_add(1, SeqCst);
        if mine {
            Self::unclaim_shadow(&self.gil_mutex_shadow, me);
        }
    }

    /// Makes `me` the shadow owner of `lock`. Returns whether this call did (false: it
    /// already was, or another thread is, which is recorded).
    pub(crate) fn claim(&self, lock: Lock, me: usize, what: &str) -> bool {
        self.claim_shadow(
            &self.shadow[lock.index()],
            me,
            &format!("{what} of lock {lock:?}"),
        )
    }

    /// Makes `me` the owner in `shadow`, entering `what`: whether this call did (false: it
    /// already was, or another thread is, which is recorded).
    fn claim_shadow(&self, shadow: &AtomicUsize, me: usize, what: &str) -> bool {
        match shadow.compare_exchange(NOBODY, me, SeqCst, SeqCst) {
            Ok(_) => true,
            Err(owner) if owner == me => false,
            Err(owner) => {
                self.record(
                    Oracle::TwoHolders,
                    format!(
                        "{} entered {what} while {} was in one",
                        local::who(me),
                        local::who(owner)
                    ),
                );
                false
            }
        }
    }

    /// Ends `me`'s shadow ownership of `lock`.
    pub(crate) fn unclaim(&self, lock: Lock, me: usize) {
        Self::unclaim_shadow(&self.shadow[lock.index()], me);
    }

    /// Ends `me`'s ownership in `shadow`.
    fn unclaim_shadow(shadow: &AtomicUsize, me: usize) {
        let _ = shadow.compare_exchange(me, NOBODY, SeqCst, SeqCst);
    }

    /// The counter behind `lock` against the increments made, read through `proof`. `None`
    /// when they agree.
    pub(crate) fn count_mismatch(&self, lock: Lock, proof: &impl Holds) -> Option<(u64, u64)> {
        let seen = self.cells[lock.index()].get(proof).get();
        let made = self.made[lock.index()].load(SeqCst);
        (seen != made).then_some((seen, made))
    }

    /// Increments made to both counters.
    pub(crate) fn increments(&self) -> u64 {
        self.made.iter().map(|m| m.load(SeqCst)).sum()
    }

    /// A resource may now be held for ever (a guard, token or future leaked).
    pub(crate) fn leak(&self, res: Res) {
        self.leaks.fetch_or(res.bit(), SeqCst);
    }

    /// What thread `me` holds and waits for (see `World::activity`), if it is one of the run.
    fn activity(&self, me: usize) -> Option<&[AtomicU8; 2]> {
        let workers = self.program.setup.threads;
        let index = match me {
            local::JANITOR => workers,
            local::CHECKER => workers + 1,
            worker if (1..=workers).contains(&worker) => worker - 1,
            _ => return None,
        };
        self.activity.get(index)
    }

    /// Thread `me` begins a step holding `held` (a mask).
    pub(crate) fn begin_step(&self, me: usize, held: u8) {
        if let Some([h, w]) = self.activity(me) {
            h.store(held, SeqCst);
            w.store(0, SeqCst);
        }
    }

    /// Thread `me` holds `held` (a mask) from now to the end of its step.
    pub(crate) fn holds(&self, me: usize, held: u8) {
        if let Some([h, _]) = self.activity(me) {
            h.fetch_or(held, SeqCst);
        }
    }

    /// Thread `me`, holding `held` (a mask), may wait for `waited`.
    pub(crate) fn waits(&self, me: usize, held: u8, waited: Res) {
        if let Some([h, w]) = self.activity(me) {
            h.fetch_or(held, SeqCst);
            w.fetch_or(waited.bit(), SeqCst);
        }
    }

    /// Whether threads stuck in their steps (ids `stuck`) are within the contract: their waits
    /// form a lock-order cycle among them, or lead to something leaked. Each stuck thread
    /// holds what it held in its step and waits for what it waited for; a lock one waits for
    /// is held by another stuck thread, or leaked (every other thread lets go of what it
    /// holds when it finishes).
    pub(crate) fn hang_excused(&self, stuck: &[usize]) -> bool {
        let mut edges = 0u16;
        let mut waited = 0u8;
        for &t in stuck {
            let Some([h, w]) = self.activity(t) else {
                continue;
            };
            let (h, w) = (h.load(SeqCst), w.load(SeqCst));
            // The janitor runs every task: one handed a lock holds it until dropped, and a
            // hook its drop runs may wait for that lock. The lock documents this: an executor
            // thread that blocks with such a task on it holds up the line for ever.
            if t == local::JANITOR && h & w != 0 {
                return true;
            }
            waited |= w;
            for from in 0..RESOURCES {
                for to in 0..RESOURCES {
                    if from != to && h & (1 << from) != 0 && w & (1 << to) != 0 {
                        edges |= 1 << (RESOURCES * from + to);
                    }
                }
            }
        }
        let reach = reach(edges);
        let leaks = self.leaks.load(SeqCst);
        (0..RESOURCES).any(|r| reach[r] & (1 << r) != 0)
            || (0..RESOURCES).any(|r| waited & (1 << r) != 0 && (reach[r] | 1 << r) & leaks != 0)
    }

    /// Leaks guards a thread could not drop before its end (see `local::drain_kept`): their
    /// locks may be held for ever.
    pub(crate) fn leak_kept(&self, guards: Vec<local::Kept>) {
        for guard in guards {
            if let Some(lock) = self.lock_of(guard.gil()) {
                self.leak(lock.into());
            }
            std::mem::forget(guard);
        }
    }

    /// Whether `res` may be held for ever by something leaked.
    pub(crate) fn leaked(&self, res: Res) -> bool {
        self.leaks.load(SeqCst) & res.bit() != 0
    }
}

/// How many resources a thread may hold and wait for (the `Res` variants).
const RESOURCES: usize = 4;

/// For each resource, the mask of those reachable from it along the edges (bit
/// `RESOURCES * from + to`).
fn reach(edges: u16) -> [u8; RESOURCES] {
    let mut reach = [0u8; RESOURCES];
    for (from, row) in reach.iter_mut().enumerate() {
        for to in 0..RESOURCES {
            if edges & (1 << (RESOURCES * from + to)) != 0 {
                *row |= 1 << to;
            }
        }
    }
    // Every path is at most RESOURCES - 1 edges long: that many rounds of composition less
    // one reach them all.
    for _ in 0..RESOURCES - 1 {
        let before = reach;
        for row in reach.iter_mut() {
            for (mid, &next) in before.iter().enumerate() {
                if *row & (1 << mid) != 0 {
                    *row |= next;
                }
            }
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::{RESOURCES, reach};

    fn cyclic(edges: u16) -> bool {
        let reach = reach(edges);
        (0..RESOURCES).any(|r| reach[r] & (1 << r) != 0)
    }

    #[test]
    fn cycles_among_the_resources() {
        let edge = |from: usize, to: usize| 1u16 << (RESOURCES * from + to);
        assert!(!cyclic(0));
        assert!(!cyclic(edge(0, 1)));
        assert!(cyclic(edge(0, 1) | edge(1, 0)));
        assert!(!cyclic(edge(0, 1) | edge(1, 2)));
        assert!(cyclic(edge(0, 1) | edge(1, 2) | edge(2, 0)));
        assert_eq!(reach(edge(0, 1) | edge(1, 2))[0], 0b110);
        assert!(cyclic(edge(0, 3) | edge(3, 2) | edge(2, 1) | edge(1, 0)));
        assert!(!cyclic(edge(0, 3) | edge(3, 2) | edge(2, 1)));
    }
}
