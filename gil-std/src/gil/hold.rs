//! The one owner of a thread's hold: the only code that begins, ends, sets aside and resumes
//! a hold, counts its guards, and refuses what would break it.

use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use gil_core::{Away, Back};

use super::region::Returning;
use super::{AcquireError, Gil, GilGuard};
use crate::bits::{WATCH_CALLS, WATCH_HOOK, WATCH_INTERRUPTS, WATCH_SUSPENDED, WATCH_TIMING};
use crate::clock::{nanos_at, now_nanos};
use crate::credit::Borrowed;
use crate::hooks::Event;
use crate::owner::{Doing, Frame};
use crate::threads::ThreadStats;

/// What [`Gil::set_aside_guards`] set aside, for [`Gil::restore_guards`]: the hold's other
/// guards, counted in a frame on the thread, and whether the hold is marked suspended.
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

    /// The guards of a hold set aside with its frame `frame`, marked suspended: a region of
    /// `EnsureGuard::allow_threads`.
    pub(crate) fn suspended(frame: Option<Frame>) -> Self {
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
                gil.nested.load(Relaxed),
                0,
                "the initialiser's guards are aside"
            );
            gil.release_unwatched();
        }
    }
}

impl Gil {
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

    /// Whether the calling thread holds the lock: it owns it and has not lent it, or holds it
    /// on a loan it asked for (then the owner token stays the lender's, which waits inside a
    /// checkpoint meanwhile and does not hold: a hook running on the lender must not be told
    /// it does).
    #[inline]
    pub(crate) fn holds_here(&self) -> bool {
        (self.owner.is_current() && !self.raw.is_lent())
            || (!cfg!(bite = "loan-holder-unknown")
                && crate::credit::on_loan(self) == Some(Borrowed::OnBreaker))
    }

    /// One more guard for the calling thread's hold (a nested `ensure`, or a blocking region
    /// that found the lock held again): the hold now ends one guard later. While a hold of this
    /// lock is set aside on this thread (`SetAside`), the guard counts there: the thread holds
    /// the lock now only to run an initialiser for that hold (`Blocking::get_or_init`), and
    /// the guard is that hold's.
    pub(crate) fn join_hold(&self) {
        self.refuse_in_hook();
        if self.watch.has(WATCH_SUSPENDED) && crate::owner::count_set_aside(self, 1) {
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
        // Relaxed: see `Gil::nested`.
        let nested = self.nested.load(Relaxed);
        if nested != 0 && !cfg!(bite = "hold-ends-with-first-guard") {
            return self.drop_nested(nested);
        }
        self.release_unwatched();
    }

    /// `drop_guard` with services watching.
    #[cold]
    fn drop_guard_watched(&self, watch: u32) {
        if watch & WATCH_SUSPENDED != 0
            && !cfg!(bite = "set-aside-drops-not-counted")
            && crate::owner::count_set_aside(self, -1)
        {
            return;
        }
        // Relaxed: see `Gil::nested`.
        let nested = self.nested.load(Relaxed);
        if nested != 0 {
            return self.drop_nested(nested);
        }
        self.release();
    }

    /// `drop_guard` of a guard that is not the hold's last.
    #[cold]
    fn drop_nested(&self, nested: u32) {
        // Relaxed: see `Gil::nested`.
        self.nested.store(nested - 1, Relaxed);
    }

    /// The holder is about to let others hold while its guards live on (a hand-over or a loan
    /// inside a checkpoint): sets its count of extra guards aside, so that the next holder
    /// starts from none. If there are any, or the thread has another hold of this lock set
    /// aside already, the guards go into a `SetAside` frame on the thread until
    /// [`restore_guards`](Gil::restore_guards), and the hold is marked suspended: the thread
    /// runs no code of the user's meanwhile (`owner::is_quiet`), any use of one of those guards
    /// asks whether the thread holds (`refuse_stale`, `refuse_suspended`), and a drop counts
    /// out of the frame. A write only when there are some.
    #[inline]
    pub(crate) fn set_aside_guards(&self) -> SetAside {
        let nested = self.nested.load(Relaxed);
        if nested == 0 && !self.watch.has(WATCH_SUSPENDED) {
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
            self.nested.store(0, Relaxed);
        }
        self.mark_suspended(true);
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
    /// to hold the lock another way meanwhile), and the hold is no longer suspended.
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
            self.mark_suspended(false);
        }
    }

    /// Counts `guards` more guards of the calling thread's hold.
    pub(crate) fn add_guards(&self, guards: u32) {
        // Relaxed: read and written only by the holder (see `Gil::nested`).
        let nested = self.nested.load(Relaxed);
        let nested = nested
            .checked_add(guards)
            .expect("gil: more than u32::MAX guards of one hold");
        self.nested.store(nested, Relaxed);
    }

    /// Marks one more hold suspended (or one fewer): while any is, every use of a guard asks
    /// whether its thread holds the lock (`WATCH_SUSPENDED`). Called by the holder only, before
    /// it lets go and after it is back, so the lock orders every change.
    pub(crate) fn mark_suspended(&self, on: bool) {
        // Relaxed: see `Gil::suspended`; the thread whose guards must be refused reads its own
        // write.
        let open = self.suspended.load(Relaxed);
        let open = if on { open + 1 } else { open - 1 };
        self.suspended.store(open, Relaxed);
        if open == u32::from(on) {
            self.watch.set(WATCH_SUSPENDED, on);
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
            && (self.nested.load(Relaxed) != 0
                || !cfg!(bite = "a-region-ignores-guards-set-aside")
                    && self.watch.has(WATCH_SUSPENDED)
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
    /// whole (`watch_end`): ends a loan in line it holds (at `now`, if the caller has just read
    /// the clock, as a blocking region does for its credit, or at the clock's time), and clears
    /// the owner token. Returns whether it holds the lock on a loan it asked for: then it lets
    /// go only with `give_back_loan`, which also ends the loan.
    #[inline]
    pub(crate) fn end_hold_quietly(&self, now: Option<u64>) -> bool {
        match crate::credit::on_loan(self) {
            // Ended once given back (`give_back_loan`); the owner token stays the lender's (see
            // `begin_loan_hold`).
            Some(Borrowed::OnBreaker) => return true,
            Some(Borrowed::InLine) => self.end_loan(now),
            None => {}
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
        self.end_loan(Some(now));
        // A loan's wait is not timed: it ends at the grant, and reading the clock there would
        // hold up the lender (see `Stats::wait_time`).
        self.count_waited(Duration::ZERO);
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
        if self.end_hold_quietly(None) && !cfg!(bite = "loan-released-by-unlock") {
            self.give_back_loan();
        } else {
            // SAFETY: the caller holds the lock, not on a loan it asked for, and stops using
            // it.
            unsafe { self.raw.unlock() };
        }
    }

    /// The loan this thread holds ends (at `now`, or the clock's time): it pays for the time
    /// held out of turn.
    #[cold]
    fn end_loan(&self, now: Option<u64>) {
        crate::credit::end_loan(now.unwrap_or_else(now_nanos), self.switch_interval());
    }

    #[cold]
    fn watch_release(&self, watch: u32) {
        if watch & WATCH_SUSPENDED != 0 && !self.holds_here() {
            suspended_panic();
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
        if watch & WATCH_SUSPENDED != 0
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

    /// Refuses a use of a guard that proves nothing: on a thread whose hold is suspended by a
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
        if self.watch.has(WATCH_SUSPENDED) && !self.holds_here() {
            suspended_panic();
        }
    }

    /// For [`GilCell::get`](crate::GilCell::get): while some hold is suspended, a guard proves
    /// the lock only if its thread holds it. One relaxed load otherwise.
    ///
    /// # Panics
    ///
    /// If a hold is suspended and this thread does not hold the lock.
    #[inline]
    pub(crate) fn refuse_suspended(&self) {
        if !cfg!(bite = "suspended-guard-trusted")
            && self.watch.has(WATCH_SUSPENDED)
            && !self.holds_here()
        {
            suspended_panic();
        }
    }

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
fn suspended_panic() -> ! {
    panic!(
        "gil: a guard of this Gil was used on a thread that does not hold it: the thread's hold \
         is suspended by EnsureGuard::allow_threads, and the guard was reached from outside the \
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
