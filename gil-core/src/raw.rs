//! The lock word and the handoff protocol.
//!
//! One `AtomicU32` holds who may do what. The waiter queue sits behind a small spin lock whose
//! bit lives in the same word, so that "is the lock free?" and "is anybody queued?" are decided
//! in one place. While a thread holds that queue lock, it is the only thread that changes the
//! word (the fast paths need exact values the bit rules out; everybody else only tries to set the
//! bit), so every edit under it ends in one Release swap of the whole word.

use core::pin::{Pin, pin};
use core::task::Poll;

use crate::breaker::Breaker;
use crate::park::{Park, SpinPark, mark_asleep};
use crate::queue::{
    ASLEEP, AWAKE, CLOSED, GRANTED, IDLE, OFFERED, Queue, WaitState, Waiter, Wakeup,
};
use crate::sync::{
    AtomicU32,
    Ordering::{Acquire, Relaxed, Release},
    SpinWait, UnsafeCell,
};
use crate::wait::{Back, Handover, PollPolicy, Return, Step, WaitPolicy, Waited, abort_on_unwind};

// The bits of the lock word.
/// A thread owns the lock.
const LOCKED: u32 = 1 << 0;
/// The waiter queue is not empty: release must hand off and nobody may barge. Implies `LOCKED`.
const QUEUED: u32 = 1 << 1;
/// A thread is editing the waiter queue; it alone writes the lock word until it clears this.
const QUEUE_LOCKED: u32 = 1 << 2;
/// `close` was called: fresh acquirers fail; returning ones still get through.
const SHUT: u32 = 1 << 3;
/// The owner is away in a blocking region and the head waiter is `OFFERED` the lock: it may
/// claim it, or the owner may come back and reclaim it, whichever takes the queue lock first.
/// Implies `LOCKED` and `QUEUED`.
const AWAY: u32 = 1 << 4;

/// A fair, FIFO, handoff lock with drop requests: the core of a global interpreter lock.
///
/// - **Exclusion.** One owner at a time.
/// - **FIFO handoff.** When the owner releases or yields while threads wait, the lock passes
///   directly to the longest waiter; nobody takes it ahead of a queued waiter.
/// - **Drop requests.** Any thread (or an interrupt handler) may call
///   [`request_drop`](RawGil::request_drop); the owner's next [`checkpoint`](RawGil::checkpoint)
///   hands the lock to the head waiter and queues the owner behind it.
/// - **Close.** After [`close`](RawGil::close), fresh acquirers fail with [`Closed`]; owners finish
///   normally and threads coming back to the lock still get it.
///
/// `P` says how a queued waiter sleeps ([`SpinPark`] by default). Waiter nodes are owned by the
/// waiting threads; nothing is allocated.
///
/// This is the raw layer: releasing, yielding and checkpoints are `unsafe` because only the owner
/// may call them. `gil-std` wraps it in a safe guard-based API.
///
/// ```
/// use gil_core::RawGil;
///
/// static GIL: RawGil = RawGil::new();
///
/// GIL.lock().expect("not closed");
/// for _ in 0..1000 {
///     // Interpreter work here; between units of work:
///     // SAFETY: this thread owns the lock.
///     let other_flags = unsafe { GIL.checkpoint() };
///     assert_eq!(other_flags, 0);
/// }
/// // SAFETY: this thread owns the lock.
/// unsafe { GIL.unlock() };
/// assert!(!GIL.is_locked());
/// ```
// `repr(C)`: the lock word first, the queue's absence count last (see the layout check below).
#[repr(C)]
pub struct RawGil<P: Park = SpinPark> {
    state: AtomicU32,
    breaker: Breaker,
    /// Handoffs so far. Written only under the queue lock; read anywhere.
    switches: AtomicU32,
    queue: UnsafeCell<Queue<P>>,
}

// The lock word at the start, where a user placing a word of its own just before the lock
// shares the first cache line with it (gil-std's owner token); the absence count, which only
// regions touch, at the end. Only with the hardware's atomics.
#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::offset_of!(RawGil<SpinPark>, state) == 0);
    assert!(core::mem::size_of::<RawGil<SpinPark>>() <= 64);
};

// SAFETY: the queue holds raw pointers to waiter nodes, which other threads reach only under the
// queue lock, and `P::Parker: Sync`; everything else is atomics.
unsafe impl<P: Park> Sync for RawGil<P> {}
// SAFETY: a `RawGil` with queued waiters is borrowed by them and cannot move; an idle one holds
// no pointers.
unsafe impl<P: Park> Send for RawGil<P> {}

// The queue's `UnsafeCell` would otherwise make `&RawGil` not unwind-safe, so that a
// `catch_unwind` around code that takes the lock would need `AssertUnwindSafe`, unlike around a
// `std::sync::Mutex`. No panic can leave the lock half-changed for code that sees it after the
// unwinding: the queue is edited only under the queue lock, by code that does not panic (its
// debug assertions aside), and every other field is an atomic.
impl<P: Park> core::panic::RefUnwindSafe for RawGil<P> {}
impl<P: Park> core::panic::UnwindSafe for RawGil<P> {}

/// The lock is closed: [`RawGil::close`] was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Closed;

impl core::fmt::Display for Closed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the GIL is closed")
    }
}

impl core::error::Error for Closed {}

/// Why [`RawGil::try_lock`] did not take the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TryLockError {
    /// Another thread owns it, or threads are queued for it.
    WouldBlock,
    /// The lock is closed.
    Closed,
}

/// What `RawGil::enqueue` did with a waiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a queued waiter must be waited for or cancelled"]
pub enum Enqueued {
    /// The lock was free: the caller owns it now and the waiter was not queued.
    Acquired,
    /// The waiter is queued; wait for it (`Waiter::wait`) or `cancel` it.
    Queued,
    /// The lock is closed and the waiter is fresh: it was not queued.
    Closed,
}

/// What `RawGil::unlock_away` did, for `RawGil::reclaim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "an owner that went away must reclaim or relock the lock"]
pub struct Absence {
    /// `Some(n)` if the lock was offered to the head waiter, as absence number `n`; `None` if it
    /// was released (nobody waited).
    offered: Option<u64>,
}

/// Where an ask for a loan stands: see `RawGil::ask_loan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loan {
    /// Asked; the lock is held and its holder may still lend it.
    Asked,
    /// Lent: the asking thread holds the lock on loan.
    Lent,
    /// The lock was released, or its owner is away in a blocking region: nobody may be left
    /// to answer. Withdraw the ask (`RawGil::withdraw_loan`) and take the lock another way.
    Unheld,
}

/// What `RawGil::cancel` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a cancel may find the lock granted, and then the caller owns it"]
pub enum Cancel {
    /// The waiter was taken out of the queue; the caller does not own the lock.
    Removed,
    /// The lock had already been handed to the waiter: the caller owns it.
    Granted,
    /// `close` had already taken the waiter out; the caller does not own the lock.
    Closed,
}

impl<P: Park> RawGil<P> {
    const_fn_unless_loom! {
        /// A new, unlocked, open lock with nobody waiting.
        pub fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                breaker: Breaker::new(),
                switches: AtomicU32::new(0),
                queue: UnsafeCell::new(Queue::new()),
            }
        }
    }

    /// Takes the lock if it is free and nobody waits for it. Never waits for another owner
    /// (it may spin for the few instructions another thread spends editing the queue).
    #[inline]
    pub fn try_lock(&self) -> Result<(), TryLockError> {
        // Acquire pairs with the Release in `unlock` (fast CAS) or `unlock_queue`: the previous
        // owner's writes become ours.
        match self.state.compare_exchange(0, LOCKED, Acquire, Relaxed) {
            Ok(_) => Ok(()),
            Err(state) => self.try_lock_slow(state),
        }
    }

    #[cold]
    fn try_lock_slow(&self, mut state: u32) -> Result<(), TryLockError> {
        let mut spin = SpinWait::new();
        loop {
            if state & SHUT != 0 {
                return Err(TryLockError::Closed);
            }
            if state & (LOCKED | QUEUED) != 0 {
                return Err(TryLockError::WouldBlock);
            }
            // Only QUEUE_LOCKED is set: an enqueue, cancel or close is deciding the outcome.
            spin.spin();
            // Acquire pairs with the Release in `unlock` / `unlock_queue`, as above.
            match self.state.compare_exchange(0, LOCKED, Acquire, Relaxed) {
                Ok(_) => return Ok(()),
                Err(s) => state = s,
            }
        }
    }

    /// Takes the lock, waiting in FIFO order with `P` if needed.
    ///
    /// # Errors
    ///
    /// [`Closed`] if the lock is or becomes closed before this thread gets it.
    #[inline]
    pub fn lock(&self) -> Result<(), Closed> {
        match self.try_lock() {
            Ok(()) => Ok(()),
            Err(TryLockError::Closed) => Err(Closed),
            Err(TryLockError::WouldBlock) => self.lock_slow(Waiter::new()),
        }
    }

    /// Takes the lock back for a thread that held it and let go for a while (around blocking
    /// work). Like [`lock`](RawGil::lock), but succeeds even after [`close`](RawGil::close), so
    /// that an owner interrupted by shutdown can always finish.
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    #[inline]
    pub(crate) fn relock(&self) {
        if self.try_lock().is_err() {
            let relocked = self.lock_slow(Waiter::returning());
            debug_assert!(relocked.is_ok(), "returning waiters are never closed");
        }
    }

    #[cold]
    fn lock_slow(&self, waiter: Waiter<P>) -> Result<(), Closed> {
        let waiter = pin!(waiter);
        // SAFETY: the waiter is pinned on this frame and not queued; `lock_with` returns only
        // once it is out of line. The caller does not own the lock (it just failed to take it).
        match unsafe { self.lock_with_waiter(waiter.as_ref(), &mut ()) } {
            Waited::Granted => Ok(()),
            Waited::Closed | Waited::GaveUp => Err(Closed),
        }
    }

    /// Takes the lock, waiting in line as `policy` says (see [`WaitPolicy`]): at once if it
    /// is free, else until the lock is granted ([`Waited::Granted`]: the calling thread owns
    /// it), closed, or the policy gives up. The waiter node is this call's own, on its frame.
    ///
    /// A thread that owns the lock already waits for itself: it hangs, as in
    /// [`lock`](RawGil::lock), until its policy gives up.
    ///
    /// ```
    /// use gil_core::{RawGil, Waited};
    ///
    /// let gil: RawGil = RawGil::new();
    /// assert_eq!(gil.lock_with(&mut ()), Waited::Granted, "free: taken at once");
    /// // SAFETY: this thread owns the lock.
    /// unsafe { gil.unlock() };
    /// ```
    pub fn lock_with(&self, policy: &mut impl WaitPolicy<P>) -> Waited {
        let waiter = pin!(Waiter::new());
        // SAFETY: the waiter is new (not queued) and pinned on this frame, and
        // `lock_with_waiter` returns only once it is out of line.
        unsafe { self.lock_with_waiter(waiter.as_ref(), policy) }
    }

    /// [`lock_with`](RawGil::lock_with) with the caller's `waiter`: one the caller made
    /// returning, or whose parker it set. Returns only once `waiter` is out of line.
    ///
    /// # Safety
    ///
    /// `waiter` is not queued, and is pinned (it stays in place until this returns).
    pub(crate) unsafe fn lock_with_waiter(
        &self,
        waiter: Pin<&Waiter<P>>,
        policy: &mut impl WaitPolicy<P>,
    ) -> Waited {
        // SAFETY: forwarded contract; if queued, `wait_with` returns only once it is out.
        match unsafe { self.enqueue(waiter) } {
            Enqueued::Acquired => Waited::Granted,
            Enqueued::Closed => Waited::Closed,
            Enqueued::Queued => {
                abort_on_unwind(|| policy.queued());
                // SAFETY: queued just above, by this thread.
                unsafe { self.wait_with(waiter, policy) }
            }
        }
    }

    /// Releases the lock, handing it to the longest waiter if there is one.
    ///
    /// Uncontended, this is one compare-and-swap.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock, and stops using what it protects.
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release pairs with the Acquire of the next owner's CAS in `try_lock` or of
        // `lock_queue`. Fails whenever anything but LOCKED is set: waiters, an editor, close.
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let state = self.lock_queue();
        debug_assert!(
            state & LOCKED != 0,
            "gil-core: unlock of a lock nobody owns"
        );
        // SAFETY: we hold the queue lock and (caller's contract) own the lock.
        unsafe { self.release_to_head(state) };
    }

    /// Hands the lock to the head waiter, or frees it if nobody waits; releases the queue lock,
    /// then wakes the new owner if it sleeps. `state` is the lock word as `lock_queue` returned
    /// it.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock and owns the lock.
    unsafe fn release_to_head(&self, state: u32) {
        // SAFETY: forwarded contract.
        match unsafe { self.grant_head() } {
            Some((unparker, now_empty)) => {
                // LOCKED stays set: it now belongs to the head waiter.
                self.unlock_queue(if now_empty { state & !QUEUED } else { state });
                wake::<P>(Some(unparker));
            }
            None => self.unlock_queue(state & !LOCKED),
        }
    }

    /// Puts `waiter` in line for the lock, or takes the lock at once if it is free.
    ///
    /// On [`Enqueued::Queued`], wait with [`Waiter::wait`] (or your own loop over
    /// [`Waiter::state`]) until it says [`WaitState::Granted`] or [`WaitState::Closed`], or take
    /// the waiter out with [`cancel`](RawGil::cancel).
    ///
    /// # Safety
    ///
    /// `waiter` is not queued (its state is not `Waiting`), and if this returns
    /// [`Enqueued::Queued`] it stays alive and pinned until its state reports granted or closed,
    /// or `cancel` returns. The calling thread does not own the lock.
    pub(crate) unsafe fn enqueue(&self, waiter: Pin<&Waiter<P>>) -> Enqueued {
        // SAFETY: forwarded contract.
        unsafe { self.enqueue_as(waiter, false) }
    }

    /// [`enqueue`](RawGil::enqueue), recording whether the waiter waits by polls (see
    /// [`wake_last_polled`](RawGil::wake_last_polled)).
    ///
    /// # Safety
    ///
    /// As for `enqueue`.
    unsafe fn enqueue_as(&self, waiter: Pin<&Waiter<P>>, polled: bool) -> Enqueued {
        let state = self.lock_queue();
        if state & SHUT != 0 && !waiter.is_returning() {
            self.unlock_queue(state);
            return Enqueued::Closed;
        }
        if state & LOCKED == 0 {
            // Free, so nobody is queued (QUEUED implies LOCKED): take it. The Acquire in
            // `lock_queue` already made the last owner's writes ours.
            self.unlock_queue(state | LOCKED);
            return Enqueued::Acquired;
        }
        // The queue lock (held) orders this store before anything a granter does with the node.
        waiter.word().store(AWAKE, Relaxed);
        // SAFETY: queue lock held; the waiter is being queued.
        unsafe { waiter.set_polled(polled) };
        // SAFETY: queue lock held; the waiter is alive, pinned and unqueued (caller's contract).
        self.queue.with_mut(|q| unsafe { (*q).push_back(&*waiter) });
        self.unlock_queue(state | QUEUED);
        Enqueued::Queued
    }

    /// Takes a queued `waiter` out of the line (on a timeout, say), unless the lock was handed
    /// to it first — then the caller owns the lock: a cancel never loses a grant.
    ///
    /// # Safety
    ///
    /// `waiter` was queued on this lock by the calling thread and the caller has not yet acted
    /// on a `Granted` or `Closed` state of it.
    pub(crate) unsafe fn cancel(&self, waiter: Pin<&Waiter<P>>) -> Cancel {
        let state = self.lock_queue();
        // Relaxed: every change of a queued waiter's word happens under the queue lock, whose
        // Acquire in `lock_queue` orders it (and the granting owner's writes) before us.
        let (outcome, state) = match waiter.word().load(Relaxed) {
            AWAKE | ASLEEP => {
                // SAFETY: queue lock held; the waiter is in this queue.
                let now_empty = self.queue.with_mut(|q| unsafe {
                    (*q).remove(&*waiter);
                    (*q).is_empty()
                });
                waiter.word().store(IDLE, Relaxed);
                (
                    Cancel::Removed,
                    if now_empty { state & !QUEUED } else { state },
                )
            }
            GRANTED => (Cancel::Granted, state),
            // SAFETY: queue lock held; the waiter is queued (offered) and this is its thread.
            OFFERED => (Cancel::Granted, unsafe { self.take_offer(waiter, state) }),
            CLOSED => (Cancel::Closed, state),
            _ => {
                debug_assert!(false, "gil-core: cancel of a waiter that is not queued");
                (Cancel::Removed, state)
            }
        };
        self.unlock_queue(state);
        outcome
    }

    /// One look for the lock by a waiter that must not block its thread (a future's). The
    /// first poll queues `waiter`, or takes the lock at once if it is free; a later poll claims
    /// the lock if it is offered (at once: a poll does not give the owner the grace of
    /// [`WaitPolicy::offered`], which would hold up its executor's thread). While the waiter
    /// waits, the poll has `policy` register what wakes it, marks it asleep and returns
    /// `Pending`: the grant (or close) wakes what was registered last.
    ///
    /// Returns `Ready` once the waiter is out of line: [`Waited::Granted`] (the calling thread
    /// owns the lock) or [`Waited::Closed`].
    ///
    /// # Safety
    ///
    /// - `waiter` is not queued at its first poll, is polled only on this lock, and is not
    ///   polled again after a `Ready`.
    /// - From its first poll until a poll returns `Ready` or [`cancel_poll`](RawGil::cancel_poll)
    ///   returns, `waiter` stays alive and pinned, whichever thread polls it next; this holds
    ///   too if a poll unwinds (from `policy`).
    /// - At its first poll the calling thread does not own the lock.
    pub unsafe fn poll_lock(
        &self,
        waiter: Pin<&Waiter<P>>,
        policy: &mut impl PollPolicy<P>,
    ) -> Poll<Waited> {
        loop {
            match waiter.state() {
                WaitState::Idle => {
                    // SAFETY: not queued, and pinned until out of line; the thread does not own
                    // the lock (caller's contract).
                    match unsafe { self.enqueue_as(waiter, true) } {
                        Enqueued::Acquired => return Poll::Ready(Waited::Granted),
                        Enqueued::Closed => return Poll::Ready(Waited::Closed),
                        Enqueued::Queued => policy.queued(),
                    }
                }
                WaitState::Offered => {
                    // SAFETY: queued on this lock by its poller, not yet seen granted or closed.
                    match unsafe { self.claim(waiter) } {
                        WaitState::Granted => return Poll::Ready(Waited::Granted),
                        WaitState::Closed => return Poll::Ready(Waited::Closed),
                        // The owner came back first: in line again.
                        _ => {}
                    }
                }
                WaitState::Granted => return Poll::Ready(Waited::Granted),
                WaitState::Closed => return Poll::Ready(Waited::Closed),
                WaitState::Waiting => {
                    // Registered before the mark, what wakes the task is the one the grant
                    // takes, whichever of the grant's swap and the mark comes first; a
                    // registration while already asleep is seen by the reread below.
                    policy.register(waiter);
                    if mark_asleep(waiter.word()) && waiter.state() == WaitState::Waiting {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Takes a polled `waiter` out of line (its future is dropped), unless the lock was handed
    /// to it first: [`Waited::Granted`], the calling thread owns the lock and must pass it on.
    /// [`Waited::GaveUp`]: out of line, or never queued; [`Waited::Closed`]: closed first.
    ///
    /// # Safety
    ///
    /// `waiter` was polled only on this lock, and none of its polls returned `Ready`.
    pub unsafe fn cancel_poll(&self, waiter: Pin<&Waiter<P>>) -> Waited {
        if waiter.state() == WaitState::Idle {
            // Never queued (its first poll unwound before `enqueue`).
            return Waited::GaveUp;
        }
        // SAFETY: queued on this lock by its poller, not yet seen granted or closed.
        match unsafe { self.cancel(waiter) } {
            Cancel::Removed => Waited::GaveUp,
            Cancel::Granted if cfg!(bite = "cancelled-poll-loses-grant") => Waited::GaveUp,
            Cancel::Granted => Waited::Granted,
            Cancel::Closed => Waited::Closed,
        }
    }

    /// Waits on a queued `waiter` until it is granted or closed, claiming the lock when it is
    /// offered (see [`unlock_away`](RawGil::unlock_away)). Returns [`WaitState::Granted`] (the
    /// caller owns the lock) or [`WaitState::Closed`].
    ///
    /// # Safety
    ///
    /// `waiter` was queued on this lock by the calling thread, which has not yet acted on a
    /// `Granted` or `Closed` state of it.
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    pub(crate) unsafe fn wait(&self, waiter: Pin<&Waiter<P>>) -> WaitState {
        // SAFETY: forwarded contract.
        match unsafe { self.wait_with(waiter, &mut ()) } {
            Waited::Granted => WaitState::Granted,
            Waited::Closed | Waited::GaveUp => WaitState::Closed,
        }
    }

    /// Waits on a queued `waiter` as `policy` says (see [`WaitPolicy`]) until it is granted
    /// ([`Waited::Granted`]: the caller owns the lock), closed, or the policy gives up (then
    /// the waiter is taken out of line, unless the lock was handed to it first). Claims the
    /// lock when it is offered (see [`unlock_away`](RawGil::unlock_away)). Returns only once
    /// `waiter` is out of line.
    ///
    /// # Safety
    ///
    /// As for [`wait`](RawGil::wait).
    unsafe fn wait_with(&self, waiter: Pin<&Waiter<P>>, policy: &mut impl WaitPolicy<P>) -> Waited {
        abort_on_unwind(|| {
            // SAFETY: forwarded contract.
            unsafe { self.wait_with_policy(waiter, policy) }
        })
    }

    /// The body of `wait_with`, whose policy must not unwind.
    ///
    /// # Safety
    ///
    /// As for [`wait`](RawGil::wait).
    unsafe fn wait_with_policy(
        &self,
        waiter: Pin<&Waiter<P>>,
        policy: &mut impl WaitPolicy<P>,
    ) -> Waited {
        let mut spinning = true;
        loop {
            match waiter.state() {
                WaitState::Granted => return Waited::Granted,
                WaitState::Closed => return Waited::Closed,
                WaitState::Idle => {
                    debug_assert!(false, "gil-core: a wait on a waiter that is not queued");
                    return Waited::Closed;
                }
                WaitState::Offered => {
                    policy.offered(waiter);
                    // SAFETY: forwarded contract; not yet seen granted or closed.
                    match unsafe { self.claim(waiter) } {
                        WaitState::Granted => return Waited::Granted,
                        WaitState::Closed => return Waited::Closed,
                        // The owner came back first: in line again.
                        _ => continue,
                    }
                }
                WaitState::Waiting => {}
            }
            if policy.give_up() {
                // SAFETY: forwarded contract; not yet seen granted or closed.
                return match unsafe { self.cancel(waiter) } {
                    Cancel::Removed => Waited::GaveUp,
                    Cancel::Granted if cfg!(bite = "give-up-loses-grant") => Waited::GaveUp,
                    Cancel::Granted => Waited::Granted,
                    Cancel::Closed => Waited::Closed,
                };
            }
            if spinning && policy.spin() {
                continue;
            }
            spinning = false;
            policy.park(waiter);
        }
    }

    /// The owner leaves for a blocking region, and lets the lock go *lazily*: with nobody
    /// waiting it is released (one compare-and-swap, as [`unlock`](RawGil::unlock)); otherwise
    /// it stays locked and is *offered* to the head waiter, which is woken and takes it with
    /// [`claim`](RawGil::claim) — unless the owner comes back first and
    /// [`reclaim`](RawGil::reclaim)s it. A region that ends before the head waiter is even
    /// running so costs the owner nothing of its turn, and a region that lasts hands the lock
    /// on as `unlock` would, one wake-up later at most.
    ///
    /// While the owner is away, nobody but the head waiter can take the lock: the FIFO order
    /// holds.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock, and stops using what it protects until it has taken it
    /// back, with [`reclaim`](RawGil::reclaim) or, if that fails, [`relock`](RawGil::relock).
    ///
    /// ```
    /// use gil_core::RawGil;
    /// use gil_core::model::Steps;
    ///
    /// let gil: RawGil = RawGil::new();
    /// gil.lock().unwrap();
    /// // SAFETY: this thread owns the lock.
    /// let away = unsafe { gil.unlock_away() };
    /// // ... blocking work; nobody waited, so the lock was simply released ...
    /// if !gil.reclaim(away) {
    ///     gil.relock();
    /// }
    /// assert!(gil.is_locked());
    /// # unsafe { gil.unlock() };
    /// ```
    pub(crate) unsafe fn unlock_away(&self) -> Absence {
        // Release pairs with the next owner's Acquire, as in `unlock`.
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_ok()
        {
            return Absence { offered: None };
        }
        let state = self.lock_queue();
        debug_assert!(
            state & LOCKED != 0 && state & AWAY == 0,
            "gil-core: unlock_away of a lock this thread does not own"
        );
        // SAFETY: the queue lock is held; a queued node is alive.
        let head = self.queue.with_mut(|q| unsafe { (*q).head() });
        // Nobody waits (the compare-and-swap above failed on another bit: `SHUT`, or the
        // `QUEUE_LOCKED` of an edit that has ended since): the lock is freed.
        let Some(head) = head else {
            // SAFETY: the queue lock is held and we own the lock (caller's contract).
            unsafe { self.release_to_head(state) };
            return Absence { offered: None };
        };
        // SAFETY: `head` is queued, hence alive while we hold the queue lock.
        // Relaxed: the head acts on it only through `claim`, under the queue lock, whose Acquire
        // pairs with our `unlock_queue` Release (which also publishes our writes).
        let unparker = unsafe { Waiter::tell(head, OFFERED, Relaxed) };
        // SAFETY: the queue lock is held.
        let absence = self.queue.with_mut(|q| unsafe {
            if !cfg!(bite = "absences-not-numbered") {
                (*q).absences += 1;
            }
            if cfg!(bite = "absences-wrap-at-32-bits") {
                (*q).absences &= u64::from(u32::MAX);
            }
            (*q).absences
        });
        self.unlock_queue(state | AWAY);
        wake::<P>(Some(unparker));
        Absence {
            offered: Some(absence),
        }
    }

    /// A blocking region's start: a loan asked for on the breaker goes back to its lender
    /// ([`give_back`](RawGil::give_back)); otherwise the lock goes lazily
    /// (`unlock_away`). Returns what
    /// [`take_back_with`](RawGil::take_back_with) needs at the region's end.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock (on a loan or not), and stops using what it protects
    /// until it has it back.
    pub unsafe fn let_go(&self) -> Absence {
        if !cfg!(bite = "let-go-unlocks-a-loan") && self.breaker.loan_out() {
            // SAFETY: we hold the lock on a loan asked for (it is out, and we own it).
            unsafe { self.give_back() };
            return Absence { offered: None };
        }
        // SAFETY: we own the lock, not on a loan asked for (caller's contract).
        unsafe { self.unlock_away() }
    }

    /// A blocking region's end: takes the lock back, in the first of these ways that works.
    ///
    /// 1. `reclaim` it, if nobody took the offer ([`Back::Reclaimed`]).
    /// 2. Otherwise `ret` says whether the thread may go ahead of the line
    ///    ([`Return::ahead`]); then, if the lock is free, it takes it ([`Back::Took`]).
    /// 3. Going ahead, it asks for a loan on the breaker (`borrow_with`,
    ///    [`Back::BreakerLoan`]).
    /// 4. Otherwise it waits in line behind everybody, as a returning waiter
    ///    ([`Back::Granted`]).
    ///
    /// Succeeds after [`close`](RawGil::close) too: the thread's waiters are returning ones.
    ///
    /// # Safety
    ///
    /// The calling thread let the lock go with [`let_go`](RawGil::let_go) or
    /// `unlock_away`, `away` is what that returned, and the thread has
    /// not taken the lock since.
    pub unsafe fn take_back_with<R: Return<P>>(&self, away: Absence, ret: &mut R) -> Back {
        if self.reclaim(away) {
            return Back::Reclaimed;
        }
        // From here the caller has let the lock go and must get it back: `ret` must not unwind.
        let mut ask = abort_on_unwind(|| ret.ahead());
        // A look before the compare-and-swap: a failed one would still take the lock's line
        // from the holder, whose next checkpoint reads it.
        if !self.is_locked() && self.try_lock().is_ok() {
            return Back::Took;
        }
        if let Some(ask) = ask.as_mut() {
            if self.borrow_with(ask) {
                return Back::BreakerLoan;
            }
        }
        let node = pin!(Waiter::<P>::returning());
        let mut wait = abort_on_unwind(|| ret.in_line(ask));
        let got = if cfg!(bite = "region-skips-take-back") {
            Waited::Granted
        } else {
            // SAFETY: the node is pinned here and not queued, and `lock_with_waiter` returns
            // only once it is out of line.
            unsafe { self.lock_with_waiter(node.as_ref(), &mut wait) }
        };
        debug_assert_ne!(got, Waited::Closed, "a returning waiter is never closed");
        abort_on_unwind(|| ret.granted(wait));
        Back::Granted
    }

    /// The owner that went away with [`unlock_away`](RawGil::unlock_away) takes the lock back
    /// if nobody claimed it meanwhile; returns whether it did. If not (nobody was offered it,
    /// or the head waiter claimed it), take the lock with [`relock`](RawGil::relock) or a
    /// returning [`Waiter`].
    ///
    /// Absences are numbered with 64 bits: a reclaim never mistakes another owner's absence
    /// for its own.
    pub(crate) fn reclaim(&self, away: Absence) -> bool {
        let Some(absence) = away.offered else {
            return false;
        };
        // A stale "not away" only sends us the slow way round; AWAY is set only by an owner.
        if self.state.load(Relaxed) & AWAY == 0 {
            return false;
        }
        let state = self.lock_queue();
        // Absence, and still the absence we started: every offer numbers a new one, so an AWAY
        // left by a later owner is not ours (the count of handoffs cannot tell: `close` can
        // free the lock with nobody left to offer it to, and a returning thread can then take
        // it and go away in turn without any handoff). Read under the queue lock.
        // SAFETY: the queue lock is held.
        let current = self.queue.with_mut(|q| unsafe { (*q).absences });
        let ours = current == absence || cfg!(bite = "reclaim-ignores-claim");
        if state & AWAY == 0 || !ours {
            self.unlock_queue(state);
            return false;
        }
        // SAFETY: queue lock held. AWAY implies the head is the one offered.
        self.queue.with_mut(|q| unsafe {
            if let Some(head) = (*q).head() {
                debug_assert_eq!((*head).word().load(Relaxed), OFFERED);
                // It goes back to waiting; if it is awake and claiming, its claim finds this.
                // Release: as in `enqueue`'s taking of an offer back.
                (*head).word().store(AWAKE, Release);
            }
        });
        self.unlock_queue(state & !AWAY);
        true
    }

    /// A waiter that saw [`WaitState::Offered`] takes the lock. Returns
    /// [`WaitState::Granted`] (the caller owns the lock), [`WaitState::Waiting`] (the owner
    /// came back first: wait again), or [`WaitState::Closed`].
    ///
    /// # Safety
    ///
    /// As for [`wait`](RawGil::wait).
    pub(crate) unsafe fn claim(&self, waiter: Pin<&Waiter<P>>) -> WaitState {
        let state = self.lock_queue();
        // Relaxed: changed only under the queue lock, whose Acquire orders it.
        let (seen, state) = match waiter.word().load(Relaxed) {
            // SAFETY: queue lock held; offered, hence queued; this is the waiter's thread.
            OFFERED => (WaitState::Granted, unsafe {
                self.take_offer(waiter, state)
            }),
            GRANTED => (WaitState::Granted, state),
            CLOSED => (WaitState::Closed, state),
            _ => (WaitState::Waiting, state),
        };
        self.unlock_queue(state);
        seen
    }

    /// Makes the offered `waiter` the owner: takes it off the queue, counts the handoff, and
    /// ends the owner's absence. Returns the lock word to publish.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock and is `waiter`'s thread; `waiter` is `OFFERED`.
    unsafe fn take_offer(&self, waiter: Pin<&Waiter<P>>, state: u32) -> u32 {
        debug_assert!(state & AWAY != 0);
        // SAFETY: queue lock held (caller's contract).
        let head = self.queue.with_mut(|q| unsafe { (*q).head() });
        debug_assert_eq!(
            head,
            Some(&*waiter as *const _),
            "an offered waiter is the head"
        );
        // The offered waiter is the head, so this is an ordinary grant to it; it is running (this
        // is its thread), so the wake-up is not needed. Its unparker is dropped here, under the
        // queue lock: the node is this thread's and alive, so whatever the unparker shares with
        // it (a task's waker slot) is not dropped with it.
        // SAFETY: queue lock held; the lock is ours to pass on while its owner is away.
        let now_empty = unsafe { self.grant_head() }.is_some_and(|(_, empty)| empty);
        let state = state & !AWAY;
        if now_empty { state & !QUEUED } else { state }
    }

    /// If anybody waits, hands the lock to the longest waiter and queues `waiter` behind
    /// everybody already in line; returns `true`, and the caller must then wait on `waiter` to
    /// get the lock back. With nobody waiting, returns `false` and the caller keeps the lock.
    ///
    /// The yielding thread can never retake the lock before the head waiter got it.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock. `waiter` is not queued, and if this returns `true` it
    /// stays alive and pinned until its state reports granted (a returning waiter is never
    /// closed; a fresh one may be).
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    pub(crate) unsafe fn requeue(&self, waiter: Pin<&Waiter<P>>) -> bool {
        // A stale "nobody queued" only means we step aside a little later. A waiter that asked
        // for it is seen: the Acquire in `Breaker::take` ordered its enqueue before this load.
        if self.state.load(Relaxed) & QUEUED == 0 {
            return false;
        }
        let state = self.lock_queue();
        // SAFETY: we hold the queue lock and (caller's contract) own the lock.
        let Some((unparker, _)) = (unsafe { self.grant_head() }) else {
            self.unlock_queue(state);
            return false;
        };
        waiter.word().store(AWAKE, Relaxed);
        // SAFETY: queue lock held; the waiter is alive, pinned and unqueued (caller's contract).
        self.queue.with_mut(|q| unsafe { (*q).push_back(&*waiter) });
        // LOCKED now belongs to the old head; QUEUED stays, for `waiter` is in line.
        self.unlock_queue(state | QUEUED);
        wake::<P>(Some(unparker));
        true
    }

    /// If anybody waits, hands them the lock and waits with `P` to get it back (behind everybody
    /// who was in line); on a loan asked for, gives it back first. Returns whether it handed
    /// off. [`hand_over_with`](RawGil::hand_over_with) with the plain caller `()`.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock (on a loan or not).
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    pub(crate) unsafe fn yield_now(&self) -> bool {
        // SAFETY: we own the lock (caller's contract).
        unsafe { self.hand_over_with(&mut ()) }
    }

    /// [`requeue`](RawGil::requeue) with `waiter`, then, if it handed the lock on, waits as
    /// `policy` says until the lock is back. Returns whether it handed over; either way the
    /// caller owns the lock on return.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock. `waiter` is returning ([`Waiter::returning`]), not
    /// queued, and pinned (it stays in place until this returns). `policy` gives up only as a
    /// returning wait may ([`WaitPolicy::give_up`]): a thread that handed its lock on must get
    /// it back.
    unsafe fn yield_with(&self, waiter: Pin<&Waiter<P>>, policy: &mut impl WaitPolicy<P>) -> bool {
        debug_assert!(waiter.is_returning());
        // SAFETY: forwarded contract.
        if !unsafe { self.requeue(waiter) } {
            return false;
        }
        abort_on_unwind(|| policy.queued());
        let back = if cfg!(bite = "yield-without-waiting") {
            Waited::Granted
        } else {
            // SAFETY: queued by `requeue`, by this thread.
            unsafe { self.wait_with(waiter, policy) }
        };
        debug_assert_ne!(back, Waited::Closed, "a returning waiter is never closed");
        true
    }

    /// The owner's check for requests, to call often from its hot loop.
    ///
    /// With nothing pending this is one relaxed load and a branch, inlined. Otherwise it is
    /// [`checkpoint_with`](RawGil::checkpoint_with) with the plain caller `()`: it answers a
    /// drop request (hands the lock to the longest waiter and waits to get it back behind
    /// everybody in line, or just clears the request when nobody waits), or lends the lock to a
    /// thread that asked for a loan, and returns once it owns the lock again. Returns the
    /// breaker flags left for the caller to act on (the runtime's and gil-std's, see
    /// [`Breaker`]); 0 when none are.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock (on a loan or not).
    #[inline]
    pub unsafe fn checkpoint(&self) -> u32 {
        if self.breaker.pending() == 0 {
            return 0;
        }
        // SAFETY: we own the lock (caller's contract).
        unsafe { self.checkpoint_with(&mut ()) }
    }

    /// Hands the lock on and waits to get it back behind everybody in line, as a checkpoint
    /// answers a drop request: on a loan asked for on the breaker, gives the loan back and
    /// waits in line ([`Step::GiveBack`]); otherwise, if anybody waits, yields
    /// ([`Step::HandOver`]). Returns whether another thread held meanwhile; `false` when nobody
    /// waited (then `handover` saw nothing, or a `Yield` that nobody took). Either way the
    /// caller owns the lock on return.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock (on a loan or not). `handover`'s policies give up only
    /// as a returning wait may ([`WaitPolicy::give_up`]).
    pub unsafe fn hand_over_with<H: Handover<P>>(&self, handover: &mut H) -> bool {
        if !cfg!(bite = "borrower-keeps-drop-request") && self.breaker.loan_out() {
            let mut wait = handover.letting_go(Step::GiveBack);
            // SAFETY: we hold the lock on a loan asked for (it is out, and we own it).
            unsafe { self.give_back() };
            let node = pin!(Waiter::returning());
            // SAFETY: the node is pinned here and not queued; `lock_with_waiter` returns only
            // once it is out of line. We no longer own the lock (given back).
            let back = unsafe { self.lock_with_waiter(node.as_ref(), &mut wait) };
            debug_assert_ne!(back, Waited::Closed, "a returning waiter is never closed");
            handover.back(Step::GiveBack, wait, true);
            return true;
        }
        if !self.has_waiters() {
            return false;
        }
        let mut wait = handover.letting_go(Step::HandOver);
        let node = pin!(Waiter::returning());
        // SAFETY: we own the lock (caller's contract); the node is returning, pinned here and
        // not queued.
        let handed = unsafe { self.yield_with(node.as_ref(), &mut wait) };
        handover.back(Step::HandOver, wait, handed);
        handed
    }

    /// The checkpoint's slow path, for a caller with bookkeeping of its own around each step
    /// that lets others hold (`handover`): the one decision of what a holder does with the
    /// lock at a checkpoint, in this order.
    ///
    /// 1. A **drop request** is taken (and reported, [`Handover::drop_requested`]). A holder on
    ///    a loan leaves it set for its lender's slice. On a loan asked for on the breaker, the
    ///    holder gives the loan back and waits in line ([`Step::GiveBack`]); otherwise, if
    ///    anybody waits, it yields ([`Step::HandOver`]).
    /// 2. Unless it handed the lock over just now, or is itself on a loan (a loan does not lend
    ///    on), the holder lends a **loan asked for on the breaker** ([`Step::LendOnBreaker`]).
    ///
    /// Returns once the caller owns the lock again, with the breaker flags left for it to act
    /// on, as [`checkpoint`](RawGil::checkpoint) does. The waits are `handover`'s policies;
    /// they give up only as a returning wait may ([`WaitPolicy::give_up`]): a thread that let
    /// its lock go must get it back.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock (on a loan or not).
    #[cold]
    pub unsafe fn checkpoint_with<H: Handover<P>>(&self, handover: &mut H) -> u32 {
        let pending = self.breaker.pending();
        // Whether the caller holds a loan. Acquire: the lender's writes.
        let borrowing = self.breaker.loan_out();
        // Not a write to the breaker's line when there is nothing to take (a loan asked for:
        // the asker is reading that line).
        let handed = if pending & Breaker::DROP_REQUEST != 0
            && self.breaker.take(Breaker::DROP_REQUEST) != 0
        {
            handover.drop_requested();
            if borrowing && !cfg!(bite = "drop-not-passed-on") {
                // The request is for the lender's slice, which this loan is part of: leave it
                // for the lender to answer once the loan is back.
                self.breaker.set(Breaker::DROP_REQUEST);
            }
            // SAFETY: we own the lock (caller's contract).
            unsafe { self.hand_over_with(handover) }
        } else {
            false
        };
        // Back from a hand-over at the end of the line, the holder lends nothing: a loan asked
        // for meanwhile is lent at the next checkpoint.
        if !handed && !borrowing && pending & Breaker::LOAN_ASKED != 0 {
            let mut wait = handover.letting_go(Step::LendOnBreaker);
            // SAFETY: we own the lock, not on loan (`borrowing` is false).
            let lent = unsafe { self.lend_asked_with(&mut wait) };
            handover.back(Step::LendOnBreaker, wait, lent);
        }
        self.breaker.pending() & !(Breaker::DROP_REQUEST | Breaker::LOAN_ASKED)
    }

    /// Asks the holder to *lend* this thread the lock at its next checkpoint: the fast way back
    /// for a thread that may go ahead of the line (one back from a blocking region, say).
    /// Returns `false`, having asked nothing, if the lock is not held, its owner is away
    /// ([`unlock_away`](RawGil::unlock_away)), or another thread's loan is asked or under way;
    /// take the lock another way then.
    ///
    /// After `true`, poll [`loan`](RawGil::loan) until it says [`Loan::Lent`] (this thread
    /// holds the lock on loan), or [`withdraw_loan`](RawGil::withdraw_loan) the ask — at the
    /// latest once `loan` says [`Loan::Unheld`], for then nobody may be left to answer it.
    ///
    /// A loan involves only the asker, the holder and the lock's cache line: the holder's
    /// checkpoint grants it with one compare-and-swap on the breaker word and waits there for
    /// it back; the borrower gives it back with one atomic AND. Nobody queues. Every loan
    /// bypasses the line: who may ask, and how often, is the caller's policy (gil-std's
    /// credit).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// use gil_core::RawGil;
    /// use gil_core::model::{Loan, Steps};
    ///
    /// let gil: RawGil = RawGil::new();
    /// let done = AtomicBool::new(false);
    /// gil.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         assert!(gil.ask_loan());
    ///         while gil.loan() == Loan::Asked {
    ///             std::hint::spin_loop();
    ///         }
    ///         assert_eq!(gil.loan(), Loan::Lent);
    ///         // SAFETY: this thread holds the lock on loan.
    ///         unsafe { gil.give_back() };
    ///         done.store(true, Relaxed);
    ///     });
    ///     // The holder's checkpoint lends the lock, and returns once it is back.
    ///     while !done.load(Relaxed) {
    ///         // SAFETY: this thread owns the lock.
    ///         unsafe { gil.checkpoint() };
    ///     }
    /// });
    /// // SAFETY: this thread owns the lock again.
    /// unsafe { gil.unlock() };
    /// ```
    pub(crate) fn ask_loan(&self) -> bool {
        // A stale look only means an ask that `loan` soon says to withdraw, or none asked.
        let state = self.state.load(Relaxed);
        state & (LOCKED | AWAY) == LOCKED && self.breaker.ask()
    }

    /// Where this thread's ask ([`ask_loan`](RawGil::ask_loan)) stands. [`Loan::Lent`] makes
    /// the calling thread the holder, on loan, with everything the lender wrote visible to it.
    #[inline]
    pub(crate) fn loan(&self) -> Loan {
        if self.breaker.loan_out() {
            return Loan::Lent;
        }
        // Relaxed: a hint to withdraw; `withdraw_loan` decides.
        match self.state.load(Relaxed) & (LOCKED | AWAY) {
            LOCKED => Loan::Asked,
            _ => Loan::Unheld,
        }
    }

    /// Withdraws this thread's ask. Returns `true` if it was withdrawn, `false` if the lock was
    /// lent first: then the caller holds it on loan.
    ///
    /// # Safety
    ///
    /// The calling thread asked ([`ask_loan`](RawGil::ask_loan) returned `true`) and has not
    /// yet acted on a [`Loan::Lent`] or withdrawn.
    pub(crate) unsafe fn withdraw_loan(&self) -> bool {
        self.breaker.withdraw()
    }

    /// Lends the lock to the thread that asked ([`ask_loan`](RawGil::ask_loan)), if one has.
    /// Returns whether it lent; then the caller no longer holds the lock and must wait for it
    /// back ([`wait_loan_back`](RawGil::wait_loan_back), or polling
    /// [`is_lent`](RawGil::is_lent)) before it uses what the lock protects.
    /// [`checkpoint`](RawGil::checkpoint) does this, and the waiting.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock, and not on loan.
    pub(crate) unsafe fn lend_asked(&self) -> bool {
        self.breaker.grant()
    }

    /// Whether the lock is lent now ([`lend_asked`](RawGil::lend_asked)): the borrower holds it
    /// and the lender waits for it. A `false` read by the lender makes everything the borrower
    /// wrote visible to it.
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    #[inline]
    pub(crate) fn is_lent(&self) -> bool {
        self.breaker.loan_out()
    }

    /// The lender waits, sleeping with `P` ([`Park::park_word`]), until the borrower gives the
    /// lock back; the caller then owns it again.
    ///
    /// # Safety
    ///
    /// The calling thread lent the lock ([`lend_asked`](RawGil::lend_asked) returned `true`).
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    pub(crate) unsafe fn wait_loan_back(&self) {
        // SAFETY: forwarded contract.
        unsafe { self.wait_loan_back_with(&mut ()) }
    }

    /// As [`wait_loan_back`](RawGil::wait_loan_back), passing the time as `policy` says: its
    /// [`spin`](WaitPolicy::spin) rounds first, then asleep with `P`
    /// ([`Park::park_word`]). [`queued`](WaitPolicy::queued) is not called (see
    /// [`lend_asked_with`](RawGil::lend_asked_with)), nor is [`give_up`](WaitPolicy::give_up):
    /// a lender waits until the lock is back.
    ///
    /// # Safety
    ///
    /// As for [`wait_loan_back`](RawGil::wait_loan_back).
    unsafe fn wait_loan_back_with(&self, policy: &mut impl WaitPolicy<P>) {
        abort_on_unwind(|| {
            let mut spinning = true;
            // The Acquire in `loan_out` takes the borrower's writes once it is back.
            while !cfg!(bite = "lender-does-not-wait") && self.breaker.loan_out() {
                if spinning && policy.spin() {
                    continue;
                }
                spinning = false;
                // Marks the lender asleep, so that the give-back wakes it; `None`: already
                // back (the loop's look says so, with Acquire).
                if let Some(asleep) = self.breaker.lender_sleeps() {
                    P::park_word(self.breaker.word(), asleep);
                }
            }
        });
    }

    /// Lends the lock to the thread that asked ([`lend_asked`](RawGil::lend_asked)), if one
    /// has, and then waits for it back as `policy` says
    /// ([`wait_loan_back_with`](RawGil::wait_loan_back_with)), calling its
    /// [`queued`](WaitPolicy::queued) once lent. Returns whether it lent; either way the
    /// caller owns the lock on return.
    ///
    /// # Safety
    ///
    /// As for [`lend_asked`](RawGil::lend_asked).
    unsafe fn lend_asked_with(&self, policy: &mut impl WaitPolicy<P>) -> bool {
        // SAFETY: forwarded contract.
        if !unsafe { self.lend_asked() } {
            return false;
        }
        abort_on_unwind(|| policy.queued());
        // SAFETY: lent just above.
        unsafe { self.wait_loan_back_with(policy) };
        true
    }

    /// Asks for a loan ([`ask_loan`](RawGil::ask_loan)) and waits for the answer awake, for as
    /// long as `policy` [spins](WaitPolicy::spin) (it is not asked to park: nobody would wake
    /// it), then withdraws the ask if it is still unanswered. Returns whether the calling thread
    /// now holds the lock on loan: then it lets go only with [`give_back`](RawGil::give_back).
    /// `false`: nothing asked, or the ask withdrawn; take the lock another way.
    /// [`queued`](WaitPolicy::queued) is called once the ask stands.
    ///
    /// The calling thread must not own the lock: the holder it asks would be itself.
    pub(crate) fn borrow_with(&self, policy: &mut impl WaitPolicy<P>) -> bool {
        if !self.ask_loan() {
            return false;
        }
        abort_on_unwind(|| {
            policy.queued();
            while self.loan() == Loan::Asked && policy.spin() {}
        });
        // SAFETY: asked just above, and this is the only place that acts on the answer.
        self.loan() == Loan::Lent
            || (!cfg!(bite = "borrow-keeps-its-ask") && !unsafe { self.withdraw_loan() })
    }

    /// The borrower gives the lock back to the lender (waking it if it sleeps): the loan ends.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock on loan (`loan` said
    /// `Loan::Lent`, or `withdraw_loan` returned `false`), and stops
    /// using what it protects. While on loan it lets go only this way (or through a composite
    /// that gives the loan back: `checkpoint`, `hand_over_with`, `yield_now`): not with
    /// `unlock`, `unlock_away` or `requeue`.
    #[inline]
    pub unsafe fn give_back(&self) {
        if self.breaker.give_back() {
            P::unpark_word(self.breaker.word());
        }
    }

    /// Wakes the last waiter in line that waits by polls ([`poll_lock`](RawGil::poll_lock)), as
    /// a spurious wake-up would: its next poll finds it still waiting and registers again, and
    /// sees all the caller wrote before the call. Returns whether there was one.
    ///
    /// For a runtime that has one of its waiting tasks do some work on the lock's behalf (a
    /// `Gil`'s tasks have one of them time the holder's slice): when that one leaves the line,
    /// this hands the work to another.
    ///
    /// ```
    /// use gil_core::{RawGil, SpinPark};
    ///
    /// let gil = RawGil::<SpinPark>::new();
    /// assert!(!gil.wake_last_polled(), "nobody in line");
    /// ```
    pub fn wake_last_polled(&self) -> bool {
        let state = self.lock_queue();
        // SAFETY: queue lock held; a queued node is alive until its state changes.
        let wakeup = self.queue.with_mut(|q| unsafe {
            // Relaxed: a queued waiter's word changes under the queue lock (held), but for its
            // own mark from AWAKE to ASLEEP, which the swap below cannot miss. An offered
            // waiter is awake already, and keeps its offer.
            let last = (*q).find_last(|w| {
                (w.is_polled() || cfg!(bite = "a-thread-woken-to-watch"))
                    && matches!(w.word().load(Relaxed), AWAKE | ASLEEP)
            })?;
            // Release pairs with the Acquire of the waiter's reread of its word in `poll_lock`
            // after its mark: the caller's writes before this call are visible to the
            // waiter's next look, whether the swap wakes it or its mark comes after the swap
            // (and so reads from it).
            Some(Waiter::tell(last, AWAKE, Release))
        });
        self.unlock_queue(state);
        let picked = wakeup.is_some();
        if !cfg!(bite = "a-late-waker-is-not-woken") {
            wake::<P>(wakeup);
        }
        picked
    }

    /// Asks the owner to hand the lock on at its next checkpoint. Lock-free: callable from any
    /// thread, with or without the lock, or from an interrupt handler.
    #[inline]
    pub fn request_drop(&self) {
        self.breaker.set(Breaker::DROP_REQUEST);
    }

    /// The breaker word, for setting and taking the other flags.
    #[inline]
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Closes the lock: every fresh waiter is taken out of line and told [`WaitState::Closed`],
    /// and every later [`lock`](RawGil::lock) or [`try_lock`](RawGil::try_lock) fails.
    /// The owner, if any, goes on normally; threads coming back to the lock (yields,
    /// `relock`) still get it in turn. Idempotent.
    pub fn close(&self) {
        let mut state = self.lock_queue() | SHUT;
        loop {
            // SAFETY: queue lock held.
            let fresh = self
                .queue
                .with_mut(|q| unsafe { (*q).find(|w| !w.is_returning()) });
            let Some(fresh) = fresh else {
                // SAFETY: queue lock held.
                let empty = self.queue.with_mut(|q| unsafe { (*q).is_empty() });
                self.unlock_queue(if empty { state & !QUEUED } else { state });
                return;
            };
            // SAFETY: queue lock held; `fresh` is queued, hence alive until its state changes.
            let (unparker, now_empty, reoffer) = self.queue.with_mut(|q| unsafe {
                (*q).remove(fresh);
                let w = &*fresh;
                // Relaxed: an offer is made under the queue lock (held); the waiter's own change
                // (to ASLEEP) is not one.
                let was_offered = w.word().load(Relaxed) == OFFERED;
                // Release pairs with the Acquire in `Waiter::state`. Last touch of the node.
                let unparker = Waiter::tell(fresh, CLOSED, Release);
                // The owner is away and this was the one offered the lock: offer it to the new
                // head, so that nobody waits on an owner that may be away for long. Relaxed, as
                // in `unlock_away`.
                let reoffer = match (*q).head() {
                    Some(head) if was_offered => Some(Waiter::tell(head, OFFERED, Relaxed)),
                    _ => None,
                };
                (unparker, (*q).is_empty(), reoffer)
            });
            if now_empty {
                // Nobody left to offer it to: if the owner is away, the lock is free now, and
                // the owner's `reclaim` fails and it relocks (a returning acquirer).
                state &= !QUEUED;
                if state & AWAY != 0 {
                    state &= !(AWAY | LOCKED);
                }
            }
            self.unlock_queue(state);
            // Wake outside the queue lock, then go round for the next one.
            wake::<P>(Some(unparker));
            wake::<P>(reoffer);
            state = self.lock_queue();
        }
    }

    /// Whether some thread owns the lock. A snapshot: it may have changed by the time you look.
    pub fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }

    /// Whether threads are queued. A snapshot.
    pub fn has_waiters(&self) -> bool {
        self.state.load(Relaxed) & QUEUED != 0
    }

    /// Whether [`close`](RawGil::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Relaxed) & SHUT != 0
    }

    /// How many times the lock has been handed from one thread to a waiting one (wrapping).
    /// A waiter that sees this unchanged over a while knows nobody switched in between.
    pub fn switches(&self) -> u32 {
        self.switches.load(Relaxed)
    }

    /// Takes the queue lock and returns the lock word as it now is (`QUEUE_LOCKED` set).
    #[inline]
    fn lock_queue(&self) -> u32 {
        let mut spin = SpinWait::new();
        loop {
            // Acquire pairs with the Release store in `unlock_queue`: the queue, the waiters'
            // words and the owner's data as the last editor left them.
            let state = self.state.fetch_or(QUEUE_LOCKED, Acquire);
            if state & QUEUE_LOCKED == 0 {
                return state | QUEUE_LOCKED;
            }
            // Wait without writing, so the editor's cache line is left alone.
            while self.state.load(Relaxed) & QUEUE_LOCKED != 0 {
                spin.spin();
            }
        }
    }

    /// Publishes `state` (with `QUEUE_LOCKED` cleared) and so releases the queue lock.
    #[inline]
    fn unlock_queue(&self, state: u32) {
        // While we hold the queue lock nobody else changes the word, so a plain store would do
        // in the memory model. We swap instead because loom 0.7 lets a plain store slip between
        // the read and the write of another thread's `fetch_or` (tokio-rs/loom#254), which
        // would have the checker explore executions no machine can produce. Slow path only.
        // Release pairs with the Acquire in `lock_queue`, `try_lock` and `unlock`'s successor.
        self.state.swap(state & !QUEUE_LOCKED, Release);
    }

    /// Takes the head waiter off the queue and makes it the owner. Returns what wakes it (if it
    /// sleeps) and whether the queue is now empty, or `None` if nobody waits.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock and owns the lock (which passes to the head).
    unsafe fn grant_head(&self) -> Option<(Wakeup<P>, bool)> {
        // SAFETY: queue lock held (caller's contract).
        self.queue.with_mut(|q| unsafe {
            let head = (*q).pop_front()?;
            // Only ever written under the queue lock: no read-modify-write needed.
            self.switches
                .store(self.switches.load(Relaxed).wrapping_add(1), Relaxed);
            // Release pairs with the Acquire in `Waiter::state`: all the old owner wrote under
            // the lock becomes the new owner's. Our last touch of the node: once it sees this,
            // its thread may return and free it.
            let unparker = Waiter::tell(head, GRANTED, Release);
            Some((unparker, (*q).is_empty()))
        })
    }
}

/// Wakes a waiter that [`Waiter::tell`] found asleep, and drops the unparker of one that was
/// awake. Called once the queue lock is released.
#[inline]
fn wake<P: Park>(wakeup: Option<Wakeup<P>>) {
    if let Some(Wakeup { unparker, asleep }) = wakeup {
        if asleep {
            P::unpark(unparker);
        }
    }
}

impl<P: Park> Default for RawGil<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Park> core::fmt::Debug for RawGil<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawGil")
            .field("locked", &self.is_locked())
            .field("has_waiters", &self.has_waiters())
            .field("closed", &self.is_closed())
            .field("switches", &self.switches())
            .field("pending", &self.breaker.pending())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// An owner away while others go away and come back four billion times over: its reclaim
    /// still finds that the absence under way is not its own.
    #[test]
    fn an_absence_is_not_taken_for_one_four_billion_later() {
        let gil: RawGil = RawGil::new();
        let (a, b) = (pin!(Waiter::new()), pin!(Waiter::new()));
        gil.lock().unwrap();
        for w in [a.as_ref(), b.as_ref()] {
            // SAFETY: pinned on this frame; both end granted before it returns.
            assert_eq!(unsafe { gil.enqueue(w) }, Enqueued::Queued);
        }
        // SAFETY: this thread owns the lock.
        let away = unsafe { gil.unlock_away() };
        // SAFETY: a is queued and offered.
        assert_eq!(unsafe { gil.claim(a.as_ref()) }, WaitState::Granted);
        // 2^32 - 1 absences of others later (the count only), a goes away in turn.
        // SAFETY: nobody else edits the queue.
        gil.queue
            .with_mut(|q| unsafe { (*q).absences += u64::from(u32::MAX) });
        // SAFETY: a owns the lock.
        let a_away = unsafe { gil.unlock_away() };
        assert_eq!(b.state(), WaitState::Offered);
        assert!(
            !gil.reclaim(away),
            "an absence four billion back was reclaimed"
        );
        assert!(gil.reclaim(a_away));
        // SAFETY: a owns the lock again; the release grants b, which then releases.
        unsafe { gil.unlock() };
        assert_eq!(b.state(), WaitState::Granted);
        // SAFETY: b owns the lock.
        unsafe { gil.unlock() };
    }
}
