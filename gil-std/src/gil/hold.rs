//! The one owner of a thread's hold: the only code that begins, ends, sets aside and resumes
//! a hold, counts its guards, and refuses what would break it.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::sync::AtomicBool;
use gil_core::{Absence, AtomicU32, Back, Step, Waited};

use super::region::Returning;
use super::{AcquireError, Gil, GilGuard, Waiting};
use crate::bits::{WATCH_CALLS, WATCH_HOOK, WATCH_INTERRUPTS, WATCH_SET_ASIDE, WATCH_TIMING};
use crate::clock::{nanos_at, now_nanos};
use crate::hooks::Event;
use crate::owner::{Doing, Frame};
use crate::threads::ThreadStats;

// The loan this thread holds: the lock (its address, plus 1 for a loan it asked for on the
// breaker, which it gives back with `RawGil::give_back`) and when the loan began (nanoseconds
// on the clock's epoch), or `(0, 0)`. The one record of "this thread borrows": thread-local,
// not a flag in the lock, because the borrower alone reads and writes it, and a shared word
// written at each loan's start and end would cross between the two cores of the loan twice
// more.
thread_locals! {
    static LOAN: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

/// A *loan*: the holder lends the lock out of turn at its checkpoint to a thread back from a
/// blocking region with credit that asked for it on the breaker (gil-core's `borrow_with`), and
/// gets it back as soon as the borrower lets go (`RawGil::give_back`). No queue, one
/// compare-and-swap each way. The borrower keeps the record, one per thread: the lock's address
/// and when the loan began.
///
/// This thread begins holding `lock` on loan at `now`.
pub(super) fn begin_loan<L>(lock: &L, now: u64) {
    let key = core::ptr::from_ref(lock) as usize;
    LOAN.with(|l| l.set((key, now)));
}

/// Whether this thread holds `lock` on loan. One thread-local load and a compare: every
/// release asks.
#[inline]
pub(super) fn on_loan<L>(lock: &L) -> bool {
    LOAN.with(|l| l.get().0) == core::ptr::from_ref(lock) as usize
}

/// Whether this thread holds a loan of any lock.
pub(super) fn holds_a_loan() -> bool {
    LOAN.with(|l| l.get().0 != 0)
}

/// The loan this thread holds ends at `now`: it spends the time held.
pub(super) fn end_loan(now: u64, interval: Duration) {
    let (_, since) = LOAN.with(|l| l.replace((0, 0)));
    crate::credit::spend(now.saturating_sub(since), interval);
}

/// What a hold keeps in its lock, beside the owner token: read and written only here, and
/// only by the thread holding the lock (the lock's hand-off orders one holder's accesses before
/// the next one's), hence Relaxed throughout.
#[derive(Debug)]
pub(crate) struct HoldState {
    /// How many guards the holder has beyond the one its hold began with (nested
    /// [`Gil::ensure`] guards, or a guard joined to a hold it already had): the hold ends when
    /// the last of its guards is dropped. Set aside by a holder that lets others hold meanwhile
    /// (`set_aside_guards`). Read at every release, next to `watch`, on a line that is only
    /// read while nobody nests.
    guards: AtomicU32,
    /// Checkpoints counted towards the holder's look at the clock by the callers that keep no
    /// count of their own ([`EnsureGuard::checkpoint`](super::EnsureGuard::checkpoint),
    /// [`Gil::wants_checkpoint`]): per hold, not per guard, so that a guard made anew in every
    /// callback still times the slice.
    ticks: AtomicU32,
    /// How many holds of the lock are set aside with their guards in a frame (a hand-over of a
    /// nested hold, or a region of [`EnsureGuard::allow_threads`](super::EnsureGuard::allow_threads)):
    /// their threads' guards outside prove nothing until they are back (`WATCH_SET_ASIDE`).
    set_aside: AtomicU32,
    /// The owner has lent the lock on the breaker and waits for it inside its checkpoint: the
    /// owner token stays its own (neither side writes it, on the line the loan passes on), but
    /// the holder is the borrower. Set once the lender has announced its release, cleared first
    /// thing when the loan is back (`hand_over_start`, `hand_over_end`).
    lending: AtomicBool,
}

impl HoldState {
    crate::sync::const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                guards: AtomicU32::new(0),
                ticks: AtomicU32::new(0),
                set_aside: AtomicU32::new(0),
                lending: AtomicBool::new(false),
            }
        }
    }
}

/// What [`Gil::set_aside_guards`] set aside, for [`Gil::restore_guards`]: the hold's other
/// guards, counted in a frame on the thread, and whether the hold is marked set aside.
#[must_use = "guards set aside come back with restore_guards"]
pub(crate) struct SetAside {
    frame: Option<Frame>,
    marked: bool,
}

/// A hold made by [`Gil::initialiser_hold`]; dropping it ends the hold.
pub(crate) enum InitialiserHold<'g> {
    /// On behalf of a hold set aside on this thread: every guard of the lock the initialiser
    /// joins or drops counts in that hold's frame, so this hold has only its own, and its end
    /// releases the lock.
    Resumed {
        gil: &'g Gil,
        /// The guard of the hold, never dropped as one: its drop would count out of the frame
        /// that holds the region's guards aside.
        _guard: ManuallyDrop<GilGuard<'g>>,
        resuming: crate::owner::Resuming,
    },
    /// No hold was set aside: a plain hold, which its guard ends.
    Plain { _guard: GilGuard<'g> },
}

impl SetAside {
    /// Nothing set aside.
    pub(crate) const NOTHING: Self = Self {
        frame: None,
        marked: false,
    };

    /// The guards of a hold set aside with its frame `frame`, marked set aside: a region of
    /// `EnsureGuard::allow_threads`.
    pub(crate) fn for_region(frame: Option<Frame>) -> Self {
        Self {
            frame,
            marked: true,
        }
    }

    /// Whether the guards are in a frame: the thread runs no code of the user's meanwhile.
    pub(crate) fn is_quiet(&self) -> bool {
        self.frame.is_some()
    }
}

impl Drop for InitialiserHold<'_> {
    fn drop(&mut self) {
        if let InitialiserHold::Resumed { gil, resuming, .. } = self {
            // The services see the release while the hold is whole; the thread is quiet
            // again before it lets go.
            gil.watch_end();
            resuming.holding(false);
            debug_assert_eq!(
                gil.hold.guards.load(Relaxed),
                0,
                "the initialiser's guards are aside"
            );
            gil.release_unwatched();
        }
    }
}

impl Gil {
    /// Counts a checkpoint on the hold's count; returns whether this one looks at the clock.
    pub(super) fn tick(&self) -> bool {
        // Relaxed: holder-only (see `HoldState`).
        let mut ticks = self.hold.ticks.load(Relaxed);
        let look = super::handover::count_tick(&mut ticks);
        self.hold.ticks.store(ticks, Relaxed);
        look
    }

    /// The calling thread has just taken the lock (back) for a guard that exists already: the
    /// pending calls wait for its next checkpoint.
    #[inline]
    pub(crate) fn begin_hold(&self) {
        self.owner.set_current();
        self.watch_begin();
    }

    /// `begin_hold` without what the watched services do (events, hold timing): for a hold
    /// whose guards come back first, so that the services see it whole (`watch_begin` next).
    #[inline]
    pub(crate) fn begin_hold_quietly(&self) {
        self.owner.set_current();
    }

    /// The calling thread has just taken the lock on a loan it asked for, or back from one it
    /// lent: the owner token stays the lender's throughout the loan (see `holds_here`), so
    /// that neither side writes it, on the line the loan passes on.
    #[inline]
    pub(crate) fn begin_loan_hold(&self) {
        self.watch_begin();
    }

    #[inline]
    pub(crate) fn watch_begin(&self) {
        let watch = self.watch.load();
        if watch != 0 {
            self.watch_hold(watch);
        }
    }

    /// A hand-over's start (the core's `Handover::letting_go`), once the wait's policy is
    /// made: what the services see of it while the hold is whole (the release, and the wait
    /// that follows), then the other guards go aside (from there until they are back, the
    /// thread runs no code of the user's if there are any, see `set_aside_guards`), then the
    /// hold ends as `step` lets it go. Returns what was set aside, for `hand_over_end`.
    pub(super) fn hand_over_start(&self, step: Step) -> SetAside {
        self.watch_end();
        self.emit(Event::Wants);
        let set_aside = self.set_aside_guards();
        match step {
            Step::HandOver => {
                self.end_hold_quietly();
            }
            // The loan ends here, before the give-back: a drop request to a borrower is rare,
            // and its wait in line follows at once.
            Step::GiveBack => {
                self.end_asked_loan();
            }
            Step::LendOnBreaker => self.hold.lending.store(true, Relaxed),
        }
        set_aside
    }

    /// A hand-over's end (the core's `Handover::back`): the hold begins again (the owner token,
    /// unless the step was a loan on the breaker, whose lender kept it), its guards come back
    /// (their frame is the innermost of this thread's), the wait is done, and then the
    /// services see the hold, whole. Returns whether the wait ended because the thread holds
    /// the lock another way: then the holder's guard, and those it set aside, join that hold,
    /// and the caller panics (`reentered_panic`) once the core is done.
    pub(super) fn hand_over_end(
        &self,
        step: Step,
        set_aside: SetAside,
        waiting: Waiting<'_>,
    ) -> bool {
        if step == Step::LendOnBreaker {
            self.hold.lending.store(false, Relaxed);
        }
        if waiting.reentered() {
            self.join_hold();
            self.restore_guards(set_aside);
            let _ = waiting.done(Waited::GaveUp);
            return true;
        }
        if step != Step::LendOnBreaker {
            self.begin_hold_quietly();
        }
        self.restore_guards(set_aside);
        let back = waiting.done(Waited::Granted);
        debug_assert!(back.is_ok(), "returning waiters are never closed");
        self.watch_begin();
        false
    }

    /// Whether the calling thread holds the lock: it owns it and has not lent it, or holds it
    /// on a loan it asked for (then the owner token stays the lender's, which waits inside a
    /// checkpoint meanwhile and does not hold: a hook running on the lender must not be told
    /// it does).
    #[inline]
    pub(crate) fn holds_here(&self) -> bool {
        (self.owner.is_current() && !self.hold.lending.load(Relaxed))
            || (!cfg!(bite = "loan-holder-unknown") && on_loan(self))
    }

    /// One more guard for the calling thread's hold (a nested `ensure`, or a blocking region
    /// that found the lock held again): the hold now ends one guard later. While a hold of this
    /// lock is set aside on this thread (`SetAside`), the guard counts there: the thread holds
    /// the lock now only to run an initialiser for that hold (`Blocking::get_or_init`), and
    /// the guard is that hold's.
    pub(crate) fn join_hold(&self) {
        self.refuse_in_hook();
        if self.watch.has(WATCH_SET_ASIDE) && crate::owner::count_set_aside(self, 1) {
            return;
        }
        self.add_guards(1);
    }

    /// A guard of the calling thread's hold is dropped: the hold ends with its last guard. A
    /// guard of a hold set aside on this thread counts out of the frame that holds it aside,
    /// wherever it is dropped (a hook, a thread-local's destructor).
    #[inline]
    pub(crate) fn drop_guard(&self) {
        let watch = self.watch.load();
        if watch != 0 {
            return self.drop_guard_watched(watch);
        }
        // Relaxed: see `HoldState`.
        let nested = self.hold.guards.load(Relaxed);
        if nested != 0 && !cfg!(bite = "hold-ends-with-first-guard") {
            return self.drop_nested(nested);
        }
        self.release_unwatched();
    }

    /// `drop_guard` with services watching.
    #[cold]
    fn drop_guard_watched(&self, watch: u32) {
        if watch & WATCH_SET_ASIDE != 0
            && !cfg!(bite = "set-aside-drops-not-counted")
            && crate::owner::count_set_aside(self, -1)
        {
            return;
        }
        // Relaxed: see `HoldState`.
        let nested = self.hold.guards.load(Relaxed);
        if nested != 0 {
            return self.drop_nested(nested);
        }
        self.release();
    }

    /// `drop_guard` of a guard that is not the hold's last.
    #[cold]
    fn drop_nested(&self, nested: u32) {
        // Relaxed: see `HoldState`.
        self.hold.guards.store(nested - 1, Relaxed);
    }

    /// The holder is about to let others hold while its guards live on (a hand-over or a loan
    /// inside a checkpoint): sets its count of extra guards aside, so that the next holder
    /// starts from none. If there are any, or the thread has another hold of this lock set
    /// aside already, the guards go into a `SetAside` frame on the thread until
    /// [`restore_guards`](Gil::restore_guards), and the hold is marked set aside: the thread
    /// runs no code of the user's meanwhile (`owner::is_quiet`), any use of one of those guards
    /// asks whether the thread holds (`refuse_stale`, `refuse_set_aside`), and a drop counts
    /// out of the frame. A write only when there are some.
    #[inline]
    pub(crate) fn set_aside_guards(&self) -> SetAside {
        let nested = self.hold.guards.load(Relaxed);
        if nested == 0 && !self.watch.has(WATCH_SET_ASIDE) {
            return SetAside::NOTHING;
        }
        self.set_aside_slow(nested)
    }

    #[cold]
    fn set_aside_slow(&self, nested: u32) -> SetAside {
        if nested == 0 && !crate::owner::has_set_aside(self) {
            return SetAside::NOTHING;
        }
        // The frame first: it is what may refuse (too many frames), before anything changes.
        let frame = Frame::set_aside(self, nested);
        if !cfg!(bite = "guards-not-set-aside") {
            self.hold.guards.store(0, Relaxed);
        }
        self.mark_set_aside(true);
        SetAside {
            frame: Some(frame),
            marked: true,
        }
    }

    /// For [`Blocking::get_or_init`](crate::Blocking::get_or_init): takes the lock inside a
    /// region of this thread's, to run an initialiser on behalf of the hold that region set
    /// aside. The hold's guards set aside on this thread stay where they are and count on (a
    /// guard joined or dropped by the initialiser counts there, see `join_hold`), and while
    /// the lock is held the thread runs the user's code again (see `owner::Resuming`). The hold
    /// ends with the value returned, which releases the lock directly.
    ///
    /// # Errors
    ///
    /// As [`acquire_checked`](Gil::acquire_checked).
    pub(crate) fn initialiser_hold(&self) -> Result<InitialiserHold<'_>, AcquireError> {
        let Some(mut resuming) = crate::owner::Resuming::begin(self) else {
            // No hold set aside (a plain guard's region): a hold like any, whose guard ends
            // it, or, if the initialiser keeps another guard of it, does not.
            let guard = self.acquire_checked()?;
            return Ok(InitialiserHold::Plain { _guard: guard });
        };
        let guard = ManuallyDrop::new(self.acquire_checked()?);
        resuming.holding(true);
        // Reported now: while it waited and took the lock, the thread was quiet.
        if !cfg!(bite = "an-initialiser-unreported") {
            self.emit(Event::Got);
        }
        Ok(InitialiserHold::Resumed {
            gil: self,
            _guard: guard,
            resuming,
        })
    }

    /// The holder holds again after `set_aside_guards`: the guards set aside (less those
    /// dropped meanwhile) count again, on top of the hold's own (none, unless the thread came
    /// to hold the lock another way meanwhile), and the hold is no longer set aside.
    #[inline]
    pub(crate) fn restore_guards(&self, set_aside: SetAside) {
        if let Some(frame) = set_aside.frame {
            let guards = frame.count();
            drop(frame);
            if !cfg!(bite = "guards-not-restored") {
                self.add_guards(guards);
            }
        }
        if set_aside.marked {
            self.mark_set_aside(false);
        }
    }

    /// Counts `guards` more guards of the calling thread's hold.
    pub(crate) fn add_guards(&self, guards: u32) {
        // Relaxed: read and written only by the holder (see `HoldState`).
        let nested = self.hold.guards.load(Relaxed);
        let nested = nested
            .checked_add(guards)
            .expect("gil: more than u32::MAX guards of one hold");
        self.hold.guards.store(nested, Relaxed);
    }

    /// Marks one more hold set aside (or one fewer): while any is, every use of a guard asks
    /// whether its thread holds the lock (`WATCH_SET_ASIDE`). Called by the holder only, before
    /// it lets go and after it is back, so the lock orders every change.
    pub(crate) fn mark_set_aside(&self, on: bool) {
        // Relaxed: see `HoldState`; the thread whose guards must be refused reads its own
        // write.
        let open = self.hold.set_aside.load(Relaxed);
        let open = if on { open + 1 } else { open - 1 };
        self.hold.set_aside.store(open, Relaxed);
        if open == u32::from(on) {
            self.watch.set(WATCH_SET_ASIDE, on);
        }
    }

    /// A blocking region may open only on a hold with one guard, the one opening it: any other
    /// guard of this thread (a nested `ensure`, or one of a hold set aside on this thread, which
    /// an initialiser run on that hold's behalf could reach) could reach what the lock protects
    /// while other threads hold it.
    ///
    /// # Panics
    ///
    /// If the hold has other guards.
    #[inline]
    pub(crate) fn refuse_region(&self) {
        if !cfg!(bite = "region-under-nested-guards")
            && (self.hold.guards.load(Relaxed) != 0
                || !cfg!(bite = "a-region-ignores-guards-set-aside")
                    && self.watch.has(WATCH_SET_ASIDE)
                    && crate::owner::set_aside_guards_alive(self))
        {
            region_with_guards_panic();
        }
    }

    /// What a region, which waits for the lock at its end, checks at its start, before it lets
    /// the lock go: a refusal at its end would come when another thread may hold the lock, with
    /// the region's guard unwinding as if this thread did. Refuses a region opened in code that
    /// a wait of this thread for the same lock runs (a task's waker, woken by this thread's
    /// hand-over, that polled its future inline), whose end would wait behind that wait, and
    /// makes sure the end's wait, and `frames` frames besides, will find room.
    ///
    /// # Panics
    ///
    /// In both cases, with a message that says which.
    pub(crate) fn refuse_waiting_region(&self, frames: usize) {
        if crate::owner::is_doing(self, Doing::Wait) {
            crate::sync::refusal(format_args!(
                "gil: a blocking region opened in code that a wait of this thread for the same \
                 Gil runs (a task's waker that polled its future inline?): its end would wait \
                 behind that wait for ever"
            ));
        }
        crate::owner::make_room(1 + frames);
    }

    #[cold]
    fn watch_hold(&self, watch: u32) {
        if watch & WATCH_TIMING != 0 {
            // Made by `set_hold_timing`, which set the bit.
            let counters = &self.services_or_new().counters;
            counters.held_since.store(now_nanos(), Relaxed);
        }
        if watch & WATCH_HOOK != 0 {
            self.emit_slow(Event::Got);
        }
        if watch & WATCH_INTERRUPTS != 0 {
            crate::interrupt::rearm(self.raw.breaker());
        }
    }

    /// The calling thread lets the lock go, once the watched services have seen the hold
    /// whole (`watch_end`): clears the owner token. Returns whether it holds the lock on loan
    /// instead: then it lets go only with `give_back_loan`, which also ends the loan, and the
    /// owner token stays the lender's (see `begin_loan_hold`).
    #[inline]
    pub(crate) fn end_hold_quietly(&self) -> bool {
        if on_loan(self) {
            return true;
        }
        self.owner.clear();
        false
    }

    /// The calling thread gives back the loan it asked for, then ends it: reads the clock, pays
    /// for the time held out of turn, and counts the acquisition. All of that after the
    /// give-back, off the lender's wait. The loan is charged from the start of the ask to this
    /// reading, a little more than it held: a clock read on either side of the hold would be
    /// paid by the lender, at every loan.
    /// Returns the reading.
    pub(crate) fn give_back_loan(&self) -> u64 {
        // SAFETY: the caller holds the lock on a loan it asked for (`end_hold` said so), and
        // stops using it.
        unsafe { self.raw.give_back() };
        self.end_asked_loan()
    }

    /// The loan this thread asked for ends: reads the clock, pays for the time held out of
    /// turn, and counts the acquisition (`give_back_loan` without the give-back). Returns the
    /// reading.
    pub(crate) fn end_asked_loan(&self) -> u64 {
        let now = now_nanos();
        end_loan(now, self.switch_interval());
        // A loan's wait is not timed: it ends at the grant, and reading the clock there would
        // hold up the lender (see `Stats::wait_time`).
        self.count_wait_nanos(0);
        now
    }

    /// The part of `end_hold` that the watched services need (hooks, hold timing), alone: for
    /// a thread about to lend the lock it was asked for, or to give back a loan it asked for,
    /// whose owner token stays the lender's (see `begin_loan_hold`).
    #[inline]
    pub(crate) fn watch_end(&self) {
        let watch = self.watch.load();
        if watch != 0 {
            self.watch_release(watch);
        }
    }

    /// Lets the lock go for good: gives a loan back, or unlocks.
    #[inline]
    pub(crate) fn release(&self) {
        self.watch_end();
        self.release_unwatched();
    }

    /// `release` once the watched services are done with the hold (or none watch).
    #[inline]
    fn release_unwatched(&self) {
        if self.end_hold_quietly() && !cfg!(bite = "loan-released-by-unlock") {
            self.give_back_loan();
        } else {
            // SAFETY: the caller holds the lock, not on a loan it asked for, and stops using
            // it.
            unsafe { self.raw.unlock() };
        }
    }

    #[cold]
    fn watch_release(&self, watch: u32) {
        if watch & WATCH_SET_ASIDE != 0 && !self.holds_here() {
            stale_guard_panic();
        }
        if watch & WATCH_HOOK != 0 {
            self.emit_slow(Event::Released);
        }
        if watch & WATCH_TIMING != 0 {
            self.count_hold();
        }
    }

    fn count_hold(&self) {
        // Made by `set_hold_timing`, which timed this hold.
        let c = &self.services_or_new().counters;
        let since = c.held_since.load(Relaxed);
        if since >= c.timing_since.load(Relaxed) {
            let held = now_nanos().saturating_sub(since);
            c.hold_nanos.fetch_add(held, Relaxed);
            ThreadStats::count(|t| t.hold_time += Duration::from_nanos(held));
        }
    }

    /// Marks the calling thread as the owner and makes its guard, then runs what a fresh hold
    /// must (see `owned_watched`). Call right after taking.
    #[inline]
    pub(crate) fn owned(&self) -> GilGuard<'_> {
        let watch = self.watch.load();
        if watch != 0 {
            return self.owned_watched(watch);
        }
        self.owner.set_current();
        GilGuard::new(self)
    }

    /// `owned` with services watching: those of every hold, then the pending calls queued
    /// while nobody held the lock, run with the hold's guard, so that a call that panics
    /// unwinds through the guard and the lock is released. Not while unwinding (an acquire in
    /// a destructor): a call that panicked then would abort the process. Nor on a quiet
    /// thread (an initialiser taking the lock on behalf of a hold set aside): that runs no code
    /// of the user's, and the guard's drop would count against the hold set aside instead of
    /// releasing. The next taking or checkpoint runs them.
    ///
    /// # Panics
    ///
    /// After letting the lock go again: inside this lock's hook (see `refuse_in_hook`), and on
    /// a thread that has a hold of this lock set aside with other guards alive (in a region of
    /// a nested guard), whose joins and drops of guards count in that hold (see
    /// `set_aside_guards`): the fresh hold's would be taken for its.
    #[cold]
    fn owned_watched(&self, watch: u32) -> GilGuard<'_> {
        if watch & WATCH_HOOK != 0 && crate::owner::is_in_hook(self) {
            // SAFETY: just taken by this thread (fresh, not a loan), and not used since.
            unsafe { self.raw.unlock() };
            in_hook_panic();
        }
        if watch & WATCH_SET_ASIDE != 0
            && !cfg!(bite = "a-fresh-hold-while-set-aside")
            && crate::owner::is_doing(self, Doing::SetAside)
        {
            // SAFETY: as above.
            unsafe { self.raw.unlock() };
            set_aside_panic();
        }
        self.owner.set_current();
        let guard = GilGuard::new(self);
        self.watch_hold(watch);
        if watch & WATCH_CALLS != 0 && !std::thread::panicking() && !crate::owner::is_quiet() {
            self.run_pending_calls(&guard);
        }
        guard
    }

    /// Refuses to wait for the lock on a thread that holds it (it would wait for itself for
    /// ever), or inside this lock's event hook (see `refuse_in_hook`).
    ///
    /// # Panics
    ///
    /// In both cases, with a message that says which.
    pub(crate) fn refuse_reentry(&self) {
        self.refuse_in_hook();
        if self.holds_here() {
            panic!(
                "gil: acquire() called on a thread that already holds this Gil, which would wait \
                 for itself for ever; use Gil::ensure() where code may run with the lock held"
            );
        }
    }

    /// Refuses to take, drop or use a guard of this lock inside its own event hook, at any
    /// depth (a hook of another lock that this lock's hook runs is inside it too): the hook
    /// may run half-way through a change of this thread's hold (its guards set aside, its
    /// release under way, its node queued), and a guard taken, dropped or used there would
    /// count against the wrong hold. Looks at the calling thread's frames, not at whether a
    /// hook is installed now: another thread may remove the hook while it runs.
    ///
    /// # Panics
    ///
    /// Inside a hook of this lock (the panic removes the hook; see `emit_slow`).
    #[inline]
    pub(crate) fn refuse_in_hook(&self) {
        if !cfg!(bite = "hooks-may-take-guards") && crate::owner::is_in_hook(self) {
            in_hook_panic();
        }
    }

    /// Refuses a use of a guard that proves nothing: on a thread whose hold is set aside by a
    /// region of [`EnsureGuard::allow_threads`], a guard kept outside the region's closure (in
    /// a thread-local) while the region runs; and any use inside this lock's event hook
    /// (`refuse_in_hook`). One relaxed load when neither can happen.
    ///
    /// # Panics
    ///
    /// In both cases, with a message that says which.
    #[inline]
    pub(crate) fn refuse_stale(&self) {
        self.refuse_in_hook();
        if self.watch.has(WATCH_SET_ASIDE) && !self.holds_here() {
            stale_guard_panic();
        }
    }

    /// For [`GilCell::get`](crate::GilCell::get): while some hold is set aside, a guard proves
    /// the lock only if its thread holds it. One relaxed load otherwise.
    ///
    /// # Panics
    ///
    /// If a hold is set aside and this thread does not hold the lock.
    #[inline]
    pub(crate) fn refuse_set_aside(&self) {
        if !cfg!(bite = "set-aside-guard-trusted")
            && self.watch.has(WATCH_SET_ASIDE)
            && !self.holds_here()
        {
            stale_guard_panic();
        }
    }

    /// A blocking region's start, for both forms: lets the lock go and says how, for
    /// `take_back`. The caller holds the lock through a guard it stops using until then.
    ///
    /// # Panics
    ///
    /// As `refuse_let_go`.
    pub(super) fn let_go(&self) -> Absence {
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
    /// set aside, so that any of them used before [`resume`] panics (`refuse_stale`,
    /// `refuse_set_aside`) instead of proving a hold that is gone, then lets go as `let_go`
    /// does. Returns how, and what was set aside, for `resume`.
    ///
    /// # Panics
    ///
    /// Inside this lock's hook, or with a guard that proves nothing (`refuse_stale`).
    ///
    /// [`resume`]: Gil::resume
    pub(super) fn let_go_set_aside(&self) -> (Absence, SetAside) {
        self.refuse_stale();
        // Room for the frame that sets the guards aside, and for an initialiser's wait.
        if !cfg!(bite = "a-suspension-refuses-after-setting-aside") {
            self.refuse_waiting_region(2);
        }
        self.announce_let_go();
        // Relaxed: see `HoldState`.
        let guards = self.hold.guards.load(Relaxed);
        self.hold.guards.store(0, Relaxed);
        self.mark_set_aside(true);
        // Cannot refuse: `refuse_waiting_region` made room, and the hooks that ran since have
        // ended their frames.
        let quiet = guards != 0 || crate::owner::has_set_aside(self);
        let frame = quiet.then(|| Frame::set_aside(self, guards));
        (self.let_go_quietly(), SetAside::for_region(frame))
    }

    /// The end of a `let_go_set_aside`ed region, once the lock is taken back: the guards set aside
    /// count again (on top of any a region that returned holding joined), and the hold is no
    /// longer set aside.
    pub(super) fn resume(&self, set_aside: SetAside) {
        self.restore_guards(set_aside);
    }

    /// `let_go` once the checks are made.
    pub(super) fn let_go_now(&self) -> Absence {
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
    fn let_go_quietly(&self) -> Absence {
        // One clock read for the region's start and, on a loan, the loan's end.
        let fast = self.fast_return.load(Relaxed);
        // A loan asked for goes back to its lender at once; the clock is read after, for the
        // loan's end and the region's start. Otherwise one read for both, and the lock goes
        // lazily: with threads waiting, the head is offered the lock and woken, and a region
        // that ends before it runs keeps this thread's turn (docs/design.md, "Blocking
        // regions").
        let asked = on_loan(self);
        let now = if asked {
            None
        } else {
            self.end_hold_quietly();
            fast.then(now_nanos)
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

    /// Takes the lock back after a blocking region. Succeeds even after `close`: the thread
    /// held the lock before and must be able to finish.
    ///
    /// A thread with credit asks for a loan (see `credit.rs`); otherwise, or if none is lent,
    /// it waits its turn in line. A
    /// `quiet` one (its hold set aside with other guards, see `set_aside_guards`) reports
    /// nothing while it takes the lock back, neither `Wants` nor `Got`: the caller reports
    /// them once the hold is whole again (`Retaken::waited`, `watch_begin`).
    pub(crate) fn take_back(&self, away: Absence, quiet: bool) -> Retaken {
        self.refuse_in_hook();
        // A thread that holds a loan of another lock comes back in line: the record of the
        // loan it holds is one per thread.
        let ahead = self.fast_return.load(Relaxed)
            && (cfg!(bite = "a-second-loan-overwrites-the-first") || !holds_a_loan());
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
            Back::BreakerLoan => {
                // Held out of turn from the ask on, paid for with credit (see
                // `begin_loan` and `Gil::give_back_loan`): no clock read while the
                // lender waits.
                let asked_at = returning.asked_at.expect("a loan is asked for with a time");
                begin_loan(self, nanos_at(asked_at));
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
            waited: matches!(back, Back::BreakerLoan | Back::Granted),
        }
    }
}

/// The closure regions' end: takes the lock back at `end`, or when dropped on unwinding from
/// the region, so that the guard the region borrows proves a hold in every frame that sees
/// it again.
pub(super) struct TakeBack<'a> {
    gil: &'a Gil,
    away: Absence,
    /// For a hold set aside (`Gil::let_go_set_aside`), what it set aside, for `Gil::resume`.
    set_aside: Option<SetAside>,
}

impl<'a> TakeBack<'a> {
    pub(super) fn let_go(gil: &'a Gil) -> Self {
        Self {
            gil,
            away: gil.let_go(),
            set_aside: None,
        }
    }

    pub(super) fn set_aside(gil: &'a Gil) -> Self {
        let (away, set_aside) = gil.let_go_set_aside();
        Self {
            gil,
            away,
            set_aside: Some(set_aside),
        }
    }

    /// Whether the hold is set aside with other guards: then the thread runs no code of the
    /// user's until it is whole again, and reports the region's end and its wait after that
    /// (see `Gil::take_back`).
    fn quiet(&self) -> bool {
        self.set_aside.as_ref().is_some_and(SetAside::is_quiet)
    }

    /// The region is over: takes the lock back, and a hold set aside resumes. Returns whether
    /// the thread came to hold the lock another way (see `Retaken::reentered`).
    fn finish(&mut self) -> bool {
        let gil = self.gil;
        let quiet = self.quiet();
        if !quiet {
            gil.emit(Event::BlockingLeft);
        }
        if !cfg!(bite = "region-ends-holding") && gil.holds_here() {
            // A guard of the lock came back from the region (or was leaked in it): it joins
            // the hold, so that the unwinding through both releases the lock once, after the
            // last.
            crate::credit::forget_region();
            gil.join_hold();
            self.resume(quiet, false);
            return true;
        }
        let back = gil.take_back(self.away, quiet);
        self.resume(quiet, back.waited);
        back.reentered
    }

    /// A hold set aside resumes; a quiet one then reports what it held back.
    fn resume(&mut self, quiet: bool, waited: bool) {
        let gil = self.gil;
        if let Some(set_aside) = self.set_aside.take() {
            gil.resume(set_aside);
        }
        if quiet {
            gil.emit(Event::BlockingLeft);
            if waited {
                gil.emit(Event::Wants);
            }
            gil.watch_begin();
        }
    }

    /// The region returned: as `finish`, with the panic of a thread that holds the lock
    /// again.
    pub(super) fn end(self) {
        let mut this = ManuallyDrop::new(self);
        let held = this.gil.holds_here();
        if this.finish() {
            if held {
                region_ended_held_panic();
            }
            super::reentered_panic();
        }
    }
}

impl Drop for TakeBack<'_> {
    /// Unwinding from the region: as `end`, without a second panic.
    fn drop(&mut self) {
        let _ = self.finish();
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

#[cold]
#[track_caller]
fn in_hook_panic() -> ! {
    panic!(
        "gil: an event hook took, dropped or used a guard of the Gil it reports on; a hook \
         must not, since it may run half-way through a hand-over of that lock"
    );
}

#[cold]
#[track_caller]
fn set_aside_panic() -> ! {
    panic!(
        "gil: this thread took a Gil whose hold it has set aside, with other guards of that \
         hold alive (in a region of a nested guard): they would count in the new hold; take \
         the lock after the region instead"
    );
}

/// A wait came to an end because the waiting thread holds the lock another way: code the wait
/// ran (a task's waker that polled its future inline) took it and kept the guard.
#[cold]
#[track_caller]
pub(crate) fn reentered_panic() -> ! {
    panic!(
        "gil: this thread came to hold the Gil while it waited to take it back (a waker that \
         polled its future inline, and kept the guard?), and waits for itself for ever; drop \
         such a guard before the wait it interrupts can end"
    );
}

#[cold]
#[track_caller]
fn stale_guard_panic() -> ! {
    panic!(
        "gil: a guard of this Gil was used on a thread that does not hold it: the thread's hold \
         is set aside by EnsureGuard::allow_threads, and the guard was reached from outside the \
         region's closure (a thread-local?); it proves nothing until the region ends"
    );
}

#[cold]
#[track_caller]
fn region_with_guards_panic() -> ! {
    panic!(
        "gil: a blocking region opened on a hold that has other guards on this thread (nested \
         ensure() guards), which could reach what the lock protects while other threads hold \
         it; drop them first, or keep the lock"
    );
}

#[cold]
#[track_caller]
fn region_ended_held_panic() -> ! {
    panic!(
        "gil: a blocking region returned with this thread holding the same Gil again (a guard \
         taken inside it was returned or leaked), which would wait for itself for ever to take \
         the lock back; drop guards taken inside a region before it ends"
    );
}
