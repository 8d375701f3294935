//! The checkpoint: its fast path, and the slow path's hand-overs and loans, whose hold
//! bookkeeping is `hold`'s.

use std::sync::atomic::Ordering::Relaxed;

use gil_core::{Handover, Step};

use super::hold::on_loan;

use super::{Gil, GilGuard, SetAside, WaitFor, Waiting};
use crate::bits::{CALLS, INTERRUPT, SLICE_TIMER};
use crate::clock::LOOK_EVERY;
use crate::hooks::Event;
use crate::interrupt::{Interrupted, take_own};
use crate::sync::Parking;
use crate::threads::ThreadStats;

/// Marks the branch that calls it as rarely taken, so the checkpoint's fast path (nothing
/// pending) falls through: without it, the counting for `SLICE_TIMER` is laid out inline and
/// the fast path jumps over it, which makes W1's checkpoint markedly slower (docs/benchmarks.md,
/// "The constants").
/// (`std::hint::cold_path` does this on newer Rust than our `rust-version`, 1.85.)
#[cold]
#[inline(always)]
fn unlikely() {}

/// Counts a checkpoint on `ticks`; returns whether this one looks at the clock (every
/// `LOOK_EVERY`th).
#[inline(always)]
#[cfg_attr(loom, allow(clippy::modulo_one))] // every checkpoint looks under loom
pub(super) fn count_tick(ticks: &mut u32) -> bool {
    *ticks = ticks.wrapping_add(1);
    *ticks % LOOK_EVERY == 0
}

impl Gil {
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

    /// `checkpoint_held` counting with the hold's count (`HoldState`), for guards that keep
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
        self.raw.has_waiters() || on_loan(self)
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
            if !self.slice_wanted()
                || !self.timer.slice_over()
                || cfg!(bite = "the-holder-never-ends-its-slice")
            {
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
            Step::HandOver | Step::GiveBack => {
                Waiting::new(gil, WaitFor::Turn, Some(crate::sync::now()), None, false)
            }
            // A lender reads the clock once it has lent instead: the borrower is spinning (no
            // wake-up), and a read here would hold up the loan.
            Step::LendOnBreaker => Waiting::new(gil, WaitFor::LoanBack, None, None, false),
        };
        self.set_aside = gil.hand_over_start(step);
        waiting
    }

    fn back(&mut self, step: Step, waiting: Waiting<'g>, handed: bool) {
        let gil = self.gil;
        let set_aside = core::mem::replace(&mut self.set_aside, SetAside::NOTHING);
        self.reentered = gil.hand_over_end(step, set_aside, waiting);
        if self.reentered {
            return;
        }
        if self.drop_request && handed && matches!(step, Step::HandOver | Step::GiveBack) {
            gil.services_or_new()
                .counters
                .forced_drops
                .fetch_add(1, Relaxed);
            ThreadStats::count(|t| t.forced_drops += 1);
        }
    }
}
