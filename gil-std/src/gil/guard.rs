//! Guards: proof that the calling thread holds a `Gil`, and the ways to let go for a while.

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use gil_core::Absence;

use super::Gil;
use super::hold::TakeBack;
use crate::hooks::Event;
use crate::interrupt::{Interrupted, Region};

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
    /// assert!(!guard.hand_over(), "nobody waits");
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let _g = gil.acquire();
    ///         other_ran.store(true, Ordering::Relaxed);
    ///     });
    ///     while !gil.has_waiters() {
    ///         std::thread::yield_now();
    ///     }
    ///     assert!(guard.hand_over());
    ///     assert!(other_ran.load(Ordering::Relaxed), "it ran before we got the lock back");
    /// });
    /// ```
    pub fn hand_over(&mut self) -> bool {
        self.gil.hand_over()
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
        // Before the guard is taken apart: a refusal unwinds through it whole.
        self.gil.refuse_let_go();
        let this = ManuallyDrop::new(self);
        Unlocked {
            gil: this.gil,
            away: this.gil.let_go_now(),
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
    /// How the lock was let go, for `take_back`.
    away: Absence,
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
        if !cfg!(bite = "relock-while-holding") && self.gil.holds_here() {
            // Before it is taken apart: its drop ends the region without the lock.
            relock_held_panic();
        }
        self.gil.refuse_waiting_region(0);
        let this = ManuallyDrop::new(self);
        let gil = this.gil;
        gil.emit(Event::BlockingLeft);
        let back = gil.take_back(this.away, false);
        let guard = GilGuard {
            gil,
            ticks: this.ticks,
            _not_send_or_sync: PhantomData,
        };
        if back.reentered {
            // The guard joined the hold this thread came to have while it waited.
            super::reentered_panic();
        }
        guard
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

#[cold]
#[track_caller]
fn relock_held_panic() -> ! {
    panic!(
        "gil: relock() on a thread that holds this Gil again (it took the lock during the \
         region and keeps the guard), which would wait for itself for ever; drop that guard \
         before relocking"
    );
}

/// What [`Gil::ensure`] returns: either a guard of its own (this thread did not hold the lock)
/// or a nested one (it did, further up the stack).
///
/// Both run [`checkpoint`](EnsureGuard::checkpoint)s, reach [`GilCell`](crate::GilCell)s and
/// open blocking regions with [`allow_threads`](EnsureGuard::allow_threads), whose closure must
/// be `Send` (a frame further up may still be using data it borrowed under the lock); and both
/// keep the hold: it ends when the thread's last guard of it is dropped. An acquiring one
/// turns into the [`GilGuard`] it holds ([`into_guard`](EnsureGuard::into_guard)), whose
/// regions take any closure but refuse to open while a nested guard lives.
///
/// ```
/// use gil_std::Gil;
///
/// static GIL: Gil = Gil::new();
///
/// fn callback() -> u32 {
///     let mut g = GIL.ensure();
///     g.checkpoint().unwrap();
///     match g.into_guard() {
///         // We took the lock ourselves: blocking work may release it.
///         Ok(mut guard) => guard.allow_threads(|| 1),
///         // A caller up the stack holds it: keep it.
///         Err(_nested) => 2,
///     }
/// }
///
/// assert_eq!(callback(), 1);
/// let _outer = GIL.acquire();
/// assert_eq!(callback(), 2);
/// ```
///
/// What proves the lock is the guard itself, which names its lock and cannot be reached
/// mutably from outside: nothing can swap another lock's guard in while the `EnsureGuard` still
/// answers for the first.
///
/// ```compile_fail,E0599
/// use gil_std::Gil;
///
/// let (a, b) = (Gil::new(), Gil::new());
/// let mut ensured = a.ensure();
/// // error: no `&mut GilGuard` to replace
/// drop(std::mem::replace(ensured.guard_mut().unwrap(), b.acquire()));
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct EnsureGuard<'a> {
    hold: Ensured<'a>,
}

/// What an [`EnsureGuard`] is, with the lock named once, by what holds it.
enum Ensured<'a> {
    /// `ensure` took the lock: its guard.
    Acquired(GilGuard<'a>),
    /// The thread held it already: one more guard of that hold.
    Nested(Nested<'a>),
}

/// A guard of a hold that began before it: dropping it ends the hold only if it is the last.
struct Nested<'a> {
    gil: &'a Gil,
    _not_send_or_sync: PhantomData<*const ()>,
}

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        self.gil.drop_guard();
    }
}

impl<'a> EnsureGuard<'a> {
    /// A guard of the calling thread's hold of `gil`, which has joined it already.
    pub(crate) fn nested(gil: &'a Gil) -> Self {
        Self {
            hold: Ensured::Nested(Nested {
                gil,
                _not_send_or_sync: PhantomData,
            }),
        }
    }

    pub(crate) fn acquired(guard: GilGuard<'a>) -> Self {
        Self {
            hold: Ensured::Acquired(guard),
        }
    }

    /// Whether this thread already held the lock when `ensure` was called.
    pub fn is_nested(&self) -> bool {
        matches!(self.hold, Ensured::Nested(_))
    }

    /// The lock this guard holds.
    pub fn gil(&self) -> &'a Gil {
        match &self.hold {
            Ensured::Acquired(guard) => guard.gil,
            Ensured::Nested(nested) => nested.gil,
        }
    }

    /// As [`GilGuard::checkpoint`]. In a nested guard, the thread may hand the lock on while
    /// outer frames are set aside; they see the lock held again when they resume.
    ///
    /// While threads wait in line, the checkpoints are counted towards the look at the clock
    /// per hold, not per guard: a guard made anew in every callback times the slice as a
    /// guard kept for the whole hold does.
    ///
    /// # Errors
    ///
    /// [`Interrupted`], as for [`GilGuard::checkpoint`].
    #[inline]
    pub fn checkpoint(&mut self) -> Result<(), Interrupted> {
        self.gil().checkpoint_counted()
    }

    /// Runs `f` without the lock, as [`GilGuard::allow_threads`] does, and takes the lock
    /// back before returning — also from a nested guard, while frames further up hold guards
    /// of the same hold (a host function of a script that a loop holding the lock runs).
    ///
    /// `unsafe`, because the compiler cannot check all of what `f` reaches. Those frames may
    /// keep data borrowed under the lock, which other threads change while `f` runs. The
    /// `Send` bound keeps such a borrow out of `f`'s captures (a `&Cell` or `&RefCell` is not
    /// `Send`, nor is a guard), but not out of a thread-local or a `static`: a reference
    /// borrowed through a guard that was leaked (`Box::leak`) is `'static` and can be kept
    /// there, and `f` could reach it. A guard kept in a thread-local proves nothing while the
    /// region runs: using it panics, in [`GilCell::get`](crate::GilCell::get), a checkpoint, a
    /// region or its drop. The outer frames' guards are valid again when `allow_threads`
    /// returns.
    ///
    /// For the waits a binding needs most there are safe forms: the [`Blocking`](crate::Blocking)
    /// helpers (a mutex, a condition variable, a channel, a sleep) wait in this same region,
    /// with closures of their own.
    ///
    /// # Safety
    ///
    /// `f`, and everything it calls, touches nothing that this thread borrowed under the lock:
    /// no data reached through a thread-local or a `static` that a frame of this hold, or a
    /// leaked guard, put there. A closure that works only on values of its own (a socket, a
    /// buffer, a duration) and on data not under the lock meets this.
    ///
    /// # Panics
    ///
    /// As [`GilGuard::allow_threads`] when `f` returns holding the lock again; and, as above,
    /// when `f` uses a guard of this hold.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::io::Read;
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static CALLS: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    ///
    /// // A host function: it may be called with the lock held further up, or not.
    /// fn read_all(mut input: impl Read + Send) -> Vec<u8> {
    ///     let mut g = GIL.ensure();
    ///     CALLS.get(&g).set(CALLS.get(&g).get() + 1);
    ///     let mut bytes = Vec::new();
    ///     // SAFETY: the closure reads a reader and fills a buffer, both its own.
    ///     unsafe { g.allow_threads(|| input.read_to_end(&mut bytes)) }.unwrap();
    ///     bytes
    /// }
    ///
    /// let outer = GIL.acquire();
    /// // nested: the lock is released around the read all the same
    /// assert_eq!(read_all(&b"abc"[..]), b"abc");
    /// assert_eq!(CALLS.get(&outer).get(), 1);
    /// ```
    ///
    /// What a cell holds cannot be captured:
    ///
    /// ```compile_fail,E0277
    /// use std::cell::Cell;
    /// use gil_std::{Gil, GilCell};
    ///
    /// static GIL: Gil = Gil::new();
    /// static COUNT: GilCell<Cell<u32>> = GilCell::new(&GIL, Cell::new(0));
    ///
    /// let outer = GIL.acquire();
    /// let count: &Cell<u32> = COUNT.get(&outer);
    /// let mut inner = GIL.ensure();
    /// // error: `Cell<u32>` cannot be shared
    /// unsafe { inner.allow_threads(|| count.set(1)) };
    /// ```
    pub unsafe fn allow_threads<R>(&mut self, f: impl FnOnce() -> R + Send) -> R {
        self.in_region_set_aside(f)
    }

    /// The region of [`allow_threads`](EnsureGuard::allow_threads), for the `Blocking`
    /// helpers, whose closures touch only the lock, condition variable or channel they wait
    /// on: the hold is set aside while `f` runs, and resumes after it.
    pub(crate) fn in_region_set_aside<R>(&mut self, f: impl FnOnce() -> R + Send) -> R {
        let region = TakeBack::set_aside(self.gil());
        // A refusal of the lock's own raised in the region, while the hold is set aside, comes
        // without its panic hook (`sync::refusal`): raised again once the hold is whole.
        let result = catch_unwind(AssertUnwindSafe(f));
        region.end();
        match result {
            Ok(result) => result,
            Err(payload) => match payload.downcast::<crate::sync::Refusal>() {
                Ok(refusal) => panic!("{}", refusal.0),
                Err(payload) => resume_unwind(payload),
            },
        }
    }

    /// The guard that `ensure` acquired, for blocking regions that take any closure; a nested
    /// guard comes back as `Err`, unchanged. Taken by value: the `EnsureGuard` is gone, so
    /// nothing is left to answer for the lock but the guard.
    ///
    /// ```
    /// use gil_std::Gil;
    ///
    /// let gil = Gil::new();
    /// let mut guard = gil.ensure().into_guard().expect("not held before: acquired");
    /// guard.allow_threads(|| ()); // any closure
    /// let nested = gil.ensure().into_guard().expect_err("held: nested");
    /// assert!(nested.is_nested());
    /// # drop(nested);
    /// # drop(guard);
    /// ```
    pub fn into_guard(self) -> Result<GilGuard<'a>, Self> {
        match self.hold {
            Ensured::Acquired(guard) => Ok(guard),
            hold @ Ensured::Nested(_) => Err(Self { hold }),
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
        self.gil()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::GilGuard<'_> {}
    impl Sealed for super::EnsureGuard<'_> {}
}
