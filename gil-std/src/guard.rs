//! Guards: proof that the calling thread holds a `Gil`, and the ways to let go for a while.

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use gil_core::{Away, Breaker, WaitPolicy, Waited};

use crate::bits::{CALLS, INTERRUPT, PRIORITY, SLICE_TIMER};
use crate::clock::{LOOK_EVERY, nanos_at, now_nanos};
use crate::gil::{Gil, LOAN_SPIN, Node, Turn, Waiting};
use crate::hooks::Event;
use crate::interrupt::{Interrupted, Region, take_own};
use crate::sync::StayAwake;
use crate::threads::ThreadStats;

/// Proof that this thread holds a [`Gil`]; releases it when dropped.
///
/// Neither `Send` nor `Sync`: the lock belongs to the thread that took it, and data reached
/// through the guard (see [`GilCell`](crate::GilCell)) must not be shared with other threads
/// through it.
///
/// ```compile_fail,E0277
/// fn must_be_send<T: Send>(_: T) {}
/// let gil = gil_std::Gil::new();
/// must_be_send(gil.acquire());
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct GilGuard<'a> {
    gil: &'a Gil,
    /// Checkpoints counted while the holder times its own slice; see [`Gil::checkpoint_held`].
    ticks: u32,
    _not_send_or_sync: PhantomData<*const ()>,
}

impl<'a> GilGuard<'a> {
    /// The caller has just taken `gil` on this thread.
    #[inline]
    pub(crate) fn new(gil: &'a Gil) -> Self {
        Self {
            gil,
            ticks: 0,
            _not_send_or_sync: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn gil(&self) -> &'a Gil {
        self.gil
    }

    /// A guard for code the holder runs on its own behalf (pending calls, breaker handlers) to
    /// prove the lock with. The calling thread holds `gil`; the guard must not release it when
    /// it goes, hence `ManuallyDrop`.
    pub(crate) fn borrowed(gil: &'a Gil) -> ManuallyDrop<Self> {
        ManuallyDrop::new(Self::new(gil))
    }

    /// Call this often from the hot loop. With nothing pending it is one relaxed load and a
    /// branch. While other threads wait for the lock, it also counts, and every 256th
    /// checkpoint reads the clock, so that this thread hands over as soon as its switch
    /// interval is over. Otherwise, in this order, it runs the [pending calls](Gil::add_pending_call) and
    /// the handlers of raised [runtime bits](Gil::raise); when another thread asked for the
    /// lock, it hands the lock to the longest waiter and returns once this thread has it back,
    /// after everyone who was waiting.
    ///
    /// # Errors
    ///
    /// [`Interrupted`] when this thread was interrupted through an
    /// [`InterruptHandle`](crate::InterruptHandle); the lock is still held. Each interrupt is
    /// reported once.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let mut guard = gil.acquire();
    /// gil.request_drop(); // nobody waits: the request is cleared, the holder goes on
    /// guard.checkpoint().expect("nobody interrupts this thread");
    /// assert_eq!(gil.stats().forced_drops, 0);
    /// ```
    #[inline]
    pub fn checkpoint(&mut self) -> Result<(), Interrupted> {
        self.gil.checkpoint_held(&mut self.ticks)
    }

    /// Hands the lock to the longest waiter if anyone waits, and waits to get it back behind
    /// everyone who was waiting. Returns whether it handed over.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let other_ran = AtomicBool::new(false);
    /// let mut guard = gil.acquire();
    /// assert!(!guard.yield_now(), "nobody waits");
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let _g = gil.acquire();
    ///         other_ran.store(true, Ordering::Relaxed);
    ///     });
    ///     while !gil.has_waiters() {
    ///         std::thread::yield_now();
    ///     }
    ///     assert!(guard.yield_now());
    ///     assert!(other_ran.load(Ordering::Relaxed), "it ran before we got the lock back");
    /// });
    /// ```
    pub fn yield_now(&mut self) -> bool {
        self.gil.hand_off()
    }

    /// Runs `f` without the lock — the blocking region around I/O, a sleep, or a call into
    /// foreign code — and takes the lock back before returning, behind everyone who was waiting.
    ///
    /// If `f` panics, the lock is taken back before the panic goes on unwinding, so the guard
    /// is valid in every frame that sees it. Data borrowed through the guard cannot be used
    /// inside the region: the borrow checker refuses it, because the region needs the guard
    /// mutably.
    ///
    /// # Panics
    ///
    /// - If this thread has other guards of the lock (nested [`Gil::ensure`] guards): they
    ///   could reach what the lock protects while other threads hold it.
    /// - If `f` returns with the lock held by this thread again (it took the lock and kept the
    ///   guard, or returned it): taking it back would wait for itself. The panic unwinds
    ///   through both guards, and the lock is released once both are gone.
    ///
    /// ```
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static COUNT: GilCell<std::cell::Cell<u32>> = GilCell::new(&GIL, std::cell::Cell::new(0));
    ///
    /// let mut guard = GIL.acquire();
    /// COUNT.get(&guard).set(1);
    /// let read = guard.allow_threads(|| std::fs::read_to_string("/dev/null"));
    /// assert!(read.is_ok());
    /// assert_eq!(COUNT.get(&guard).get(), 1);
    /// ```
    ///
    /// ```compile_fail,E0502
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static NAME: GilCell<String> = GilCell::new(&GIL, String::new());
    ///
    /// let mut guard = GIL.acquire();
    /// let name: &String = NAME.get(&guard);
    /// guard.allow_threads(|| println!("{name}")); // error: `guard` is borrowed by `name`
    /// ```
    pub fn allow_threads<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let region = TakeBack::let_go(self.gil);
        let result = f();
        region.end();
        result
    }

    /// As [`allow_threads`](GilGuard::allow_threads), with an *unblock function* (Ruby's
    /// `ubf`): if this thread is [interrupted](crate::InterruptHandle::interrupt) while `f`
    /// runs, or was before it began, `unblock` is called to make `f` return early — shut down
    /// the socket `f` reads, wake the condition variable it waits on. The interrupt itself is
    /// reported by the first checkpoint after the region.
    ///
    /// `unblock` runs on the interrupting thread (or on this one, when the interrupt came
    /// first), perhaps more than once; it must be quick and safe to repeat. The region does
    /// not end while it runs.
    ///
    /// # Panics
    ///
    /// As [`allow_threads`](GilGuard::allow_threads).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use gil_std::Gil;
    ///
    /// static GIL: Gil = Gil::new();
    ///
    /// let mut guard = GIL.acquire();
    /// let handle = GIL.interrupt_handle();
    /// let (wake, wait) = mpsc::channel::<()>();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     handle.interrupt();
    /// });
    /// // Blocks until a message comes; the unblock function sends one.
    /// guard.allow_threads_with_unblock(|| wait.recv().unwrap(), || wake.send(()).unwrap());
    /// assert!(guard.checkpoint().is_err(), "the interrupt is reported after the region");
    /// ```
    pub fn allow_threads_with_unblock<R>(
        &mut self,
        f: impl FnOnce() -> R,
        unblock: impl Fn() + Sync,
    ) -> R {
        let region = TakeBack::let_go(self.gil);
        let result = {
            // Dropped before `region`: the function is unregistered before the lock is taken
            // back, and before `unblock` goes out of scope, also on unwinding.
            let _unblock = Region::enter(&unblock);
            f()
        };
        region.end();
        result
    }

    /// The RAII form of [`allow_threads`](GilGuard::allow_threads): releases the lock now and
    /// hands back what [`relock`](Unlocked::relock) turns into a guard again. The guard is
    /// taken by value, so nothing borrowed through it outlives the release.
    ///
    /// Dropping the [`Unlocked`] instead (or leaking it) ends the hold for good: the lock is
    /// not taken back, and no guard is left to say it is held.
    ///
    /// # Panics
    ///
    /// If this thread has other guards of the lock (nested [`Gil::ensure`] guards), as
    /// [`allow_threads`](GilGuard::allow_threads).
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let guard = gil.acquire();
    /// let away = guard.unlock();
    /// assert!(!gil.is_held_by_current_thread());
    /// // blocking work
    /// let guard = away.relock();
    /// assert!(gil.is_held_by_current_thread());
    /// # drop(guard);
    /// ```
    ///
    /// The guard is gone while the lock is let go:
    ///
    /// ```compile_fail,E0382
    /// use std::cell::Cell;
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static COUNT: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    ///
    /// let guard = GIL.acquire();
    /// std::mem::forget(guard.unlock());
    /// COUNT.get(&guard).set(1); // error: `guard` was moved into `unlock`
    /// ```
    pub fn unlock(self) -> Unlocked<'a> {
        let this = ManuallyDrop::new(self);
        Unlocked {
            gil: this.gil,
            away: this.gil.let_go(),
            ticks: this.ticks,
            _not_send_or_sync: PhantomData,
        }
    }
}

impl Drop for GilGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard proves this thread holds the lock, and this is its last use; the hold
        // ends with its last guard.
        self.gil.drop_guard();
    }
}

impl fmt::Debug for GilGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GilGuard").finish_non_exhaustive()
    }
}

/// A blocking region in RAII form, made by [`GilGuard::unlock`]: the lock is let go, and
/// [`relock`](Unlocked::relock) takes it back as a guard.
///
/// Neither `Send` nor `Sync`, like the guard it came from: the lock is taken back by the
/// thread that let it go. Dropping it ends the hold for good, with nothing to take back.
#[must_use = "dropping it ends the hold for good; call relock() to take the lock back"]
pub struct Unlocked<'a> {
    gil: &'a Gil,
    /// How the lock was let go: `None` for a loan given back.
    away: Option<Away>,
    /// The guard's, kept for the guard `relock` makes.
    ticks: u32,
    _not_send_or_sync: PhantomData<*const ()>,
}

impl<'a> Unlocked<'a> {
    /// Takes the lock back, behind everyone who was waiting (or at once, with the fast
    /// return's credit; see [`Gil::set_fast_return`]), and returns its guard.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock again already (it took it meanwhile and keeps the
    /// guard): it would wait for itself. Drop that guard first.
    pub fn relock(self) -> GilGuard<'a> {
        let this = ManuallyDrop::new(self);
        let gil = this.gil;
        gil.emit(Event::BlockingLeft);
        if gil.holds_here() {
            crate::credit::forget_region();
            relock_held_panic();
        }
        gil.take_back(this.away);
        GilGuard {
            gil,
            ticks: this.ticks,
            _not_send_or_sync: PhantomData,
        }
    }

    /// The lock let go.
    pub fn gil(&self) -> &'a Gil {
        self.gil
    }
}

impl Drop for Unlocked<'_> {
    fn drop(&mut self) {
        // Not relocked: the region ends without the lock, for good.
        self.gil.emit(Event::BlockingLeft);
        crate::credit::forget_region();
    }
}

impl fmt::Debug for Unlocked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked").finish_non_exhaustive()
    }
}

/// The closure regions' end: takes the lock back at `end`, or when dropped on unwinding from
/// the region, so that the guard the region borrows proves a hold in every frame that sees
/// it again.
struct TakeBack<'a> {
    gil: &'a Gil,
    away: Option<Away>,
}

impl<'a> TakeBack<'a> {
    fn let_go(gil: &'a Gil) -> Self {
        Self {
            gil,
            away: gil.let_go(),
        }
    }

    /// The region returned. The lock held by this thread again means a guard of it came back
    /// from the region (or was leaked in it): that guard joins the hold, so that the panic's
    /// unwinding through both releases the lock once, after the last.
    fn end(self) {
        let this = ManuallyDrop::new(self);
        this.gil.emit(Event::BlockingLeft);
        if this.gil.holds_here() {
            crate::credit::forget_region();
            this.gil.join_hold();
            region_ended_held_panic();
        }
        this.gil.take_back(this.away);
    }
}

impl Drop for TakeBack<'_> {
    /// Unwinding from the region: as `end`, without a second panic.
    fn drop(&mut self) {
        self.gil.emit(Event::BlockingLeft);
        if self.gil.holds_here() {
            crate::credit::forget_region();
            self.gil.join_hold();
            return;
        }
        self.gil.take_back(self.away);
    }
}

#[cold]
#[track_caller]
fn relock_held_panic() -> ! {
    panic!(
        "gil: relock() on a thread that holds this Gil again (it took the lock during the \
         region and keeps the guard), which would wait for itself for ever; drop that guard \
         before relocking"
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

/// What [`Gil::ensure`] returns: either a guard of its own (this thread did not hold the lock)
/// or a nested one (it did, further up the stack).
///
/// Both run [`checkpoint`](EnsureGuard::checkpoint)s and reach [`GilCell`](crate::GilCell)s,
/// and both keep the hold: it ends when the thread's last guard of it is dropped. Only an
/// acquiring one can open a blocking region, through [`guard_mut`](EnsureGuard::guard_mut),
/// and only while no nested guard lives (the region panics otherwise): a frame further up may
/// still be using data it borrowed under the lock, and it must not run concurrently with
/// another holder.
///
/// ```
/// use gil_std::Gil;
///
/// static GIL: Gil = Gil::new();
///
/// fn callback() -> u32 {
///     let mut g = GIL.ensure();
///     g.checkpoint().unwrap();
///     match g.guard_mut() {
///         // We took the lock ourselves: blocking work may release it.
///         Some(guard) => guard.allow_threads(|| 1),
///         // A caller up the stack holds it: keep it.
///         None => 2,
///     }
/// }
///
/// assert_eq!(callback(), 1);
/// let _outer = GIL.acquire();
/// assert_eq!(callback(), 2);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct EnsureGuard<'a> {
    gil: &'a Gil,
    /// As [`GilGuard`]'s.
    ticks: u32,
    acquired: Option<GilGuard<'a>>,
    _not_send_or_sync: PhantomData<*const ()>,
}

impl<'a> EnsureGuard<'a> {
    pub(crate) fn nested(gil: &'a Gil) -> Self {
        Self {
            gil,
            ticks: 0,
            acquired: None,
            _not_send_or_sync: PhantomData,
        }
    }

    pub(crate) fn acquired(guard: GilGuard<'a>) -> Self {
        Self {
            gil: guard.gil,
            ticks: 0,
            acquired: Some(guard),
            _not_send_or_sync: PhantomData,
        }
    }

    /// Whether this thread already held the lock when `ensure` was called.
    pub fn is_nested(&self) -> bool {
        self.acquired.is_none()
    }

    /// The lock this guard holds.
    pub fn gil(&self) -> &'a Gil {
        self.gil
    }

    /// As [`GilGuard::checkpoint`]. In a nested guard, the thread may hand the lock on while
    /// outer frames are suspended; they see the lock held again when they resume.
    ///
    /// # Errors
    ///
    /// [`Interrupted`], as for [`GilGuard::checkpoint`].
    #[inline]
    pub fn checkpoint(&mut self) -> Result<(), Interrupted> {
        self.gil.checkpoint_held(&mut self.ticks)
    }

    /// The guard that `ensure` acquired, for blocking regions; `None` when nested.
    pub fn guard_mut(&mut self) -> Option<&mut GilGuard<'a>> {
        self.acquired.as_mut()
    }
}

impl Drop for EnsureGuard<'_> {
    fn drop(&mut self) {
        // An acquiring guard's hold ends with the guard it owns, dropped next.
        if self.acquired.is_none() {
            self.gil.drop_guard();
        }
    }
}

impl fmt::Debug for EnsureGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnsureGuard")
            .field("nested", &self.is_nested())
            .finish()
    }
}

/// Guards that prove the calling thread holds a particular [`Gil`]: what
/// [`GilCell::get`](crate::GilCell::get) takes. Sealed.
///
/// ```
/// use std::cell::Cell;
/// use gil_std::{Gil, GilCell, Holds};
///
/// static GIL: Gil = Gil::new();
/// static HITS: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
///
/// fn hit(proof: &impl Holds) {
///     let hits = HITS.get(proof);
///     hits.set(hits.get() + 1);
/// }
///
/// hit(&GIL.acquire());
/// hit(&GIL.ensure());
/// assert_eq!(HITS.get(&GIL.acquire()).get(), 2);
/// ```
pub trait Holds: sealed::Sealed {
    /// The lock held.
    fn held(&self) -> &Gil;
}

impl Holds for GilGuard<'_> {
    fn held(&self) -> &Gil {
        self.gil
    }
}

impl Holds for EnsureGuard<'_> {
    fn held(&self) -> &Gil {
        self.gil
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::GilGuard<'_> {}
    impl Sealed for super::EnsureGuard<'_> {}
}

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
    fn let_go(&self) -> Option<Away> {
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
        if crate::credit::on_loan(self) == Some(crate::credit::Lent::Asked) {
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
            if !self.slice_over() {
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
            // Relaxed: a report only; the request itself came with the breaker's Acquire.
            if self.clock_asked.load(Relaxed) {
                self.clock_asked.store(false, Relaxed);
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
        if crate::credit::on_loan(self) == Some(crate::credit::Lent::Asked) {
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
                    u64::from(self.waiting.load(Relaxed)) + 2,
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
                crate::credit::begin_loan(self, nanos_at(start), crate::credit::Lent::Asked);
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
