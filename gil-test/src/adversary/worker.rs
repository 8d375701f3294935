//! A worker thread: its stack of items (guards, tokens, a mutex guard), the steps it runs, and
//! the checks after each step.
//!
//! What the worker believes it holds comes from its items alone: a lock is held while the
//! thread has a guard of it (on its stack or kept in its thread-local) or leaked one. Between
//! steps the worker is the shadow owner of every lock it believes it holds, so a second thread
//! that comes to believe the same is caught at once; and each guard must prove its lock
//! (`is_held_by_current_thread`), and no lock may be held without a guard unless one leaked.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use gil_std::{Blocking, EnsureGuard, GilGuard, Unlocked, UnlockedAsync};

use super::Options;
use super::callbacks::{self, BIT, Site, message, panic_allowed, planned_panic};
use super::local::{self, Kept};
use super::program::{Action, Helper, INTERVALS, Lock, MutexStep, Op};
use super::tasks::{Polled, Task, TaskFuture, block_on};
use super::world::{Oracle, Res, World};

/// Something a worker owns between steps.
pub(crate) enum Item {
    Guard(GilGuard<'static>),
    Ensure(EnsureGuard<'static>),
    Unlocked(Unlocked<'static>),
    Absence(UnlockedAsync<'static>),
    /// The shared mutex, locked: kept only to be dropped, which unlocks it.
    Mutex(#[allow(dead_code)] MutexGuard<'static, ()>),
    /// The shared `GilMutex`, locked.
    #[cfg(not(gil_old_api))]
    GilMutex(lock_api::MutexGuard<'static, gil_std::RawGilMutex, u64>),
}

impl Item {
    /// What the item is, with its article.
    fn kind(&self) -> &'static str {
        match self {
            Item::Guard(_) => "a GilGuard",
            Item::Ensure(e) if e.is_nested() => "a nested EnsureGuard",
            Item::Ensure(_) => "an acquiring EnsureGuard",
            Item::Unlocked(_) => "an Unlocked",
            Item::Absence(_) => "an UnlockedAsync",
            Item::Mutex(_) => "a MutexGuard",
            #[cfg(not(gil_old_api))]
            Item::GilMutex(_) => "a GilMutex guard",
        }
    }
}

/// How many guards of each lock a worker has, and whether it holds the shared mutex and the
/// `GilMutex`.
struct Beliefs {
    guards: [u32; 2],
    mutex: bool,
    gil_mutex: bool,
}

/// A worker thread's state.
pub(crate) struct Worker {
    /// Its id in the run (1-based; 0 is nobody).
    id: usize,
    world: &'static World,
    options: Options,
    items: Vec<Item>,
    /// A guard of the lock was leaked on this thread: its hold may never end.
    leaked: [bool; 2],
    /// A guard of the `GilMutex` was leaked on this thread: it stays this thread's.
    leaked_gil_mutex: bool,
    /// Whether this worker is the shadow owner of each lock, between steps.
    claimed: [bool; 2],
}

impl Worker {
    /// The worker `index` (0-based) of `world`, on the calling thread.
    pub(crate) fn start(world: &'static World, index: usize, options: Options) -> Worker {
        let id = index + 1;
        local::set_me(id);
        if world.program.setup.interrupt_handles {
            let mut handles = world.handles.lock().unwrap_or_else(PoisonError::into_inner);
            for lock in Lock::BOTH {
                handles[2 * index + lock.index()] = Some(world.gil(lock).interrupt_handle());
            }
        }
        Worker {
            id,
            world,
            options,
            items: Vec::new(),
            leaked: [false; 2],
            leaked_gil_mutex: false,
            claimed: [false; 2],
        }
    }

    /// Runs step `k`, `op`, catching any panic, and checks the worker's state after it.
    pub(crate) fn step(&mut self, k: usize, op: Op) {
        self.unclaim_all();
        let before = self.beliefs();
        let held = self.mask(&before);
        local::set_held(held);
        self.world.begin_step(self.id, held);
        let kept_before = local::kept_ever();
        let misuse = self.misuse(op, &before);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.exec(op)));
        if let Err(payload) = outcome {
            // A guard kept during the step (a region's closure, a waker polling inline) may
            // make its end a documented misuse; so may a close by another thread meanwhile.
            let excused = misuse || local::kept_ever() != kept_before || self.closed_since(op);
            if !panic_allowed(&*payload, excused) {
                self.world.record(
                    Oracle::UnexpectedPanic,
                    format!(
                        "step {k} ({op:?}) on {}: {}",
                        local::who(self.id),
                        message(&*payload)
                    ),
                );
            }
        }
        self.audit(&format!("step {k} ({op:?})"));
    }

    /// The end of the worker's steps: drops its items, newest first, and its kept guards.
    pub(crate) fn finish(mut self) {
        self.unclaim_all();
        let before = self.beliefs();
        let held = self.mask(&before);
        local::set_held(held);
        self.world.begin_step(self.id, held);
        while let Some(item) = self.items.pop() {
            let kind = item.kind();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(item)))
                && !panic_allowed(&*payload, false)
            {
                self.world.record(
                    Oracle::UnexpectedPanic,
                    format!(
                        "dropping {kind} at the end of {}: {}",
                        local::who(self.id),
                        message(&*payload)
                    ),
                );
            }
        }
        match catch_unwind(local::drain_kept) {
            Ok(left) => {
                for guard in &left {
                    if let Some(lock) = self.world.lock_of(guard.gil()) {
                        self.leaked[lock.index()] = true;
                    }
                }
                self.world.leak_kept(left);
            }
            Err(payload) if !panic_allowed(&*payload, false) => self.world.record(
                Oracle::UnexpectedPanic,
                format!(
                    "dropping kept guards at the end of {}: {}",
                    local::who(self.id),
                    message(&*payload)
                ),
            ),
            Err(_) => {}
        }
        self.audit("its last step, with every guard dropped");
        self.unclaim_all();
    }

    fn unclaim_all(&mut self) {
        for lock in Lock::BOTH {
            if std::mem::take(&mut self.claimed[lock.index()]) {
                self.world.unclaim(lock, self.id);
            }
        }
    }

    /// The locks each of an item's guards proves: its own, and through the old API the guard
    /// an acquiring `ensure` guard owns (which may have been swapped for another lock's).
    fn proofs_of(world: &World, item: &mut Item) -> Vec<Lock> {
        match item {
            Item::Guard(g) => world.lock_of(g.gil()).into_iter().collect(),
            #[cfg(gil_old_api)]
            Item::Ensure(e) => {
                let mut locks: Vec<Lock> = world.lock_of(e.gil()).into_iter().collect();
                locks.extend(super::old_api::inner_lock(world, e));
                locks
            }
            #[cfg(not(gil_old_api))]
            Item::Ensure(e) => world.lock_of(e.gil()).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn beliefs(&mut self) -> Beliefs {
        let world = self.world;
        let mut b = Beliefs {
            guards: [0; 2],
            mutex: false,
            gil_mutex: false,
        };
        for item in &mut self.items {
            for lock in Self::proofs_of(world, item) {
                b.guards[lock.index()] += 1;
            }
            b.mutex |= matches!(item, Item::Mutex(_));
            #[cfg(not(gil_old_api))]
            {
                b.gil_mutex |= matches!(item, Item::GilMutex(_));
            }
        }
        for (lock, _) in local::kept_locks(|g| world.lock_of(g)) {
            b.guards[lock.index()] += 1;
        }
        b
    }

    fn holds(&self, b: &Beliefs, lock: Lock) -> bool {
        b.guards[lock.index()] > 0 || self.leaked[lock.index()]
    }

    /// The resources held, as `Res` bits.
    fn mask(&self, b: &Beliefs) -> u8 {
        let locks = Lock::BOTH
            .into_iter()
            .filter(|&l| self.holds(b, l))
            .fold(0, |m, l| m | Res::from(l).bit());
        let mutexes = [(b.mutex, Res::Mutex), (b.gil_mutex, Res::GilMutex)]
            .into_iter()
            .filter(|&(held, _)| held)
            .fold(0, |m, (_, r)| m | r.bit());
        locks | mutexes
    }

    /// Whether `op`, from the state `b`, is a misuse the lock documents a panic for.
    fn misuse(&self, op: Op, b: &Beliefs) -> bool {
        let holds = |l: Lock| self.holds(b, l);
        // Other guards of the hold beside the one a region would open on.
        let nested = |l: Lock| b.guards[l.index()] > 1 || self.leaked[l.index()];
        let closed = |l: Lock| self.world.closed[l.index()].load(SeqCst);
        match op {
            // Locking a `GilMutex` it holds panics instead of waiting for itself.
            Op::Mutex(MutexStep::Lock | MutexStep::TryLockFor(_)) => {
                b.gil_mutex || self.leaked_gil_mutex
            }
            Op::Acquire(l) | Op::Replace(_, l) => holds(l) || closed(l),
            Op::AcquireChecked(l) | Op::TryAcquireFor(l, _) | Op::BlockOn(l) | Op::Spawn(l, _) => {
                holds(l)
            }
            Op::Ensure(l) => closed(l) && !holds(l),
            Op::AllowThreads(l, _) | Op::Unlock(l) | Op::UnlockForAwait(l) => nested(l),
            Op::Helper(l, helper) => {
                let on_guard = self
                    .top_proof(l)
                    .is_some_and(|i| matches!(self.items[i], Item::Guard(_)));
                (on_guard && nested(l)) || (helper == Helper::GetOrInit && closed(l))
            }
            Op::Relock(n) => self
                .nth(n, |i| matches!(i, Item::Unlocked(_)))
                .and_then(|i| match &self.items[i] {
                    Item::Unlocked(u) => self.world.lock_of(u.gil()),
                    _ => None,
                })
                .is_some_and(holds),
            Op::RelockAsync(n) => self
                .nth(n, |i| matches!(i, Item::Absence(_)))
                .and_then(|i| match &self.items[i] {
                    Item::Absence(a) => self.world.lock_of(a.gil()),
                    _ => None,
                })
                .is_some_and(holds),
            Op::Poll(k) => self.task(k).is_some_and(|t| holds(t.lock)),
            #[cfg(gil_old_api)]
            Op::ReplaceInEnsure(_, l) => holds(l) || closed(l),
            _ => false,
        }
    }

    /// Whether the lock `op` acquires was closed by the time it panicked.
    fn closed_since(&self, op: Op) -> bool {
        let lock = match op {
            Op::Acquire(l) | Op::Ensure(l) | Op::Replace(_, l) | Op::Helper(l, _) => l,
            _ => return false,
        };
        self.world.closed[lock.index()].load(SeqCst)
    }

    /// The checks after a step: every guard proves its lock, no lock is held without a guard
    /// (unless one leaked), and this thread becomes the shadow owner of what it holds.
    fn audit(&mut self, after: &str) {
        let world = self.world;
        let who = local::who(self.id);
        let id = self.id;
        if self.options.audit_guards {
            for item in &mut self.items {
                let kind = item.kind();
                for lock in Self::proofs_of(world, item) {
                    if !world.gil(lock).is_held_by_current_thread() {
                        world.record(
                            Oracle::GuardProvesNothing,
                            format!(
                                "after {after}, {who} has {kind} of lock {lock:?}, which \
                                 it does not hold"
                            ),
                        );
                    }
                }
            }
            for (lock, held) in local::kept_locks(|g| world.lock_of(g)) {
                if !held {
                    world.record(
                        Oracle::GuardProvesNothing,
                        format!(
                            "after {after}, {who} keeps a guard of lock {lock:?} in a \
                             thread-local, and does not hold that lock"
                        ),
                    );
                }
            }
        }
        let b = self.beliefs();
        for lock in Lock::BOTH {
            let held = world.gil(lock).is_held_by_current_thread();
            if self.options.audit_guards && !self.holds(&b, lock) && held {
                world.record(
                    Oracle::HeldWithoutGuard,
                    format!(
                        "after {after}, {who} holds lock {lock:?} with no guard of it left \
                         and none leaked"
                    ),
                );
            }
            if self.holds(&b, lock) {
                self.claimed[lock.index()] = world.claim(lock, id, "a hold");
            }
        }
    }

    /// The index of the topmost item that `pred` accepts.
    fn top(&self, pred: impl Fn(&Item) -> bool) -> Option<usize> {
        self.items.iter().rposition(pred)
    }

    fn top_guard(&self, lock: Lock) -> Option<usize> {
        self.top(|i| matches!(i, Item::Guard(g) if self.world.lock_of(g.gil()) == Some(lock)))
    }

    /// A step on the shared `GilMutex`.
    #[cfg(not(gil_old_api))]
    fn mutex_step(&mut self, step: MutexStep) {
        let world = self.world;
        let top = self.top(|i| matches!(i, Item::GilMutex(_)));
        match step {
            MutexStep::Lock => {
                self.waits(Res::GilMutex);
                self.items.push(Item::GilMutex(world.gil_mutex.lock()));
            }
            MutexStep::TryLockFor(ms) => {
                self.waits(Res::GilMutex);
                let limit = Duration::from_millis(u64::from(ms));
                if let Some(g) = world.gil_mutex.try_lock_for(limit) {
                    self.items.push(Item::GilMutex(g));
                }
            }
            MutexStep::Bump => {
                if let Some(i) = top {
                    self.waits(Res::GilMutex);
                    if let Item::GilMutex(g) = &mut self.items[i] {
                        lock_api::MutexGuard::bump(g);
                    }
                }
            }
            MutexStep::Touch => {
                if let Some(Item::GilMutex(g)) = top.map(|i| &mut self.items[i]) {
                    world.touch_mutex(g, self.id);
                }
            }
        }
    }

    fn top_proof(&self, lock: Lock) -> Option<usize> {
        self.top(|i| match i {
            Item::Guard(g) => self.world.lock_of(g.gil()) == Some(lock),
            Item::Ensure(e) => self.world.lock_of(e.gil()) == Some(lock),
            _ => false,
        })
    }

    /// The index of the `n`th item from the top that `pred` accepts (modulo how many do).
    fn nth(&self, n: u8, pred: impl Fn(&Item) -> bool) -> Option<usize> {
        let matching: Vec<usize> = (0..self.items.len())
            .filter(|&i| pred(&self.items[i]))
            .collect();
        let len = matching.len();
        (len > 0).then(|| matching[len - 1 - usize::from(n) % len])
    }

    /// The index of the `n`th item from the top.
    fn pick(&self, n: u8) -> Option<usize> {
        self.nth(n, |_| true)
    }

    fn task(&self, k: u8) -> Option<std::sync::Arc<Task>> {
        let tasks = self
            .world
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let len = tasks.len();
        (len > 0).then(|| std::sync::Arc::clone(&tasks[usize::from(k) % len]))
    }

    /// This thread may now wait for `res` with what it held at the step's start.
    fn waits(&self, res: Res) {
        self.world.waits(self.id, local::held(), res);
    }

    fn push_polled(&mut self, polled: Polled) {
        if let Polled::Guard(g) = polled {
            self.items.push(Item::Guard(g));
        }
    }

    /// A guard or item it leaks: its hold may never end.
    fn leaking(&mut self, mut item: Item) -> Item {
        for lock in Self::proofs_of(self.world, &mut item) {
            self.leaked[lock.index()] = true;
            self.world.leak(lock.into());
        }
        if matches!(item, Item::Mutex(_)) {
            self.world.leak(Res::Mutex);
        }
        #[cfg(not(gil_old_api))]
        if matches!(item, Item::GilMutex(_)) {
            self.leaked_gil_mutex = true;
            self.world.leak(Res::GilMutex);
        }
        item
    }

    fn exec(&mut self, op: Op) {
        let world = self.world;
        let me = self.id;
        match op {
            #[cfg(not(gil_old_api))]
            Op::Mutex(step) => self.mutex_step(step),
            #[cfg(gil_old_api)]
            Op::Mutex(_) => {}
            Op::Touch(l) => {
                if let Some(i) = self.top_proof(l) {
                    match &self.items[i] {
                        Item::Guard(g) => world.touch(l, g, me),
                        Item::Ensure(e) => world.touch(l, e, me),
                        _ => unreachable!("a proof is a guard"),
                    }
                }
            }
            Op::Acquire(l) => {
                self.waits(l.into());
                self.items.push(Item::Guard(world.gil(l).acquire()));
            }
            Op::Drop(n) => {
                if let Some(i) = self.pick(n) {
                    drop(self.items.remove(i));
                }
            }
            Op::Ensure(l) => {
                self.waits(l.into());
                self.items.push(Item::Ensure(world.gil(l).ensure()));
            }
            Op::TryAcquire(l) => {
                if let Some(g) = world.gil(l).try_acquire() {
                    self.items.push(Item::Guard(g));
                }
            }
            Op::TryAcquireFor(l, ms) => {
                let limit = Duration::from_millis(u64::from(ms));
                if let Ok(g) = world.gil(l).try_acquire_for(limit) {
                    self.items.push(Item::Guard(g));
                }
            }
            Op::AcquireChecked(l) => {
                self.waits(l.into());
                if let Ok(g) = world.gil(l).acquire_checked() {
                    self.items.push(Item::Guard(g));
                }
            }
            Op::Checkpoint(l) => {
                if let Some(i) = self.top_proof(l) {
                    self.waits(l.into());
                    let _interrupted = match &mut self.items[i] {
                        Item::Guard(g) => g.checkpoint(),
                        Item::Ensure(e) => e.checkpoint(),
                        _ => unreachable!("a proof is a guard"),
                    };
                }
            }
            Op::Yield(l) => {
                if let Some(i) = self.top_guard(l) {
                    self.waits(l.into());
                    if let Item::Guard(g) = &mut self.items[i] {
                        g.hand_over();
                    }
                }
            }
            Op::RequestDrop(l) => world.gil(l).request_drop(),
            Op::Close(l) => {
                world.closed[l.index()].store(true, SeqCst);
                let calls = world.gil(l).close();
                match self.top_guard(l).map(|i| &self.items[i]) {
                    Some(Item::Guard(g)) => calls.run(g),
                    _ => drop(calls),
                }
            }
            Op::AllowThreads(l, action) => {
                if let Some(i) = self.top_guard(l) {
                    self.waits(l.into());
                    let held = local::held();
                    if let Item::Guard(g) = &mut self.items[i] {
                        g.allow_threads(|| {
                            local::set_held(held & !Res::from(l).bit());
                            callbacks::run(world, Site::Region, l, None, action, true);
                        });
                    }
                    local::set_held(held);
                }
            }
            Op::Unlock(l) => {
                if let Some(i) = self.top_guard(l) {
                    let Item::Guard(g) = self.items.remove(i) else {
                        unreachable!("the topmost guard")
                    };
                    let token = g.unlock();
                    self.items.insert(i, Item::Unlocked(token));
                }
            }
            Op::Relock(n) => {
                if let Some(i) = self.nth(n, |i| matches!(i, Item::Unlocked(_))) {
                    let Item::Unlocked(token) = self.items.remove(i) else {
                        unreachable!("a token")
                    };
                    if let Some(l) = world.lock_of(token.gil()) {
                        self.waits(l.into());
                    }
                    let g = token.relock();
                    self.items.insert(i, Item::Guard(g));
                }
            }
            Op::UnlockForAwait(l) => {
                if let Some(i) = self.top_guard(l) {
                    let Item::Guard(g) = self.items.remove(i) else {
                        unreachable!("the topmost guard")
                    };
                    let token = g.unlock_for_await();
                    self.items.insert(i, Item::Absence(token));
                }
            }
            Op::RelockAsync(n) => {
                if let Some(i) = self.nth(n, |i| matches!(i, Item::Absence(_))) {
                    let Item::Absence(token) = self.items.remove(i) else {
                        unreachable!("a token")
                    };
                    let l = world
                        .lock_of(token.gil())
                        .expect("a token of one of the locks");
                    let future = TaskFuture::Relock(Box::pin(token.relock_async()));
                    let task = Task::spawn(world, l, super::program::WakeMode::Mark, future);
                    let polled = task.poll();
                    self.push_polled(polled);
                }
            }
            Op::Helper(l, helper) => self.helper(l, helper),
            Op::Forget(n) => {
                if let Some(i) = self.pick(n) {
                    let item = self.items.remove(i);
                    std::mem::forget(self.leaking(item));
                }
            }
            Op::Leak(n) => {
                if let Some(i) = self.pick(n) {
                    let item = self.items.remove(i);
                    Box::leak(Box::new(self.leaking(item)));
                }
            }
            Op::Swap(a, b) => {
                if let (Some(i), Some(j)) = (self.pick(a), self.pick(b)) {
                    self.items.swap(i, j);
                }
            }
            Op::Replace(n, l) => {
                if let Some(i) = self.pick(n) {
                    self.waits(l.into());
                    let new = Item::Guard(world.gil(l).acquire());
                    drop(std::mem::replace(&mut self.items[i], new));
                }
            }
            Op::Spawn(l, mode) => {
                let future = TaskFuture::Acquire(Box::pin(world.gil(l).acquire_async()));
                let task = Task::spawn(world, l, mode, future);
                let polled = task.poll();
                self.push_polled(polled);
            }
            Op::Poll(k) => {
                if let Some(task) = self.task(k) {
                    let polled = task.poll();
                    self.push_polled(polled);
                }
            }
            Op::DropTask(k) => {
                if let Some(task) = self.task(k) {
                    drop(task.take());
                }
            }
            Op::ForgetTask(k) => {
                if let Some(task) = self.task(k) {
                    task.forget();
                }
            }
            Op::BlockOn(l) => {
                self.waits(l.into());
                // As a task's poll (see `Task::poll`): the lock may be handed to the future
                // while a hook the poll runs waits for the other lock.
                world.holds(self.id, Res::from(l).bit());
                let future = pin!(world.gil(l).acquire_async());
                if let Ok(g) = block_on(future) {
                    self.items.push(Item::Guard(g));
                }
            }
            Op::AddCall(l, action) => callbacks::call(world, l, action),
            Op::Raise(l) => world.gil(l).raise(BIT).expect("a runtime bit"),
            Op::TouchKept => {
                let kept = local::take_kept();
                for guard in &kept {
                    if let Some(l) = world.lock_of(guard.gil()) {
                        match guard {
                            Kept::Guard(g) => world.touch(l, g, me),
                            Kept::Ensure(e) => world.touch(l, e, me),
                        }
                    }
                }
                local::put_back_kept(kept);
            }
            Op::DropKept => local::drop_kept(),
            Op::Panic => planned_panic(),
            Op::SetInterval(l, v) => world
                .gil(l)
                .set_switch_interval(INTERVALS[usize::from(v) % INTERVALS.len()])
                .expect("an interval in range"),
            Op::Interrupt(l, t) => {
                let handles = world.handles.lock().unwrap_or_else(PoisonError::into_inner);
                let threads = handles.len() / 2;
                if let Some(h) = &handles[2 * (usize::from(t) % threads) + l.index()] {
                    h.interrupt();
                }
            }
            Op::Slot(plan) => super::slot::run(world, plan),
            #[cfg(not(gil_old_api))]
            Op::IntoGuard(n) => {
                if let Some(i) = self.nth(n, |i| matches!(i, Item::Ensure(_))) {
                    let Item::Ensure(e) = self.items.remove(i) else {
                        unreachable!("an ensure guard")
                    };
                    let item = match e.into_guard() {
                        Ok(g) => Item::Guard(g),
                        Err(e) => Item::Ensure(e),
                    };
                    self.items.insert(i, item);
                }
            }
            #[cfg(gil_old_api)]
            Op::ReplaceInEnsure(n, l) => {
                let acquiring = |i: &Item| matches!(i, Item::Ensure(e) if !e.is_nested());
                if let Some(i) = self.nth(n, acquiring) {
                    self.waits(l.into());
                    let Item::Ensure(e) = &mut self.items[i] else {
                        unreachable!("an ensure guard")
                    };
                    super::old_api::replace_in_ensure(e, world.gil(l).acquire());
                }
            }
            #[cfg(gil_old_api)]
            Op::SwapInEnsure(a, b) => {
                let acquiring = |i: &Item| matches!(i, Item::Ensure(e) if !e.is_nested());
                let guard = |i: &Item| matches!(i, Item::Guard(_));
                if let (Some(i), Some(j)) = (self.nth(a, acquiring), self.nth(b, guard)) {
                    let (lo, hi) = (i.min(j), i.max(j));
                    let (left, right) = self.items.split_at_mut(hi);
                    let (e, g) = match (&mut left[lo], &mut right[0]) {
                        (Item::Ensure(e), Item::Guard(g)) | (Item::Guard(g), Item::Ensure(e)) => {
                            (e, g)
                        }
                        _ => unreachable!("an ensure guard and a guard"),
                    };
                    super::old_api::swap_in_ensure(e, g);
                }
            }
        }
    }

    /// A `Blocking` helper on the topmost guard of `lock`.
    fn helper(&mut self, lock: Lock, helper: Helper) {
        let Some(i) = self.top_proof(lock) else {
            return;
        };
        let world = self.world;
        let let_go = local::held() & !Res::from(lock).bit();
        match helper {
            Helper::Sleep => {
                self.waits(lock.into());
                let nap = Duration::from_micros(50);
                match &mut self.items[i] {
                    Item::Guard(g) => g.sleep(nap),
                    Item::Ensure(e) => e.sleep(nap),
                    _ => unreachable!("a proof is a guard"),
                }
            }
            Helper::LockDrop | Helper::LockKeep => {
                // Waits for the mutex with the lock let go, then takes the lock back holding it.
                world.waits(self.id, let_go, Res::Mutex);
                world.waits(self.id, let_go | Res::Mutex.bit(), lock.into());
                let locked = match &mut self.items[i] {
                    Item::Guard(g) => g.lock_mutex(&world.mutex),
                    Item::Ensure(e) => e.lock_mutex(&world.mutex),
                    _ => unreachable!("a proof is a guard"),
                };
                let m = locked.unwrap_or_else(PoisonError::into_inner);
                if helper == Helper::LockKeep {
                    self.items.push(Item::Mutex(m));
                }
            }
            Helper::GetOrInit => {
                self.waits(lock.into());
                let init = move || {
                    callbacks::run(world, Site::Init, lock, None, Action::EnsureSame, true);
                    1
                };
                match &mut self.items[i] {
                    Item::Guard(g) => g.get_or_init(&world.once, init),
                    Item::Ensure(e) => e.get_or_init(&world.once, init),
                    _ => unreachable!("a proof is a guard"),
                };
            }
        }
    }
}
