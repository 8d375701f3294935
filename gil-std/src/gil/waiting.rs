//! How a thread of a `Gil` waits in the core's composites: the policy it passes them.

use std::pin::Pin;
use std::time::{Duration, Instant};

use gil_core::{Breaker, Park, WaitPolicy, WaitState, Waited};

use super::{AcquireError, Gil};
use crate::clock::{clock, nanos_at};
use crate::hooks::Event;
use crate::owner::{Doing, Frame};
use crate::sync::{Node, OWN_TIMEOUT, Parking, StayAwake};

/// How a queued thread came to wait, which decides what its grant means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// Its turn in line: a grant starts a new slice.
    Turn,
    /// A lender's loan back: a grant resumes its slice.
    LoanBack,
}

/// How long the two sides of a loan stay awake: the thread that asked, for the holder's next
/// checkpoint (then it withdraws its ask and waits its turn), and the lender, for the loan to
/// come back (usually at the borrower's next blocking call, microseconds later; then it
/// sleeps). A futex wake costs tens of microseconds here.
pub(crate) const LOAN_SPIN: Duration = Duration::from_micros(50);

/// How long a waiter in line, offered the lock by an owner away in a blocking region, gives
/// way before it claims; see [`give_way`].
pub(crate) const CLAIM_GRACE: Duration = Duration::from_micros(5);

/// A waiter in line was offered the lock: before claiming it, yield the CPU for up to
/// [`CLAIM_GRACE`] while the offer stands.
///
/// The wake-up that brought the offer may have put this thread on the owner's own CPU and
/// preempted the owner a microsecond into a short region (a non-blocking `write`, a quick
/// foreign call). Claiming at once would then send the owner to the back of the line for a
/// region that cost nobody anything, and a thread that makes many such regions (the lab's abuse
/// case) would lose a share of its turns that way. Yielding lets a preempted owner run on, come
/// back and `reclaim`; an owner that is really blocked costs the waiter at most `CLAIM_GRACE`
/// on top of its wake-up (tens of microseconds). Not for the two sides of a loan, which claim at once.
fn give_way(node: Pin<&Node>) {
    crate::sync::yield_while(CLAIM_GRACE, || node.state() == WaitState::Offered);
}

/// How a thread of a `Gil` waits in the core's composites (`lock_with`, `yield_with`,
/// `lend_asked_with`): the clock's preemption timer armed while it waits, awake first as a
/// lender, asleep with a timeout of its own towards a deadline, and
/// the wait counted when it ends ([`done`](Waiting::done)).
pub(crate) struct Waiting<'a> {
    gil: &'a Gil,
    turn: WaitFor,
    /// When the wait began: read before queueing (in line, and by a borrower), or once the
    /// lock is lent (a lender, whose clock read would otherwise hold up the loan).
    start: Option<Instant>,
    deadline: Option<Deadline>,
    /// Counted in by the clock (`Clock::arm`), to be counted out at the end.
    timed: bool,
    /// Staying awake, on a side of a loan (until `LOAN_SPIN` after the start).
    awake: Option<StayAwake>,
    /// Report `Event::Wants` once queued.
    announce: bool,
    queued: bool,
    /// The wait ended because the thread holds the lock another way (see `give_up`).
    reentered: bool,
    /// The wait is a frame on its thread while it lasts (`owner::Doing::Wait`): a wait for the
    /// same lock that code run inside it begins is refused. None for a lender's (see `new`).
    _frame: Option<Frame>,
}

impl<'a> Waiting<'a> {
    /// A wait of `turn`, begun at `start` (`None`: at the lend); `announce`: report
    /// `Event::Wants` once queued. A thread in line is counted in by the clock now, before it
    /// queues: queueing can wake the thread handed the lock, which can preempt this one for
    /// milliseconds, with nobody timing the new holder's slice meanwhile. Undone when the
    /// `Waiting` is dropped, whether or not `done` was called.
    ///
    /// # Panics
    ///
    /// If the calling thread waits for this lock already (code that wait runs, a task's waker,
    /// begins this one): it would queue behind a wait of its own thread. Before it changes
    /// anything.
    pub(crate) fn new(
        gil: &'a Gil,
        turn: WaitFor,
        start: Option<Instant>,
        deadline: Option<Instant>,
        announce: bool,
    ) -> Self {
        if !cfg!(bite = "a-wait-inside-a-wait") && crate::owner::is_doing(gil, Doing::Wait) {
            waiting_already_panic();
        }
        // Not a lender's: nothing it runs can take the lock (see `give_up`), and its wait is on
        // the loan's critical path. First: it is what may refuse (too many frames).
        let frame = (turn != WaitFor::LoanBack).then(|| Frame::enter(gil, Doing::Wait));
        let timed = turn == WaitFor::Turn && !cfg!(bite = "armed-after-handoff");
        if timed {
            clock().arm(&gil.raw, &gil.timer, start.unwrap_or_else(crate::sync::now));
        }
        Self {
            gil,
            turn,
            start,
            deadline: deadline.map(Deadline::new),
            timed,
            awake: None,
            announce,
            queued: false,
            reentered: false,
            _frame: frame,
        }
    }

    /// Whether the wait ended because the thread holds the lock another way: then it was
    /// taken out of line and holds nothing by it, and `done` must be given `Waited::GaveUp`.
    pub(crate) fn reentered(&self) -> bool {
        self.reentered
    }

    /// The wait is over, `waited` being what it came to: counts the thread out of the clock,
    /// and, if it waited in line, counts the wait and begins what the grant begins (a slice, a
    /// loan). A lender getting its loan back counts as a wait only if it had to sleep for it.
    pub(crate) fn done(self, waited: Waited) -> Result<(), AcquireError> {
        let gil = self.gil;
        let outcome = outcome(waited);
        if !self.queued {
            return outcome;
        }
        // A lender is timed once it stops staying awake, to sleep (see `spin`).
        if self.turn == WaitFor::LoanBack && !self.timed {
            return outcome;
        }
        // One clock read for the count and the slice or loan that begins.
        let now = crate::sync::now();
        gil.count_wait(now.saturating_duration_since(self.start.unwrap_or(now)));
        if outcome.is_ok() {
            match self.turn {
                WaitFor::Turn => begin_turn(gil, nanos_at(now)),
                // The loan came back: the slice goes on where it was.
                WaitFor::LoanBack => {}
            }
        }
        outcome
    }
}

/// What a wait that came to `waited` gives its caller.
pub(crate) fn outcome(waited: Waited) -> Result<(), AcquireError> {
    match waited {
        Waited::Granted => Ok(()),
        Waited::Closed => Err(AcquireError::Closed),
        Waited::GaveUp => Err(AcquireError::Timeout),
    }
}

/// The calling thread was handed the lock in its turn, at `now` (nanoseconds on the clock's
/// epoch): a new slice. A drop request still pending was meant for the previous holder, and
/// the switch answered it.
pub(crate) fn begin_turn(gil: &Gil, now: u64) {
    gil.timer.begin_slice(now);
    if gil.raw.breaker().take(Breaker::DROP_REQUEST) != 0 {
        gil.timer.forget_asked();
    }
}

impl Drop for Waiting<'_> {
    /// The wait is over, or given up by unwinding: the thread is counted out of the clock,
    /// and its wake-ups are cancelled.
    fn drop(&mut self) {
        drop(self.deadline.take());
        if core::mem::take(&mut self.timed) && !cfg!(bite = "clock-keeps-dropped-lock") {
            clock().leave(&self.gil.raw, &self.gil.timer);
        }
    }
}

#[cold]
#[track_caller]
fn waiting_already_panic() -> ! {
    panic!(
        "gil: a wait for this Gil began on a thread that is waiting for it already (in a waker \
         or a hook that its wait ran), which would wait behind itself for ever"
    );
}

impl WaitPolicy<Parking> for Waiting<'_> {
    fn queued(&mut self) {
        self.queued = true;
        if self.turn == WaitFor::LoanBack {
            // Lent: the lender's bookkeeping, while the borrower holds. Nothing after the loan
            // is back, when this thread's own work waits on it.
            self.gil.services_or_new().counters.count_loan();
        }
        if self.announce {
            self.gil.emit(Event::Wants);
        }
        if self.start.is_none() {
            self.start = Some(crate::sync::now());
        }
    }

    /// A lender (`LoanBack`) expects its loan back within microseconds: it stays awake up to
    /// `LOAN_SPIN`, and only then does the clock preempt whoever holds, as for any waiter, so
    /// that a loan that does not end soon ends at the lender's slice.
    /// Arming wakes the clock thread, which on two busy CPUs costs more than the loan itself.
    fn spin(&mut self) -> bool {
        if self.timed {
            return false;
        }
        // Counted from the start of the wait, read before queueing or at the lend: no clock
        // read of its own on the way to a loan.
        let start = *self.start.get_or_insert_with(crate::sync::now);
        let awake = self
            .awake
            .get_or_insert_with(|| StayAwake::until(start + LOAN_SPIN));
        if awake.round() {
            return true;
        }
        if !cfg!(bite = "loan-never-timed") {
            clock().arm(&self.gil.raw, &self.gil.timer, start);
            self.timed = true;
        }
        false
    }

    /// At the deadline; or at once if the thread holds the lock already, which it can only
    /// have taken by code this wait ran (a task's waker, polling its future inline): the
    /// wait would never end. A lender waiting for its loan back is not asked: every grant goes
    /// to the lender first, so nothing it runs can take the lock.
    fn give_up(&mut self) -> bool {
        if self.turn != WaitFor::LoanBack
            && !cfg!(bite = "a-wait-ignores-reentry")
            && self.gil.holds_here()
        {
            self.reentered = true;
            return true;
        }
        self.deadline.as_ref().is_some_and(Deadline::passed)
    }

    fn offered(&mut self, node: Pin<&Node>) {
        if self.turn == WaitFor::Turn {
            give_way(node);
        }
    }

    /// Returns on a grant, a close, the deadline, or spuriously.
    fn park(&mut self, node: Pin<&Node>) {
        match &mut self.deadline {
            Some(deadline) => deadline.park(node),
            None => Parking::park(node.parker(), node.word()),
        }
    }
}

/// A wait's deadline, with the clock's wake-up at it where waiters sleep without timeouts of
/// their own ([`OWN_TIMEOUT`]); dropping it cancels the wake-up.
#[derive(Debug)]
pub(crate) struct Deadline {
    at: Instant,
    ticket: Option<u64>,
}

impl Deadline {
    pub(crate) fn new(at: Instant) -> Self {
        Self { at, ticket: None }
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        crate::sync::now() >= self.at
    }

    /// Sleeps while `node` is queued, but not past the deadline. Returns on a grant, a close,
    /// the deadline, or spuriously.
    pub(crate) fn park(&mut self, node: Pin<&Node>) {
        if !OWN_TIMEOUT && self.ticket.is_none() {
            let word = core::ptr::from_ref(node.word()).cast();
            self.ticket = Some(clock().wake_at(self.at, word));
        }
        crate::sync::park_until(node, self.at);
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            clock().cancel_wake(ticket);
        }
    }
}
