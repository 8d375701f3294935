//! What a holder does with the lock besides holding it: the checkpoint's slow path, hand-overs
//! and loans inside it, and the two ends of a blocking region.

use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use gil_core::{Away, Breaker, WaitPolicy, Waited};

use super::{Gil, GilGuard, LOAN_SPIN, Turn, Waiting};
use crate::bits::{CALLS, INTERRUPT, PRIORITY, SLICE_TIMER};
use crate::clock::{LOOK_EVERY, nanos_at, now_nanos};
use crate::hooks::Event;
use crate::interrupt::{Interrupted, take_own};
use crate::sync::{Node, StayAwake};
use crate::threads::ThreadStats;

/// Marks the branch that calls it as rarely taken, so the checkpoint's fast path (nothing
/// pending) falls through: without it, the counting for `SLICE_TIMER` is laid out inline and
/// the fast path jumps over it, which costs W1's checkpoint about twice its time.
/// (`std::hint::cold_path` does this on newer Rust than our `rust-version`, 1.85.)
#[cold]
#[inline(always)]
fn unlikely() {}

impl Gil {
    /// A blocking region's start, for both forms: lets the lock go and says how, for
    /// `take_back`. The caller holds the lock through a guard it stops using until then.
    ///
    /// # Panics
    ///
    /// If this thread has other guards of the lock (`refuse_region`), or inside this lock's
    /// hook (`refuse_in_hook`).
    pub(super) fn let_go(&self) -> Option<Away> {
        self.refuse_region();
        self.refuse_in_hook();
        self.emit(Event::BlockingEntered);
        // One clock read for the region's start and the end of a loan this thread holds.
        let fast = self.fast_return.load(Relaxed);
        // A loan asked for goes back to its lender at once; the clock is read after, for the
        // loan's end and the region's start. Otherwise one read for both, and the lock goes
        // lazily: with threads waiting, the head is offered the lock and woken, and a region
        // that ends before it runs keeps this thread's turn (docs/design.md, "Blocking
        // regions").
        if crate::credit::on_loan(self) == Some(crate::credit::Borrowed::OnBreaker) {
            self.watch_end();
            let now = self.give_back_loan();
            if fast {
                crate::credit::enter_region(now);
            }
            None
        } else {
            let now = fast.then(now_nanos);
            self.end_hold_at(now);
            if let Some(now) = now {
                crate::credit::enter_region(now);
            }
            // SAFETY: the caller holds the lock (its guard says so), not on a loan it asked
            // for.
            Some(unsafe { self.raw.unlock_away() })
        }
    }

    /// The checkpoint for a thread that holds the lock (the guards' `checkpoint`): one relaxed
    /// load and a branch when nothing is pending.
    ///
    /// While threads wait in line ([`SLICE_TIMER`] set), the holder times its own slice: every
    /// [`LOOK_EVERY`]th checkpoint reads the clock, and once the slice is over, asks itself to
    /// hand over. The other checkpoints add a counter to the load and the branch. `ticks` is
    /// the guard's count.
    #[inline]
    pub(crate) fn checkpoint_held(&self, ticks: &mut u32) -> Result<(), Interrupted> {
        let pending = self.raw.breaker().pending();
        if pending != 0 {
            unlikely();
            if pending == SLICE_TIMER {
                *ticks = ticks.wrapping_add(1);
                if *ticks % LOOK_EVERY != 0 {
                    return Ok(());
                }
            }
            return self.checkpoint_slow(pending);
        }
        Ok(())
    }

    /// The checkpoint's slow path: `pending` flags are set in the breaker word. `SLICE_TIMER`
    /// alone means the count says to look at the clock for the end of the slice; with other
    /// flags, the look waits for a counted checkpoint (no clock read on the way to a loan).
    ///
    /// The caller holds the lock.
    #[cold]
    pub(crate) fn checkpoint_slow(&self, pending: u32) -> Result<(), Interrupted> {
        self.refuse_in_hook();
        if pending == SLICE_TIMER {
            if !self.timer.slice_over() {
                return Ok(());
            }
            self.request_drop();
        }
        if pending & (CALLS | Breaker::RUNTIME_BITS) != 0 {
            let guard = GilGuard::borrowed(self);
            if pending & CALLS != 0 {
                self.run_pending_calls(&guard);
            }
            if pending & Breaker::RUNTIME_BITS != 0 {
                self.run_breaker_handlers(&guard, pending);
            }
        }
        let borrowing = self.is_borrowing();
        // A borrower leaves PRIORITY for its lender: it lends nothing itself.
        let asks = Breaker::DROP_REQUEST | if borrowing { 0 } else { PRIORITY };
        // Not a write to the breaker's line when there is nothing to take (a loan asked for):
        // the asker is reading that line.
        let taken = if pending & asks != 0 {
            self.raw.breaker().take(asks)
        } else {
            0
        };
        if taken & Breaker::DROP_REQUEST != 0 {
            if self.timer.take_asked() {
                // The clock thread runs no hook: its request is reported here, by the holder.
                self.emit(Event::DropRequested);
            }
            if borrowing {
                // The request is for the lender's slice, which this loan is part of: pass it
                // on, so that the lender answers it once the loan is back.
                self.raw.breaker().set(Breaker::DROP_REQUEST);
            }
            if self.hand_off() {
                self.counters.forced_drops.fetch_add(1, Relaxed);
                ThreadStats::count(|t| t.forced_drops += 1);
            }
        } else if !borrowing {
            // A loan asked for on the breaker, else one asked for in line (an urgent waiter
            // that found another loan under way, or stopped waiting awake). A borrower lends
            // nothing: a loan does not lend on.
            let lent_asked = pending & Breaker::LOAN_ASKED != 0 && self.lend_asked();
            // (A loan is counted by the lender's `Waiting`, while the borrower holds.)
            if !lent_asked && taken & PRIORITY != 0 {
                self.lend();
            }
        }
        // Last, so an interrupt that came while this thread waited to get the lock back is
        // reported now. A bit set for a thread other than this one is cleared here; that thread
        // sets it again when it takes the lock (see `interrupt.rs`).
        if self.raw.breaker().pending() & INTERRUPT != 0
            && self.raw.breaker().take(INTERRUPT) != 0
            && take_own()
        {
            return Err(Interrupted);
        }
        Ok(())
    }

    /// Hands the lock to the longest waiter, if any, and waits to get it back behind everyone
    /// in line. The caller holds the lock; returns whether it handed over.
    pub(crate) fn hand_off(&self) -> bool {
        self.step_aside(Turn::InLine)
    }

    /// Lends the lock to an urgent waiter at the head of the line, if there is one, and waits
    /// (awake a while) to get it back as soon as that thread lets go. The caller holds the
    /// lock; returns whether it lent.
    fn lend(&self) -> bool {
        self.step_aside(Turn::Resume)
    }

    /// Lends the lock to the thread that asked for a loan
    /// ([`RawGil::ask_loan`](gil_core::RawGil::ask_loan)), if one has, and waits (awake a
    /// while, then asleep) for it back. The caller holds the lock, not on loan; returns whether
    /// it lent.
    fn lend_asked(&self) -> bool {
        let guards = self.set_aside_guards();
        self.watch_end();
        let mut waiting = Waiting::new(self, Turn::Resume, None, None, true);
        // SAFETY: the caller holds the lock, not on loan.
        let lent = unsafe { self.raw.lend_asked_with(&mut waiting) };
        let back = waiting.done(Waited::Granted);
        debug_assert!(back.is_ok());
        self.begin_loan_hold();
        self.restore_guards(guards);
        lent
    }

    /// `hand_off` (`turn` is `InLine`: `requeue`) or `lend` (`Resume`: `RawGil::lend`).
    fn step_aside(&self, turn: Turn) -> bool {
        self.refuse_in_hook();
        if crate::credit::on_loan(self) == Some(crate::credit::Borrowed::OnBreaker) {
            // A loan asked for goes back to its lender before anything else, and does not lend
            // on. Handing off, the borrower then waits in line like anybody (the lender answers
            // the drop request).
            if turn != Turn::InLine {
                return false;
            }
            let guards = self.set_aside_guards();
            self.watch_end();
            self.give_back_loan();
            let back = self.wait_for_grant(Node::returning(), None, false);
            debug_assert!(back.is_ok(), "returning waiters are never closed");
            self.begin_hold();
            self.restore_guards(guards);
            return true;
        }
        if !self.raw.has_waiters() {
            return false;
        }
        let guards = self.set_aside_guards();
        let node = pin!(Node::returning());
        // In line, the wait begins before queueing: the wake-up of the thread handed the lock
        // can preempt this one for a while before it waits, and that time counts as waiting. A
        // lender reads the clock once it has lent instead: the borrower is spinning (no
        // wake-up), and a read here would hold up the loan.
        let start = (turn == Turn::InLine).then(Instant::now);
        let mut waiting = Waiting::new(self, turn, start, None, true);
        self.end_hold();
        // SAFETY: the caller holds the lock; the node is returning, pinned on this frame, and
        // the composites return only once it is out of line. `Waiting` without a deadline
        // never gives up.
        let handed = unsafe {
            match turn {
                Turn::Resume => self.raw.lend_with(node.as_ref(), &mut waiting),
                _ => self.raw.yield_with(node.as_ref(), &mut waiting),
            }
        };
        let back = waiting.done(Waited::Granted);
        debug_assert!(back.is_ok(), "returning waiters are never closed");
        self.begin_hold();
        self.restore_guards(guards);
        handed
    }

    /// Takes the lock back after a blocking region. Succeeds even after `close`: the thread
    /// held the lock before and must be able to finish.
    ///
    /// A thread with credit comes back urgently (see `credit.rs`); otherwise in line.
    pub(crate) fn take_back(&self, away: Option<Away>) {
        self.refuse_in_hook();
        if away.is_some_and(|away| self.raw.reclaim(away)) {
            // Back before the offer was taken: the turn goes on, and nothing was given up to
            // earn credit for.
            crate::credit::forget_region();
            self.begin_hold();
            return;
        }
        // With the fast return on, one clock read for the region's end and, if this thread
        // asks for a loan, the ask's start, from which the loan is charged.
        let back_at = self.fast_return.load(Relaxed).then(Instant::now);
        // Contending: the waiters, the holder and this thread.
        let urgent = back_at.filter(|&at| {
            crate::sync::CREDIT_EVERY_RETURN
                || crate::credit::leave_region(
                    nanos_at(at),
                    u64::from(self.timer.waiting()) + 2,
                    self.switch_interval(),
                )
        });
        // A look before the compare-and-swap: a failed one would still take the lock's line
        // from the holder, whose next checkpoint reads it.
        if !self.raw.is_locked() && self.raw.try_acquire().is_ok() {
            self.begin_hold();
            return;
        }
        let mut borrowing = None;
        if let Some(start) = urgent {
            let borrowing = borrowing.insert(Borrowing {
                gil: self,
                awake: StayAwake::until(start + LOAN_SPIN),
                asked: false,
            });
            if self.raw.borrow_with(borrowing) {
                // Held out of turn from the ask on, paid for with credit (see
                // `credit::begin_loan` and `Gil::give_back_loan`): no clock read while the
                // lender waits.
                crate::credit::begin_loan(
                    self,
                    nanos_at(start),
                    crate::credit::Borrowed::OnBreaker,
                );
                self.begin_loan_hold();
                return;
            }
        }
        let node = if urgent.is_some() {
            Node::urgent()
        } else {
            Node::returning()
        };
        let asked = borrowing.is_some_and(|b| b.asked);
        let back = self.wait_for_grant(node, None, asked);
        debug_assert!(back.is_ok(), "returning waiters are never closed");
        self.begin_hold();
    }
}

/// A thread back from a blocking region with credit asks for a loan
/// ([`RawGil::borrow_with`](gil_core::RawGil::borrow_with)) and waits for it awake, up to
/// `LOAN_SPIN`; if it is not lent by then, it takes the lock another way.
struct Borrowing<'g> {
    gil: &'g Gil,
    awake: StayAwake,
    /// Set once the ask stands (it reported `Event::Wants` then).
    asked: bool,
}

impl WaitPolicy<crate::sync::Parking> for Borrowing<'_> {
    fn queued(&mut self) {
        self.asked = true;
        self.gil.emit(Event::Wants);
    }

    fn spin(&mut self) -> bool {
        self.awake.round()
    }
}
