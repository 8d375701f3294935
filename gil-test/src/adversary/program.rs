//! The program an input describes: a set-up (threads, switch intervals, event hooks, breaker
//! handlers) and a list of steps, each one operation by one thread, in the order the conductor
//! starts them.
//!
//! An input is a header of [`HEADER`] bytes, then one [`STEP`]-byte chunk per step, each
//! decoded on its own: removing a chunk removes one step, and a byte shrunk towards 0 makes
//! its part simpler (0 is the simplest choice everywhere: no hook, a one-hour interval, the
//! first lock, a plain touch). So shrinking bytes, as proptest and libFuzzer do, shrinks the
//! program.

use std::fmt;
use std::time::Duration;

use gil_std::{Event, Gil};

/// Bytes of set-up before the first step.
pub const HEADER: usize = 12;

/// Bytes per step.
pub const STEP: usize = 4;

/// Steps decoded at most: the rest of a longer input is ignored.
pub const MAX_STEPS: usize = 64;

/// Worker threads at most.
pub const MAX_THREADS: usize = 4;

/// One of the two locks every program has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lock {
    /// The first lock.
    A,
    /// The second lock.
    B,
}

impl Lock {
    /// Both locks, in index order.
    pub const BOTH: [Lock; 2] = [Lock::A, Lock::B];

    fn of(byte: u8) -> Lock {
        if byte & 1 == 0 { Lock::A } else { Lock::B }
    }

    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lock that is not this one.
    pub fn other(self) -> Lock {
        match self {
            Lock::A => Lock::B,
            Lock::B => Lock::A,
        }
    }
}

/// What user code run by the lock does: an event hook, a pending call, a breaker handler, the
/// closure of a blocking region, or a waker. "Same" is the lock that ran it (or whose region
/// it is), "other" the other one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Nothing,
    /// Touches the same lock's counter with the guard it was given (calls and handlers have
    /// one; elsewhere nothing).
    Touch,
    /// Acquires the other lock, touches it, drops the guard.
    TakeOther,
    /// `ensure`s the other lock, touches it, drops the guard.
    EnsureOther,
    /// `ensure`s the other lock, touches it, and keeps the guard in a thread-local.
    KeepOther,
    /// `ensure`s the same lock, touches it, drops the guard.
    EnsureSame,
    /// `ensure`s the same lock, touches it, and keeps the guard in a thread-local.
    KeepSame,
    /// Acquires the same lock, touches it, drops the guard.
    AcquireSame,
    /// Panics (a planned panic, which the fuzzer knows as its own).
    Panic,
    /// `request_drop` on the other lock.
    RequestDropOther,
    /// `request_drop` on the same lock.
    RequestDropSame,
    /// Queues a pending call on the other lock that touches it.
    CallOther,
    /// Sleeps a moment.
    Sleep,
    /// Polls the newest task that is still live, here and now.
    PollTask,
    /// `ensure`s the other lock and runs a checkpoint on it.
    CheckpointOther,
    /// Acquires the other lock, touches it, and keeps the guard in a thread-local.
    KeepOtherAcquired,
}

impl Action {
    const ALL: [Action; 16] = [
        Action::Nothing,
        Action::Touch,
        Action::TakeOther,
        Action::EnsureOther,
        Action::KeepOther,
        Action::EnsureSame,
        Action::KeepSame,
        Action::AcquireSame,
        Action::Panic,
        Action::RequestDropOther,
        Action::RequestDropSame,
        Action::CallOther,
        Action::Sleep,
        Action::PollTask,
        Action::CheckpointOther,
        Action::KeepOtherAcquired,
    ];

    fn of(byte: u8) -> Action {
        Self::ALL[usize::from(byte % 16)]
    }

    /// Whether the action asks for a drop of `lock`, for the drop-request oracle, when run by
    /// user code of `same`.
    pub(crate) fn requests_drop_of(self, same: Lock, lock: Lock) -> bool {
        match self {
            Action::RequestDropSame => lock == same,
            Action::RequestDropOther => lock == same.other(),
            _ => false,
        }
    }
}

/// One rule of an event hook: on `event`, do `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookRule {
    /// The event that triggers it.
    pub event: Event,
    /// What it does.
    pub action: Action,
    /// Whether a panic in the action goes on out of the hook (the lock then removes the hook),
    /// rather than stopping in the hook.
    pub escapes: bool,
}

impl HookRule {
    /// Got and Released twice as often as the rest: the hand-over paths.
    const EVENTS: [Event; 8] = [
        Event::Got,
        Event::Released,
        Event::Got,
        Event::Released,
        Event::Wants,
        Event::DropRequested,
        Event::BlockingEntered,
        Event::BlockingLeft,
    ];

    /// A rule from two bytes, present half the time: the first says whether, on which event
    /// and whether a panic escapes, the second what it does.
    fn of(when: u8, what: u8) -> Option<HookRule> {
        (when & 1 == 1).then(|| HookRule {
            event: Self::EVENTS[usize::from((when >> 1) & 7)],
            action: Action::of(what),
            escapes: when & 0x10 != 0,
        })
    }
}

/// How a task's waker reacts to a wake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeMode {
    /// Does nothing: a later step polls the task (or the end of the run drops it).
    Mark,
    /// Polls the future at once, inside `wake`, and drops a guard it gets.
    InlineDrop,
    /// Polls the future at once, inside `wake`, and keeps a guard it gets in a thread-local of
    /// the waking thread.
    InlineKeep,
}

impl WakeMode {
    fn of(byte: u8) -> WakeMode {
        [WakeMode::Mark, WakeMode::InlineDrop, WakeMode::InlineKeep][usize::from(byte % 3)]
    }
}

/// A `Blocking` helper called with the topmost guard of a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// `sleep` for a moment.
    Sleep,
    /// `lock` the shared mutex and unlock it at once.
    LockDrop,
    /// `lock` the shared mutex and keep its guard (a later `Drop` step unlocks it).
    LockKeep,
    /// `get_or_init` the shared cell, with an initialiser that touches the lock.
    GetOrInit,
}

impl Helper {
    fn of(byte: u8) -> Helper {
        [
            Helper::Sleep,
            Helper::LockDrop,
            Helper::LockKeep,
            Helper::GetOrInit,
        ][usize::from(byte % 4)]
    }
}

/// A step on the shared `GilMutex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexStep {
    /// `lock`, keeping the guard (a later `Drop` step unlocks it).
    Lock,
    /// `try_lock_for` some milliseconds, keeping the guard it gives.
    TryLockFor(u8),
    /// `MutexGuard::bump` on the topmost guard of the mutex.
    Bump,
    /// Touches the mutex's counter through its topmost guard.
    Touch,
}

impl MutexStep {
    fn of(byte: u8) -> MutexStep {
        match byte % 4 {
            0 => MutexStep::Lock,
            1 => MutexStep::TryLockFor(byte / 4 % 4),
            2 => MutexStep::Bump,
            _ => MutexStep::Touch,
        }
    }
}

/// How the slot's first lock ends its waiter's future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotWaiter {
    /// Leaks it while it waits in line (`mem::forget` of its pinned box).
    Forget,
    /// Drops it while it waits (cancels).
    Cancel,
    /// Polls it to completion once the lock is released, then drops its guard.
    Complete,
}

/// How the slot's first lock is dropped, and the second put in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotDrop {
    /// Moved out of its box onto the stack and dropped there; the second gets a new box.
    MovedOut,
    /// Dropped in its box; the second gets a new box.
    InPlace,
    /// `mem::replace`d in its box by the second, and dropped where it was moved to.
    ReplacedInBox,
    /// Assigned over in its box by the second (dropped in place).
    AssignedInBox,
}

/// A lock's life in a slot, within one step: a `Gil` in a `Box`, held while a future waits
/// for it on a helper thread, that future ended as `waiter` says, the lock dropped as `drop`
/// says once every borrow has ended, and a second `Gil` put in its place (at the same address,
/// or likely so), held for `dwell` while a helper thread waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// The first lock's switch interval.
    pub first: Duration,
    /// How its waiter's future ends.
    pub waiter: SlotWaiter,
    /// How it is dropped.
    pub drop: SlotDrop,
    /// The second lock's switch interval.
    pub second: Duration,
    /// Whether a helper thread waits for the second lock.
    pub second_waiter: bool,
    /// How long the second lock is held, checkpointing, while its waiter waits.
    pub dwell: Duration,
}

impl SlotPlan {
    fn of(a: u8, b: u8) -> SlotPlan {
        SlotPlan {
            first: [
                Duration::from_millis(10),
                Duration::from_millis(1),
                Gil::MAX_SWITCH_INTERVAL,
                Duration::from_micros(100),
            ][usize::from(a & 3)],
            waiter: [
                SlotWaiter::Forget,
                SlotWaiter::Cancel,
                SlotWaiter::Complete,
                SlotWaiter::Forget,
            ][usize::from((a >> 2) & 3)],
            drop: [
                SlotDrop::MovedOut,
                SlotDrop::InPlace,
                SlotDrop::ReplacedInBox,
                SlotDrop::AssignedInBox,
            ][usize::from((a >> 4) & 3)],
            second: [Gil::MAX_SWITCH_INTERVAL, Duration::from_millis(1)][usize::from(a >> 7)],
            second_waiter: b & 1 == 0,
            dwell: Duration::from_millis([20, 5, 50, 0][usize::from((b >> 1) & 3)]),
        }
    }
}

/// One operation of one thread. Items (guards, tokens, a mutex guard) live on the thread's
/// own stack of items; an index counts from its top, modulo its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Touches the lock's counter with the topmost guard of that lock, if any.
    Touch(Lock),
    /// `acquire`.
    Acquire(Lock),
    /// Drops an item.
    Drop(u8),
    /// `ensure`.
    Ensure(Lock),
    /// `try_acquire`.
    TryAcquire(Lock),
    /// `try_acquire_for` some milliseconds.
    TryAcquireFor(Lock, u8),
    /// `acquire_checked`.
    AcquireChecked(Lock),
    /// `checkpoint` on the topmost guard of the lock.
    Checkpoint(Lock),
    /// `yield_now` on the topmost `GilGuard` of the lock.
    Yield(Lock),
    /// `request_drop`.
    RequestDrop(Lock),
    /// `close`, running the calls handed back if this thread holds a guard to run them with.
    Close(Lock),
    /// `allow_threads` on the topmost `GilGuard` of the lock, its closure doing the action.
    AllowThreads(Lock, Action),
    /// `unlock` of the topmost `GilGuard` of the lock: the token replaces the guard.
    Unlock(Lock),
    /// `relock` of an `Unlocked` token.
    Relock(u8),
    /// `unlock_for_await` of the topmost `GilGuard` of the lock.
    UnlockForAwait(Lock),
    /// `relock_async` of an `UnlockedAsync` token: its future becomes a task.
    RelockAsync(u8),
    /// A `Blocking` helper on the topmost guard of the lock.
    Helper(Lock, Helper),
    /// `mem::forget` of an item.
    Forget(u8),
    /// `Box::leak` of an item.
    Leak(u8),
    /// `mem::swap` of two items.
    Swap(u8, u8),
    /// `mem::replace` of an item by a new guard of the lock; the old item is dropped.
    Replace(u8, Lock),
    /// `acquire_async`: a new task, polled once here.
    Spawn(Lock, WakeMode),
    /// Polls a task here.
    Poll(u8),
    /// Drops a task's future.
    DropTask(u8),
    /// Leaks a task's future (`mem::forget` of its pinned box).
    ForgetTask(u8),
    /// Waits for `acquire_async`'s future on this thread (a minimal `block_on`).
    BlockOn(Lock),
    /// `add_pending_call` doing the action.
    AddCall(Lock, Action),
    /// `raise`s the runtime bit whose handler the set-up installed.
    Raise(Lock),
    /// Touches every guard this thread keeps in its thread-local.
    TouchKept,
    /// Drops every guard this thread keeps in its thread-local.
    DropKept,
    /// Panics here (caught): between operations, nothing may change.
    Panic,
    /// `set_switch_interval` to one of a few values.
    SetInterval(Lock, u8),
    /// Interrupts a thread through its handle for the lock.
    Interrupt(Lock, u8),
    /// A lock's life in a slot (see [`SlotPlan`]).
    Slot(SlotPlan),
    /// A step on the shared `GilMutex`.
    Mutex(MutexStep),
    /// `EnsureGuard::into_guard` of an item: an acquiring `ensure` guard becomes the
    /// `GilGuard` it owns; a nested one is handed back and stays.
    #[cfg(not(gil_old_api))]
    IntoGuard(u8),
    /// Through `EnsureGuard::guard_mut`: `mem::replace` of an acquiring `ensure` guard's own
    /// guard by a new guard of the lock; the replaced guard is dropped.
    #[cfg(gil_old_api)]
    ReplaceInEnsure(u8, Lock),
    /// Through `EnsureGuard::guard_mut`: `mem::swap` of an acquiring `ensure` guard's own
    /// guard with a `GilGuard` item.
    #[cfg(gil_old_api)]
    SwapInEnsure(u8, u8),
}

/// The kind of [`Op::Slot`] (see [`kind`]).
pub const SLOT: u8 = 33;

/// Which kind of operation (0 to 35, in the order of `Op::of`) a step's second byte picks:
/// the common operations (taking, dropping, touching, checkpointing) are picked more often
/// than the rest, so that a program of a few dozen steps combines them.
pub fn kind(byte: u8) -> u8 {
    const KINDS: [u8; 64] = [
        0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 5, 6, 7, 7, 7, 7, 7, 8, 8, 9, 9, 9,
        10, 11, 11, 12, 12, 13, 13, 14, 15, 16, 16, 17, 18, 19, 20, 21, 21, 21, 22, 22, 23, 24, 25,
        26, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
    ];
    KINDS[usize::from(byte) % KINDS.len()]
}

impl Op {
    fn of(kind: u8, a: u8, b: u8) -> Op {
        let l = Lock::of(a);
        match kind {
            0 => Op::Touch(l),
            1 => Op::Acquire(l),
            2 => Op::Drop(a),
            3 => Op::Ensure(l),
            4 => Op::TryAcquire(l),
            5 => Op::TryAcquireFor(l, b % 4),
            6 => Op::AcquireChecked(l),
            7 => Op::Checkpoint(l),
            8 => Op::Yield(l),
            9 => Op::RequestDrop(l),
            10 => Op::Close(l),
            11 => Op::AllowThreads(l, Action::of(b)),
            12 => Op::Unlock(l),
            13 => Op::Relock(a),
            14 => Op::UnlockForAwait(l),
            15 => Op::RelockAsync(a),
            16 => Op::Helper(l, Helper::of(b)),
            17 => Op::Forget(a),
            18 => Op::Leak(a),
            19 => Op::Swap(a, b),
            20 => Op::Replace(b, l),
            21 => Op::Spawn(l, WakeMode::of(b)),
            22 => Op::Poll(b),
            23 => Op::DropTask(b),
            24 => Op::ForgetTask(b),
            25 => Op::BlockOn(l),
            26 => Op::AddCall(l, Action::of(b)),
            27 => Op::Raise(l),
            28 => Op::TouchKept,
            29 => Op::DropKept,
            30 => Op::Panic,
            31 => Op::SetInterval(l, b),
            32 => Op::Interrupt(l, b),
            SLOT => Op::Slot(SlotPlan::of(a, b)),
            #[cfg(gil_old_api)]
            34 => Op::ReplaceInEnsure(b, l),
            #[cfg(gil_old_api)]
            35 => Op::SwapInEnsure(a, b),
            // The new API's `into_guard` in the old API's first kind, and the `GilMutex` in its
            // second, so that every input decodes to a program either way.
            #[cfg(not(gil_old_api))]
            34 => Op::IntoGuard(a),
            #[cfg(not(gil_old_api))]
            35 => Op::Mutex(MutexStep::of(b)),
            _ => Op::Touch(l),
        }
    }

    /// The lock this operation may request a drop of (for the drop-request oracle).
    pub(crate) fn requests_drop_of(self, lock: Lock) -> bool {
        match self {
            Op::RequestDrop(l) => l == lock,
            Op::AllowThreads(l, action) | Op::AddCall(l, action) => {
                action.requests_drop_of(l, lock)
            }
            _ => false,
        }
    }

    /// Whether this operation changes the lock's switch interval.
    pub(crate) fn sets_interval_of(self, lock: Lock) -> bool {
        matches!(self, Op::SetInterval(l, _) if l == lock)
    }
}

/// The switch intervals a lock may start with or be set to. The first, the longest allowed,
/// is the default of a shrunk input: a lock whose holder nobody asks to drop.
pub(crate) const INTERVALS: [Duration; 4] = [
    Gil::MAX_SWITCH_INTERVAL,
    Duration::from_millis(1),
    Duration::from_micros(100),
    Duration::from_millis(10),
];

/// What is set up before the first step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Worker threads, 2 to [`MAX_THREADS`].
    pub threads: usize,
    /// Each lock's switch interval at the start.
    pub intervals: [Duration; 2],
    /// Whether each lock has the fast return from blocking regions switched off.
    pub strict_fifo: [bool; 2],
    /// Each lock's event hook: its rules (no rule, no hook).
    pub hooks: [Vec<HookRule>; 2],
    /// Each lock's handler for its runtime bit 0, if any.
    pub handlers: [Option<Action>; 2],
    /// Whether every worker takes an interrupt handle for both locks at its start.
    pub interrupt_handles: bool,
}

/// A decoded input: the set-up and the steps, each `(thread, operation)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Program {
    /// What is set up first.
    pub setup: Setup,
    /// The steps, in the order the conductor starts them.
    pub steps: Vec<(usize, Op)>,
}

impl Program {
    /// Decodes `bytes`; every input is a program (missing bytes read as 0).
    pub fn decode(bytes: &[u8]) -> Program {
        let h = |i: usize| bytes.get(i).copied().unwrap_or(0);
        let threads = 2 + usize::from(h(0) & 3) % (MAX_THREADS - 1);
        let rules = |first: usize| {
            [first, first + 2]
                .into_iter()
                .filter_map(|i| HookRule::of(h(i), h(i + 1)))
                .collect()
        };
        let handler = |b: u8| (b & 1 == 1).then(|| Action::of(b >> 4));
        let setup = Setup {
            threads,
            intervals: [
                INTERVALS[usize::from(h(1) & 3)],
                INTERVALS[usize::from((h(1) >> 2) & 3)],
            ],
            strict_fifo: [h(1) & 0x10 != 0, h(1) & 0x20 != 0],
            hooks: [rules(2), rules(6)],
            handlers: [handler(h(10)), handler(h(11))],
            interrupt_handles: h(0) & 0x80 != 0,
        };
        let steps = bytes
            .get(HEADER..)
            .unwrap_or(&[])
            .chunks(STEP)
            .take(MAX_STEPS)
            .map(|c| {
                let c = |i: usize| c.get(i).copied().unwrap_or(0);
                (usize::from(c(0)) % threads, Op::of(kind(c(1)), c(2), c(3)))
            })
            .collect();
        Program { setup, steps }
    }

    /// Whether anything in the program asks for a drop of `lock` or changes its interval: if
    /// not, and its interval is an hour, no drop request may ever reach it.
    pub(crate) fn may_request_drop_of(&self, lock: Lock) -> bool {
        let s = &self.setup;
        s.intervals[lock.index()] != Gil::MAX_SWITCH_INTERVAL
            || self
                .steps
                .iter()
                .any(|&(_, op)| op.requests_drop_of(lock) || op.sets_interval_of(lock))
            || Lock::BOTH.into_iter().any(|same| {
                let i = same.index();
                s.hooks[i]
                    .iter()
                    .any(|r| r.action.requests_drop_of(same, lock))
                    || s.handlers[i].is_some_and(|a| a.requests_drop_of(same, lock))
            })
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}", self.setup)?;
        for (i, (t, op)) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>2}: thread {t}: {op:?}")?;
        }
        Ok(())
    }
}
