//! What a holder does with the lock besides holding it: the checkpoint's slow path, hand-overs
//! and loans inside it, and the two ends of a blocking region.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use gil_core::{Away, Back, Handover, Loan, Return, Step, WaitPolicy, Waited};

use super::{Gil, GilGuard, LOAN_SPIN, SetAside, Turn, Waiting};
use crate::bits::{CALLS, INTERRUPT, SLICE_TIMER};
use crate::clock::{LOOK_EVERY, nanos_at, now_nanos};
use crate::hooks::Event;
use crate::interrupt::{Interrupted, take_own};
use crate::owner::Frame;
use crate::sync::{Parking, StayAwake};
use crate::threads::ThreadStats;

/// Marks the branch that calls it as rarely taken, so the checkpoint's fast path (nothing
/// pending) falls through: without it, the counting for `SLICE_TIMER` is laid out inline and
/// the fast path jumps over it, which costs W1's checkpoint about twice its time.
/// (`std::hint::cold_path` does this on newer Rust than our `rust-version`, 1.85.)
#[cold]
#[inline(always)]
fn unlikely() {}

/// Counts a checkpoint on `ticks`; returns whether this one looks at the clock (every
/// `LOOK_EVERY`th).
#[inline(always)]
fn count_tick(ticks: &mut u32) -> bool {
    *ticks = ticks.wrapping_add(1);
    *ticks % LOOK_EVERY == 0
}

impl Gil {
    /// A blocking region's start, for both forms: lets the lock go and says how, for
    /// `take_back`. The caller holds the lock through a guard it stops using until then.
    ///
    /// # Panics
    ///
    /// As `refuse_let_go`.
    pub(super) fn let_go(&self) -> Away {
        self.refuse_let_go();
        self.let_go_now()
    }

    /// The checks a blocking region's start makes, apart, for a caller that must make them
    /// before it takes its guard apart ([`GilGuard::unlock`]).
    ///
    /// # Panics
    ///
    /// If this thread has other guards of the lock (`refuse_region`), or inside this lock's
    /// hook (`refuse_stale`).
    pub(super) fn refuse_let_go(&self) {
        self.refuse_stale();
        self.refuse_region();
        if !cfg!(bite = "a-region-refuses-after-letting-go") {
            self.refuse_waiting_region(0);
        }
    }

    /// A blocking region's start on a hold that may have other guards on this thread (a region
    /// of [`EnsureGuard::allow_threads`](super::EnsureGuard::allow_threads)): reports the
    /// region and the release while the hold is whole, then sets those guards aside in a
    /// `SetAside` frame (as a hand-over does, see `set_aside_guards`) and marks the hold
    /// suspended, so that any of them used before [`resume`] panics (`refuse_stale`,
    /// `refuse_suspended`) instead of proving a hold that is gone, then lets go as `let_go`
    /// does. Returns how, and what was set aside, for `resume`.
    ///
    /// # Panics
    ///
    /// Inside this lock's hook, or with a guard that proves nothing (`refuse_stale`).
    ///
    /// [`resume`]: Gil::resume
    pub(super) fn suspend(&self) -> (Away, SetAside) {
        self.refuse_stale();
        // Room for the frame that sets the guards aside, and for an initialiser's wait.
        if !cfg!(bite = "a-suspension-refuses-after-setting-aside") {
            self.refuse_waiting_region(2);
        }
        self.announce_let_go();
        // Relaxed: see `Gil::nested`.
        let guards = self.nested.load(Relaxed);
        self.nested.store(0, Relaxed);
        self.mark_suspended(true);
        // Cannot refuse: `refuse_waiting_region` made room, and the hooks that ran since have
        // ended their frames.
        let quiet = guards != 0 || crate::owner::has_set_aside(self);
        let frame = quiet.then(|| Frame::set_aside(self, guards));
        (self.let_go_quietly(), SetAside::suspended(frame))
    }

    /// The end of a `suspend`ed region, once the lock is taken back: the guards set aside
    /// count again (on top of any a region that returned holding joined), and the hold is no
    /// longer suspended.
    pub(super) fn resume(&self, set_aside: SetAside) {
        self.restore_guards(set_aside);
    }

    /// `let_go` once the checks are made.
    pub(super) fn let_go_now(&self) -> Away {
        self.announce_let_go();
        self.let_go_quietly()
    }

    /// A region's start as the services see it, while the hold is whole: the region, then the
    /// release.
    fn announce_let_go(&self) {
        self.emit(Event::BlockingEntered);
        self.watch_end();
    }

    /// `let_go_now` once `announce_let_go` is done.
    fn let_go_quietly(&self) -> Away {
        // One clock read for the region's start and the end of a loan this thread holds.
        let fast = self.fast_return.load(Relaxed);
        // A loan asked for goes back to its lender at once; the clock is read after, for the
        // loan's end and the region's start. Otherwise one read for both, and the lock goes
        // lazily: with threads waiting, the head is offered the lock and woken, and a region
        // that ends before it runs keeps this thread's turn (docs/design.md, "Blocking
        // regions").
        let asked = crate::credit::on_loan(self) == Some(crate::credit::Borrowed::OnBreaker);
        debug_assert_eq!(asked, self.raw.is_lent(), "the loan this thread holds");
        let now = if asked {
            None
        } else {
            let now = fast.then(now_nanos);
            self.end_hold_quietly(now);
            now
        };
        // SAFETY: the caller holds the lock (its guard says so) and stops using it.
        let away = unsafe { self.raw.let_go() };
        let now = if asked {
            Some(self.end_asked_loan())
        } else {
            now
        };
        if let Some(now) = now.filter(|_| fast) {
            crate::credit::enter_region(now);
        }
        away
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
        self.checkpoint_looking(|| count_tick(ticks))
    }

    /// `checkpoint_held` counting with the hold's count (`Gil::ticks`), for guards that keep
    /// none of their own ([`EnsureGuard`](super::EnsureGuard)).
    #[inline]
    pub(crate) fn checkpoint_counted(&self) -> Result<(), Interrupted> {
        self.checkpoint_looking(|| self.tick())
    }

    /// The checkpoint: one relaxed load and a branch when nothing is pending; with only
    /// `SLICE_TIMER` pending, `look` counts the checkpoint and says whether this one looks at
    /// the clock.
    #[inline(always)]
    fn checkpoint_looking(&self, look: impl FnOnce() -> bool) -> Result<(), Interrupted> {
        let pending = self.raw.breaker().pending();
        if pending != 0 {
            unlikely();
            if pending == SLICE_TIMER && !look() {
                return Ok(());
            }
            return self.checkpoint_slow(pending);
        }
        Ok(())
    }

    /// Counts a checkpoint on the hold's count; returns whether this one looks at the clock.
    fn tick(&self) -> bool {
        // Relaxed: holder-only, as `nested`.
        let mut ticks = self.ticks.load(Relaxed);
        let look = count_tick(&mut ticks);
        self.ticks.store(ticks, Relaxed);
        look
    }

    /// Whether the holder's next checkpoint would do something: answer a drop request, lend
    /// the lock, run pending calls or a runtime bit's handler, report an interrupt — or end
    /// the slice, which it then asks for itself (every `LOOK_EVERY`th call, while threads wait
    /// in line, looks at the clock, as a checkpoint does).
    #[cold]
    pub(super) fn wants_checkpoint_slow(&self, pending: u32) -> bool {
        if pending != SLICE_TIMER {
            return true;
        }
        if !self.tick() || !self.slice_wanted() || !self.timer.slice_over() {
            return false;
        }
        self.request_drop();
        true
    }

    /// Whether there is somebody to hand the lock to at the end of the slice: a thread in
    /// line, or the lender of the loan the holder is on. (A waiter is counted in by the clock
    /// before it queues; until it is queued, a request would find nobody to hand over to.)
    fn slice_wanted(&self) -> bool {
        self.raw.has_waiters() || self.raw.loan() == Loan::Lent
    }

    /// The checkpoint's slow path: `pending` flags are set in the breaker word. `SLICE_TIMER`
    /// alone means the count says to look at the clock for the end of the slice; with other
    /// flags, the look waits for a counted checkpoint (no clock read on the way to a loan).
    ///
    /// The caller holds the lock.
    #[cold]
    pub(crate) fn checkpoint_slow(&self, pending: u32) -> Result<(), Interrupted> {
        self.refuse_stale();
        if pending == SLICE_TIMER {
            // Over, and somebody to hand the lock to.
            if !self.slice_wanted() || !self.timer.slice_over() {
                return Ok(());
            }
            self.request_drop();
        }
        let guard = GilGuard::borrowed(self);
        if pending & CALLS != 0 {
            self.run_pending_calls(&guard);
        }
        // (Runs the handlers of the runtime bits among `pending`, if any.)
        self.run_breaker_handlers(&guard, pending);
        let mut handing = Handing::new(self);
        // SAFETY: the caller holds the lock.
        unsafe { self.raw.checkpoint_with(&mut handing) };
        handing.finish();
        // Last, so an interrupt that came while this thread waited to get the lock back is
        // reported now. A bit set for a thread other than this one is cleared here; that thread
        // sets it again when it takes the lock (see `interrupt.rs`).
        if self.raw.breaker().take(INTERRUPT) != 0 && take_own() {
            return Err(Interrupted);
        }
        Ok(())
    }

    /// Hands the lock to the longest waiter, if any, and waits to get it back behind everyone
    /// in line (a loan asked for goes back to its lender first): the core's `hand_over_with`.
    /// The caller holds the lock; returns whether another thread held meanwhile.
    pub(crate) fn hand_over(&self) -> bool {
        self.refuse_stale();
        let mut handing = Handing::new(self);
        // SAFETY: the caller holds the lock.
        let handed = unsafe { self.raw.hand_over_with(&mut handing) };
        handing.finish();
        handed
    }

    /// Takes the lock back after a blocking region. Succeeds even after `close`: the thread
    /// held the lock before and must be able to finish.
    ///
    /// A thread with credit comes back urgently (see `credit.rs`); otherwise in line. A
    /// `quiet` one (its hold set aside with other guards, see `set_aside_guards`) reports
    /// nothing while it takes the lock back, neither `Wants` nor `Got`: the caller reports
    /// them once the hold is whole again (`Retaken::waited`, `watch_begin`).
    pub(crate) fn take_back(&self, away: Away, quiet: bool) -> Retaken {
        self.refuse_in_hook();
        // A thread that holds a loan of another lock comes back in line: the record of the
        // loan it holds is one per thread.
        let ahead = self.fast_return.load(Relaxed)
            && (cfg!(bite = "a-second-loan-overwrites-the-first")
                || !crate::credit::holds_a_loan());
        let mut returning = Returning {
            gil: self,
            asked_at: None,
            reentered: false,
            ahead,
            quiet,
        };
        let begin = |gil: &Gil| {
            if quiet {
                gil.begin_hold_quietly();
            } else {
                gil.begin_hold();
            }
        };
        // SAFETY: this thread let the lock go with `let_go`, which gave `away`, and has not
        // taken it since (`TakeBack` holds it until here).
        let back = unsafe { self.raw.take_back_with(away, &mut returning) };
        match back {
            Back::Reclaimed => {
                // Back before the offer was taken: the turn goes on, and nothing was given up
                // to earn credit for.
                crate::credit::forget_region();
                begin(self);
            }
            Back::Borrowed => {
                // Held out of turn from the ask on, paid for with credit (see
                // `credit::begin_loan` and `Gil::give_back_loan`): no clock read while the
                // lender waits.
                let asked_at = returning.asked_at.expect("a loan is asked for with a time");
                let how = crate::credit::Borrowed::OnBreaker;
                crate::credit::begin_loan(self, nanos_at(asked_at), how);
                if !quiet {
                    self.begin_loan_hold();
                }
            }
            Back::Granted if returning.reentered => {
                crate::credit::forget_region();
                self.join_hold();
            }
            Back::Took | Back::Granted => begin(self),
        }
        Retaken {
            reentered: returning.reentered,
            waited: matches!(back, Back::Borrowed | Back::Granted),
        }
    }
}

/// How [`Gil::take_back`] went.
#[must_use = "a thread that came to hold the lock another way must panic"]
pub(crate) struct Retaken {
    /// The thread came to hold the lock another way while it waited (code the wait ran took
    /// it, and keeps a guard): the region's guard joined that hold, and the caller panics
    /// (`reentered_panic`) unless it unwinds already.
    pub(crate) reentered: bool,
    /// It waited (in line, or for a loan), as `Event::Wants` reports.
    pub(crate) waited: bool,
}

/// How a `Gil`'s thread comes back from a blocking region (the core's `take_back_with`): with
/// the fast return on and credit left, it goes ahead of the line (see `credit.rs`); it asks for
/// a loan on the breaker with [`Borrowing`], and waits in line with [`Waiting`].
struct Returning<'g> {
    gil: &'g Gil,
    /// When it went ahead (the region's end): a loan is charged from then.
    asked_at: Option<Instant>,
    /// Its wait in line ended because the thread holds the lock another way.
    reentered: bool,
    /// Whether it may go ahead of the line: the fast return is on, and the thread holds no
    /// loan of another lock.
    ahead: bool,
    /// Reports nothing (see `Gil::take_back`).
    quiet: bool,
}

impl<'g> Return<Parking> for Returning<'g> {
    type Ask = Borrowing<'g>;
    type Wait = Waiting<'g>;

    fn ahead(&mut self) -> Option<Borrowing<'g>> {
        let gil = self.gil;
        // With the fast return on, one clock read for the region's end and, if this thread
        // asks for a loan, the ask's start, from which the loan is charged.
        let at = self.ahead.then(Instant::now)?;
        // Contending: the waiters, the holder and this thread.
        let contending = u64::from(gil.timer.waiting()) + 2;
        let urgent = crate::sync::CREDIT_EVERY_RETURN
            || crate::credit::leave_region(nanos_at(at), contending, gil.switch_interval());
        if !urgent {
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
        let turn = if ask.is_some() {
            Turn::Urgent
        } else {
            Turn::InLine
        };
        // An ask that stood reported `Event::Wants` already; a quiet thread reports nothing.
        let announced = self.quiet || ask.is_some_and(|b| b.asked);
        self.gil.begin_wait(turn, None, announced)
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
struct Borrowing<'g> {
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

    fn spin(&mut self) -> bool {
        self.awake.round()
    }
}

/// What a `Gil` does around each step of the core's checkpoint that lets others hold
/// ([`RawGil::checkpoint_with`](gil_core::RawGil::checkpoint_with),
/// [`hand_over_with`](gil_core::RawGil::hand_over_with)): sets the holder's guards aside and
/// back, ends and begins its hold (events, hold timing, the owner token, a loan's credit), and
/// waits with [`Waiting`]; counts a drop request answered, and reports the clock's.
struct Handing<'g> {
    gil: &'g Gil,
    /// The holder's guards beyond the first, set aside while others hold.
    set_aside: SetAside,
    /// The step answers a drop request (a yield of one's own accord is not a forced drop).
    drop_request: bool,
    /// A wait for the lock back ended because the thread holds it another way: the holder's
    /// guard joined that hold, and the caller panics (`reentered_panic`) once the core is done.
    reentered: bool,
}

impl<'g> Handing<'g> {
    fn new(gil: &'g Gil) -> Self {
        Self {
            gil,
            set_aside: SetAside::NOTHING,
            drop_request: false,
            reentered: false,
        }
    }

    /// The caller's last step: a thread that came to hold the lock another way while it
    /// waited to get it back would otherwise go on with two holds it cannot tell apart.
    ///
    /// # Panics
    ///
    /// If it did (see `reentered`): the caller's guard is one of that hold's now, and the
    /// unwinding drops it as such.
    fn finish(&self) {
        if self.reentered {
            super::reentered_panic();
        }
    }
}

impl<'g> Handover<Parking> for Handing<'g> {
    type Wait = Waiting<'g>;

    fn drop_requested(&mut self) {
        self.drop_request = true;
        if self.gil.timer.take_asked() {
            // The clock thread runs no hook: its request is reported here, by the holder.
            self.gil.emit(Event::DropRequested);
        }
    }

    fn letting_go(&mut self, step: Step) -> Waiting<'g> {
        let gil = self.gil;
        let waiting = match step {
            // In line, the wait begins before queueing: the wake-up of the thread handed the
            // lock can preempt this one for a while before it waits, and that time counts as
            // waiting.
            Step::Yield | Step::GiveBack => {
                Waiting::new(gil, Turn::InLine, Some(Instant::now()), None, false)
            }
            // A lender reads the clock once it has lent instead: the borrower is spinning (no
            // wake-up), and a read here would hold up the loan.
            Step::LendAsked | Step::LendInLine => {
                Waiting::new(gil, Turn::Resume, None, None, false)
            }
        };
        // What the services see of it, while the hold is whole: the release, and the wait that
        // follows. Then the other guards go aside, and from there until they are back the
        // thread runs no code of the user's if there are any (see `Gil::set_aside_guards`).
        gil.watch_end();
        gil.emit(Event::Wants);
        self.set_aside = gil.set_aside_guards();
        match step {
            Step::Yield | Step::LendInLine => {
                gil.end_hold_quietly(None);
            }
            // The loan ends here, before the give-back: a drop request to a borrower is rare,
            // and its wait in line follows at once.
            Step::GiveBack => {
                gil.end_asked_loan();
            }
            Step::LendAsked => {}
        }
        waiting
    }

    fn back(&mut self, step: Step, waiting: Waiting<'g>, handed: bool) {
        let gil = self.gil;
        let set_aside = core::mem::replace(&mut self.set_aside, SetAside::NOTHING);
        if waiting.reentered() {
            // The thread holds the lock through another guard, taken while it waited: the
            // holder's guard joins that hold, and so do the guards it set aside.
            self.reentered = true;
            gil.join_hold();
            gil.restore_guards(set_aside);
            let _ = waiting.done(Waited::GaveUp);
            return;
        }
        // The owner token stayed the lender's (see `Gil::begin_loan_hold`).
        if step != Step::LendAsked {
            gil.begin_hold_quietly();
        }
        // The guards first (their frame is the innermost of this thread's), so that the
        // services see the hold whole.
        gil.restore_guards(set_aside);
        let back = waiting.done(Waited::Granted);
        debug_assert!(back.is_ok(), "returning waiters are never closed");
        gil.watch_begin();
        if self.drop_request && handed && matches!(step, Step::Yield | Step::GiveBack) {
            gil.services_or_new()
                .counters
                .forced_drops
                .fetch_add(1, Relaxed);
            ThreadStats::count(|t| t.forced_drops += 1);
        }
    }
}
