//! The FIFO queue of waiters: intrusive, doubly linked, its nodes owned by the waiting threads.
//!
//! Every field here except a waiter's state word is touched only by a thread holding the queue
//! lock (the `QUEUE_LOCKED` bit of the lock word, see `raw.rs`); that lock's Acquire/Release
//! pair orders all of it.

use core::fmt;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr;

use crate::park::Park;
use crate::sync::{
    AtomicU32,
    Ordering::{self, Acquire},
    UnsafeCell,
};

// The states of a waiter's word. Only a thread holding the queue lock changes it, except the
// waiter itself: while it is not queued, and from AWAKE to ASLEEP (a compare-exchange, so
// every change by a queue-lock holder is a swap that sees whether the waiter sleeps).
/// Not in the queue: new, cancelled, or its grant already consumed.
pub(crate) const IDLE: u32 = 0;
/// In the queue, not yet granted, and awake (spinning, say): handing it something needs no
/// wake-up.
pub(crate) const AWAKE: u32 = 1;
/// Taken off the queue and made the owner of the lock.
pub(crate) const GRANTED: u32 = 2;
/// Taken off the queue by `close`; the waiter does not own the lock.
pub(crate) const CLOSED: u32 = 3;
/// The head of the queue while the owner is away in a blocking region
/// ([`RawGil::unlock_away`](crate::RawGil::unlock_away)): still queued, and free to take the
/// lock with [`RawGil::claim`](crate::RawGil::claim) unless the owner comes back first.
pub(crate) const OFFERED: u32 = 4;
/// As `AWAKE`, but the waiter said that it sleeps (see [`Park`]): whoever hands it
/// something must wake it.
pub(crate) const ASLEEP: u32 = 5;

/// A queue node for one waiting thread.
///
/// The waiting thread owns the node (typically on its stack, pinned with [`core::pin::pin!`]) and
/// must keep it alive and in place while it is queued: from an enqueue that returned
/// `Enqueued::Queued` (or a `RawGil::requeue`
/// that returned `true`) until [`state`](Waiter::state) reports it granted or closed, or
/// `RawGil::cancel` took it out. Those are the contracts of the unsafe
/// methods of [`RawGil`](crate::RawGil) that take a waiter.
///
/// A *returning* waiter ([`Waiter::returning`]) is a thread that held the lock and is coming back
/// for it — after a yield or a blocking region. [`RawGil::close`](crate::RawGil::close) fails
/// fresh waiters but lets returning ones through, so a holder can always finish its work.
///
/// Aligned to a cache line: the thread that hands the lock on writes the node's links and its
/// word, so a node that straddled two lines (a 32-byte node on the stack does, three times in
/// eight) would cost that thread two trips between cores instead of one.
#[repr(align(64))]
pub struct Waiter<P: Park> {
    state: AtomicU32,
    returning: bool,
    /// Queued by [`RawGil::poll_lock`](crate::RawGil::poll_lock): it waits by polls. Written
    /// as it is queued, under the queue lock, which guards it.
    polled: UnsafeCell<bool>,
    links: UnsafeCell<Links<P>>,
    parker: P::Parker,
    _pinned: PhantomPinned,
}

struct Links<P: Park> {
    prev: *const Waiter<P>,
    next: *const Waiter<P>,
}

/// What a waiter's state word says, as seen by [`Waiter::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitState {
    /// Not queued.
    Idle,
    /// Queued, not yet granted.
    Waiting,
    /// Handed the lock: the waiting thread now owns it.
    Granted,
    /// Removed by [`RawGil::close`](crate::RawGil::close): the waiting thread does not own it.
    Closed,
    /// Still queued, at the head, and the owner is away in a blocking region
    /// (`RawGil::unlock_away`): take the lock with
    /// `RawGil::claim`, which fails if the owner came back first.
    Offered,
}

/// What [`Waiter::tell`] found: the waiter's unparker, and whether the waiter sleeps (then it
/// must be woken). Used, or dropped, only once the queue lock is released.
#[must_use = "wake the waiter, or drop its unparker, after releasing the queue lock"]
pub(crate) struct Wakeup<P: Park> {
    pub(crate) unparker: P::Unparker,
    pub(crate) asleep: bool,
}

impl<P: Park> Waiter<P> {
    /// A node for a thread that wants the lock for the first time.
    pub fn new() -> Self {
        Self::with_parts(false, P::parker())
    }

    /// A node for a thread that held the lock and is coming back for it (after a yield or a
    /// blocking region). [`RawGil::close`](crate::RawGil::close) does not fail such a waiter.
    pub fn returning() -> Self {
        Self::with_parts(true, P::parker())
    }

    /// A node for a first-time waiter with per-waiter data of the caller's making, for a
    /// strategy whose waiters are not all threads (a future's waker, say): `P::parker()` makes
    /// the data of a thread that waits in `Waiter::wait`.
    pub fn with_parker(parker: P::Parker) -> Self {
        Self::with_parts(false, parker)
    }

    /// A returning node (see [`Waiter::returning`]) with per-waiter data of the caller's
    /// making (see [`Waiter::with_parker`]).
    pub fn returning_with_parker(parker: P::Parker) -> Self {
        Self::with_parts(true, parker)
    }

    fn with_parts(returning: bool, parker: P::Parker) -> Self {
        Self {
            state: AtomicU32::new(IDLE),
            returning,
            polled: UnsafeCell::new(false),
            links: UnsafeCell::new(Links::unlinked()),
            parker,
            _pinned: PhantomPinned,
        }
    }

    /// Whether this node is for a thread coming back to the lock (see [`Waiter::returning`]).
    pub fn is_returning(&self) -> bool {
        self.returning
    }

    /// Records whether this waiter, being queued, waits by polls.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock, and the waiter is being queued by it.
    pub(crate) unsafe fn set_polled(&self, polled: bool) {
        // SAFETY: guarded by the queue lock (caller's contract).
        unsafe { self.polled.with_mut(|p| *p = polled) };
    }

    /// Whether this queued waiter waits by polls.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock, and the waiter is queued.
    pub(crate) unsafe fn is_polled(&self) -> bool {
        // SAFETY: guarded by the queue lock (caller's contract).
        unsafe { self.polled.with_mut(|p| *p) }
    }

    /// Where this waiter stands. A `Granted` result makes the calling thread the owner, with
    /// everything the previous owner wrote visible to it.
    #[inline]
    pub fn state(&self) -> WaitState {
        // Acquire pairs with the Release store of GRANTED in `RawGil::grant`, which the previous
        // owner made after all its writes under the lock.
        match self.state.load(Acquire) {
            IDLE => WaitState::Idle,
            AWAKE | ASLEEP => WaitState::Waiting,
            GRANTED => WaitState::Granted,
            OFFERED => WaitState::Offered,
            _ => WaitState::Closed,
        }
    }

    /// The strategy's per-waiter data, for adapters that wait in their own way (with a timeout,
    /// say) instead of through `Waiter::wait`.
    pub fn parker(&self) -> &P::Parker {
        &self.parker
    }

    /// The state word a waiter sleeps on, for adapters that wait in their own way; it holds
    /// [`Waiter::AWAKE`] or [`Waiter::ASLEEP`] while the waiter is queued and nothing has been
    /// handed to it.
    pub fn word(&self) -> &AtomicU32 {
        &self.state
    }

    /// The value of [`Waiter::word`] while the waiter is queued, not yet granted, and awake.
    pub const AWAKE: u32 = AWAKE;

    /// The value of [`Waiter::word`] while the waiter is queued, not yet granted, and asleep:
    /// a [`Park`] strategy sets it (a compare-exchange from [`Waiter::AWAKE`]) before it
    /// sleeps, and the core wakes only waiters it finds `ASLEEP`.
    pub const ASLEEP: u32 = ASLEEP;

    /// Changes the word of the queued waiter `this` to `to` (a grant, an offer, a close, a
    /// spurious wake-up) and
    /// returns what wakes it, with whether it said it sleeps. The swap cannot miss the waiter's
    /// own compare-exchange to `ASLEEP`: the two are ordered one way or the other on the word,
    /// and a waiter that comes second finds `to` and does not sleep. `order` is the caller's,
    /// for what the new state publishes.
    ///
    /// Once the waiter sees `to`, its thread may free the node, so the unparker is taken first,
    /// and `this` is a raw pointer, not `&self`: a reference argument would have to stay valid
    /// until the call returns, which a node freed right after the swap is not (Miri's Stacked
    /// Borrows reports it). Only the word, an atomic, is touched by the swap itself.
    ///
    /// The unparker is returned even for a waiter that was awake: it may be the last owner of
    /// what it holds (a task's waker, once the node is gone), and dropping it may run the
    /// strategy's code, which must not run under the queue lock. The caller drops it, or wakes
    /// with it, once the queue lock is released ([`Wakeup`]).
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock and `this` is queued, hence alive until the swap.
    pub(crate) unsafe fn tell(this: *const Self, to: u32, order: Ordering) -> Wakeup<P> {
        // SAFETY: `this` is queued, so alive until the swap below (caller's contract).
        let (unparker, word) = unsafe {
            let w = &*this;
            (P::unparker(&w.parker, &w.state), &w.state)
        };
        let asleep = word.swap(to, order) == ASLEEP;
        Wakeup { unparker, asleep }
    }

    /// Sleeps with `P` until this waiter is no longer queued, and says why.
    ///
    /// Returns [`WaitState::Granted`] or [`WaitState::Closed`] for a queued waiter, and at once
    /// with [`WaitState::Idle`] for one that is not queued. On a lock whose owners go away with
    /// [`RawGil::unlock_away`](crate::RawGil::unlock_away) it may also return
    /// [`WaitState::Offered`]: [`RawGil::claim`](crate::RawGil::claim) the lock then, and wait
    /// again if the claim finds the waiter back in line ([`RawGil::wait`](crate::RawGil::wait)
    /// does both).
    #[cfg_attr(not(feature = "models"), allow(dead_code))] // a step only the models take
    pub(crate) fn wait(self: Pin<&Self>) -> WaitState {
        loop {
            match self.state() {
                WaitState::Waiting => P::park(&self.parker, &self.state),
                done => return done,
            }
        }
    }
}

impl<P: Park> Default for Waiter<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Park> fmt::Debug for Waiter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("state", &self.state())
            .field("returning", &self.returning)
            .finish_non_exhaustive()
    }
}

impl<P: Park> Drop for Waiter<P> {
    fn drop(&mut self) {
        // A node freed while queued leaves a dangling pointer in the lock: catch the bug in tests.
        debug_assert!(
            !matches!(self.state.load(Acquire), AWAKE | ASLEEP),
            "gil-core: a Waiter was dropped while still queued"
        );
    }
}

/// The line of waiters, guarded by the queue lock: a doubly linked FIFO list, and the count of
/// absences.
#[repr(C)]
pub(crate) struct Queue<P: Park> {
    head: *const Waiter<P>,
    tail: *const Waiter<P>,
    /// Offers made by `RawGil::unlock_away` so far: the number of the current absence, so that
    /// a `reclaim` can tell its own absence from a later one. 64 bits: an owner away for good
    /// while others go away and come back could not live to see the count come round to its
    /// own number again (at one offer a nanosecond, 584 years), where 32 bits would take an
    /// hour at one a microsecond.
    pub(crate) absences: u64,
}

impl<P: Park> Queue<P> {
    pub(crate) const fn new() -> Self {
        Self {
            head: ptr::null(),
            tail: ptr::null(),
            absences: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `w` at the tail of the line.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock; `w` is alive, pinned and not in any queue, and stays
    /// alive until it is taken out again.
    pub(crate) unsafe fn push_back(&mut self, w: *const Waiter<P>) {
        let old_tail = self.tail;
        // SAFETY: `w` is alive and not queued, so nobody else touches its links; the queue
        // lock (held) guards them.
        unsafe { (*w).links.with_mut(|l| (*l).prev = old_tail) };
        if old_tail.is_null() {
            self.head = w;
        } else {
            // SAFETY: a queued node is alive (its owner's contract) and its links are guarded by
            // the queue lock, which we hold.
            unsafe { (*old_tail).links.with_mut(|l| (*l).next = w) };
        }
        self.tail = w;
    }

    /// The head, if any.
    pub(crate) fn head(&self) -> Option<*const Waiter<P>> {
        (!self.head.is_null()).then_some(self.head)
    }

    /// Takes the head off the queue.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock.
    pub(crate) unsafe fn pop_front(&mut self) -> Option<*const Waiter<P>> {
        let head = self.head()?;
        // SAFETY: `head` is queued, hence alive; the queue lock is held.
        unsafe { self.remove(head) };
        Some(head)
    }

    /// The first waiter from the head that satisfies `pred`, without removing it.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock.
    pub(crate) unsafe fn find(
        &self,
        mut pred: impl FnMut(&Waiter<P>) -> bool,
    ) -> Option<*const Waiter<P>> {
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: every queued node is alive; the queue lock is held, so its links are ours.
            let (w, next) = unsafe { (&*cur, (*cur).links.with_mut(|l| (*l).next)) };
            if pred(w) {
                return Some(cur);
            }
            cur = next;
        }
        None
    }

    /// The last waiter from the tail that satisfies `pred`, without removing it.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock.
    pub(crate) unsafe fn find_last(
        &self,
        mut pred: impl FnMut(&Waiter<P>) -> bool,
    ) -> Option<*const Waiter<P>> {
        let mut cur = self.tail;
        while !cur.is_null() {
            // SAFETY: every queued node is alive; the queue lock is held, so its links are ours.
            let (w, prev) = unsafe { (&*cur, (*cur).links.with_mut(|l| (*l).prev)) };
            if pred(w) {
                return Some(cur);
            }
            cur = prev;
        }
        None
    }

    /// Unlinks `w`, which must be in this queue.
    ///
    /// # Safety
    ///
    /// The caller holds the queue lock and `w` is in this queue.
    pub(crate) unsafe fn remove(&mut self, w: *const Waiter<P>) {
        if w == self.head && w == self.tail {
            // Alone in the list, so its links are null already: not a look at the node (but in
            // debug builds, a check).
            #[cfg(debug_assertions)]
            // SAFETY: `w` is queued, hence alive; the queue lock (held) guards its links.
            unsafe {
                let alone = (*w)
                    .links
                    .with_mut(|l| (*l).prev.is_null() && (*l).next.is_null());
                debug_assert!(alone, "gil-core: the only waiter has neighbours");
            }
            self.head = ptr::null();
            self.tail = ptr::null();
            return;
        }
        // SAFETY: `w` is queued, hence alive; its links and its neighbours' are guarded by the
        // queue lock, which we hold.
        unsafe {
            let Links { prev, next } = (*w).links.with_mut(|l| ptr::replace(l, Links::unlinked()));
            match prev.is_null() {
                true => self.head = next,
                false => (*prev).links.with_mut(|l| (*l).next = next),
            }
            match next.is_null() {
                true => self.tail = prev,
                false => (*next).links.with_mut(|l| (*l).prev = prev),
            }
        }
    }
}

impl<P: Park> Links<P> {
    const fn unlinked() -> Self {
        Self {
            prev: ptr::null(),
            next: ptr::null(),
        }
    }
}
