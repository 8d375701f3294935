//! How a thread comes back from a blocking region: the policies of the core's
//! `take_back_with`, the fast return's ask for a loan and the wait in line.

use std::time::Instant;

use gil_core::{Return, WaitPolicy, Waited};

use super::{Gil, LOAN_SPIN, WaitFor, Waiting};
use crate::clock::nanos_at;
use crate::hooks::Event;
use crate::sync::{Parking, StayAwake};

/// How a `Gil`'s thread comes back from a blocking region (the core's `take_back_with`): with
/// the fast return on and credit left (see `credit.rs`), it asks for a loan on the breaker with
/// [`Borrowing`]; otherwise, or if nobody lends, it waits its turn in line with [`Waiting`].
pub(super) struct Returning<'g> {
    pub(super) gil: &'g Gil,
    /// When it went ahead (the region's end): a loan is charged from then.
    pub(super) asked_at: Option<Instant>,
    /// Its wait in line ended because the thread holds the lock another way.
    pub(super) reentered: bool,
    /// Whether it may go ahead of the line: the fast return is on, and the thread holds no
    /// loan of another lock.
    pub(super) ahead: bool,
    /// Reports nothing (see `Gil::take_back`).
    pub(super) quiet: bool,
}

impl<'g> Return<Parking> for Returning<'g> {
    type Ask = Borrowing<'g>;
    type Wait = Waiting<'g>;

    fn ahead(&mut self) -> Option<Borrowing<'g>> {
        let gil = self.gil;
        // With the fast return on, one clock read for the region's end and, if this thread
        // asks for a loan, the ask's start, from which the loan is charged.
        let at = self.ahead.then(crate::sync::now)?;
        // Contending: the waiters, the holder and this thread.
        let contending = u64::from(gil.timer.waiting()) + 2;
        let borrowing =
            crate::credit::leave_region(nanos_at(at), contending, gil.switch_interval());
        if !borrowing {
            return None;
        }
        self.asked_at = Some(at);
        Some(Borrowing {
            gil,
            awake: StayAwake::until(at + LOAN_SPIN),
            asked: false,
            quiet: self.quiet,
        })
    }

    fn in_line(&mut self, ask: Option<Borrowing<'g>>) -> Waiting<'g> {
        // An ask that stood reported `Event::Wants` already; a quiet thread reports nothing.
        let announced = self.quiet || ask.is_some_and(|b| b.asked);
        self.gil.begin_wait(WaitFor::Turn, None, announced)
    }

    fn granted(&mut self, waiting: Waiting<'g>) {
        self.reentered = waiting.reentered();
        if self.reentered {
            let _ = waiting.done(Waited::GaveUp);
            return;
        }
        let back = waiting.done(Waited::Granted);
        debug_assert!(back.is_ok(), "returning waiters are never closed");
    }
}

/// A thread back from a blocking region with credit asks for a loan
/// ([`RawGil::borrow_with`](gil_core::RawGil::borrow_with)) and waits for it awake, up to
/// `LOAN_SPIN`; if it is not lent by then, it takes the lock another way.
pub(super) struct Borrowing<'g> {
    gil: &'g Gil,
    awake: StayAwake,
    /// Set once the ask stands (it reported `Event::Wants` then).
    asked: bool,
    /// Reports nothing (see `Gil::take_back`).
    quiet: bool,
}

impl WaitPolicy<crate::sync::Parking> for Borrowing<'_> {
    fn queued(&mut self) {
        self.asked = true;
        if !self.quiet {
            self.gil.emit(Event::Wants);
        }
    }

    /// Awake up to `LOAN_SPIN`; then the ask is withdrawn and the thread waits its turn: a
    /// loan is lent only to a thread that is running.
    fn spin(&mut self) -> bool {
        self.awake.round() || cfg!(bite = "an-ask-never-withdrawn")
    }
}
