//! Interrupts: one thread asks another — holding the lock, waiting for it, or blocked in a
//! region — to stop what it is doing (Python's asynchronous exceptions, Ruby's
//! `Thread#raise` with an unblocking function).
//!
//! Each thread that can be interrupted has a [`Slot`]: a flag, and the unblock function of the
//! region it is in, if any. Interrupting sets the flag, sets [`INTERRUPT`] in the lock's
//! breaker, and calls the unblock function — outside the slot's mutex, with a count of its
//! callers under it that the region waits to fall to zero before it ends (the function
//! borrows from the region's frame). An interrupt made while the function runs, by its own
//! code or another thread, merges into that call. The flag is what is reported; the breaker bit only
//! sends the holder to its slow path, where it looks at its own flag. A holder that finds the
//! bit but no flag of its own clears the bit; the interrupted thread then sees its flag when it
//! next takes the lock ([`rearm`]), and sets the bit again for its own checkpoint.
//!
//! No interrupt is lost: if a holder cleared the bit before the interrupted thread took the
//! lock, that holder's `take` (Acquire) read the interrupter's `set` (Release), which came
//! after the flag was raised; the lock's handoff then orders all that before the interrupted
//! thread's look at its flag. Otherwise the bit is still set when the thread holds the lock,
//! and only its own checkpoint clears it.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

use gil_core::Breaker;

use crate::bits::{INTERRUPT, WATCH_INTERRUPTS, Watch};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, lock, wait};

/// What [`GilGuard::checkpoint`](crate::GilGuard::checkpoint) returns when the calling thread
/// was interrupted through an [`InterruptHandle`]: the hot loop should stop what it is doing
/// (raise, unwind its interpreter frames, return an error) and may take the lock again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the thread was interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// An unblock function in a slot: a pointer to the region's closure, valid while registered.
#[derive(Clone, Copy)]
struct Unblock(*const (dyn Fn() + Sync + 'static));

// SAFETY: the closure is `Sync`, so it may be called by reference from any thread; the pointer
// is only dereferenced while it is registered or counted as being called, and the region that
// owns the closure does not end before both are over (see `Region`).
unsafe impl Send for Unblock {}

/// One thread's interrupt state, shared with its handles.
pub(crate) struct Slot {
    /// An interrupt not yet reported.
    pending: AtomicBool,
    /// The unblock function of the region this thread is in, and its callers.
    unblock: Mutex<Registered>,
    /// Notified when the last caller of an unblock function is done.
    called: Condvar,
}

struct Registered {
    /// The region's function, if any.
    unblock: Option<Unblock>,
    /// How many interrupters are calling it (outside the mutex).
    calling: u32,
}

impl Slot {
    fn new() -> Self {
        Self {
            pending: AtomicBool::new(false),
            unblock: Mutex::new(Registered {
                unblock: None,
                calling: 0,
            }),
            called: Condvar::new(),
        }
    }
}

thread_locals! {
    static SLOT: Arc<Slot> = Arc::new(Slot::new());
}

/// Reports and clears the calling thread's interrupt, if it has one.
pub(crate) fn take_own() -> bool {
    // Acquire pairs with the Release in `InterruptHandle::interrupt`: whatever the interrupter
    // wrote before asking (the reason) is visible to the interrupted thread.
    SLOT.try_with(|slot| slot.pending.swap(false, AcqRel))
        .unwrap_or(false)
}

/// Whether the calling thread has an interrupt not yet reported.
pub(crate) fn is_own_pending() -> bool {
    // Acquire: as in `take_own`.
    SLOT.try_with(|slot| slot.pending.load(Acquire))
        .unwrap_or(false)
}

/// A handle to interrupt one thread's work under one [`Gil`](crate::Gil): made on that thread
/// by [`Gil::interrupt_handle`](crate::Gil::interrupt_handle), then sent to whoever may interrupt it. `Clone`, `Send`, `Sync`.
///
/// [`interrupt`](InterruptHandle::interrupt) reaches the thread wherever it is:
///
/// - **holding the lock** — its next [`checkpoint`](crate::GilGuard::checkpoint) returns
///   `Err(Interrupted)`;
/// - **waiting for the lock** (in `acquire`, or in a checkpoint's hand-over) — it keeps its
///   place, and its first checkpoint after it gets the lock returns `Err(Interrupted)`; the wait
///   is bounded by the lock's fairness (about (N−1) switch intervals with N threads), as in
///   CPython and Ruby;
/// - **in a blocking region** opened with
///   [`allow_threads_with_unblock`](crate::GilGuard::allow_threads_with_unblock) — its unblock
///   function is called, which makes the blocking call return (shut a socket down, wake a
///   condition variable); its first checkpoint after the region reports the interrupt;
/// - **not using the lock** — its first checkpoint after it next takes the lock reports it.
///
/// Each interrupt is reported once; interrupts made before one is reported merge into it.
///
/// ```
/// use gil_std::{Gil, Interrupted};
///
/// static GIL: Gil = Gil::new();
///
/// let worker = std::thread::spawn(|| {
///     let mut guard = GIL.acquire();
///     let handle = GIL.interrupt_handle();
///     std::thread::spawn(move || handle.interrupt()); // e.g. a Ctrl-C handler
///     let mut steps = 0u64;
///     loop {
///         steps += 1; // ... interpreter work ...
///         if let Err(Interrupted) = guard.checkpoint() {
///             return steps; // raise KeyboardInterrupt, unwind, ...
///         }
///     }
/// });
/// assert!(worker.join().unwrap() > 0);
/// ```
#[derive(Clone)]
pub struct InterruptHandle<'a> {
    breaker: &'a Breaker,
    slot: Arc<Slot>,
}

impl<'a> InterruptHandle<'a> {
    /// A handle for the calling thread, interrupting it through `breaker`; and from now on,
    /// `watch` says that a thread taking the lock looks at its flag ([`rearm`]).
    pub(crate) fn for_current_thread(breaker: &'a Breaker, watch: &Watch) -> Self {
        watch.set(WATCH_INTERRUPTS, true);
        InterruptHandle {
            breaker,
            slot: SLOT.with(Arc::clone),
        }
    }
}

/// The calling thread has taken the lock whose breaker is `breaker`: if it has an interrupt
/// pending, make sure its next checkpoint looks (a holder before it may have cleared the bit).
#[cold]
pub(crate) fn rearm(breaker: &Breaker) {
    if is_own_pending() {
        breaker.set(INTERRUPT);
    }
}

impl InterruptHandle<'_> {
    /// Interrupts the thread; see [`InterruptHandle`]. Returns once the region's unblock
    /// function, if any, has returned; lock-free apart from a short mutex around it. An
    /// interrupt made while that function runs (by itself, or by another thread) merges into
    /// the running call and returns at once.
    pub fn interrupt(&self) {
        // Release pairs with the Acquire in `take_own` / `is_own_pending`.
        self.slot.pending.store(true, Release);
        // After the flag: a holder that clears the bit has then seen the flag's store ordered
        // before (see the module documentation).
        self.breaker.set(INTERRUPT);
        let Unblock(f) = {
            let mut registered = lock(&self.slot.unblock);
            match registered.unblock {
                Some(f) if registered.calling == 0 => {
                    registered.calling = 1;
                    f
                }
                _ => return,
            }
        };
        /// Counts the call out, also if the function panics, and wakes a region waiting to end.
        struct Called<'s>(&'s Slot);
        impl Drop for Called<'_> {
            fn drop(&mut self) {
                lock(&self.0.unblock).calling = 0;
                self.0.called.notify_all();
            }
        }
        let _called = Called(&self.slot);
        // SAFETY: counted as called under the mutex while registered; the region that owns the
        // function waits for the count to fall to zero before it ends (`Region::drop`).
        unsafe { (*f)() };
    }

    /// Whether an interrupt is pending, not yet reported to the thread.
    pub fn is_pending(&self) -> bool {
        self.slot.pending.load(Acquire)
    }
}

impl fmt::Debug for InterruptHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterruptHandle")
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}

/// A registered unblock function, for as long as a blocking region runs; unregisters it
/// (restoring the outer region's, if regions nest) when dropped, also on unwinding.
pub(crate) struct Region {
    slot: Arc<Slot>,
    outer: Option<Unblock>,
}

impl Region {
    /// Registers `unblock` for the calling thread, and calls it at once if an interrupt is
    /// already pending — so an interrupt that came just before the region is not missed.
    pub(crate) fn enter(unblock: &(dyn Fn() + Sync)) -> Self {
        let slot = SLOT.with(Arc::clone);
        let erased: *const (dyn Fn() + Sync + '_) = unblock;
        // SAFETY: only the lifetime is erased. The pointer is unregistered in `drop`, before the
        // borrow of `unblock` ends: `Region` is dropped at the end of the region that borrows it,
        // also when that region unwinds, and is made before anything that could panic here.
        let erased = unsafe {
            std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync)>(erased)
        };
        let (outer, pending) = {
            let mut registered = lock(&slot.unblock);
            let outer = registered.unblock.replace(Unblock(erased));
            // Under the mutex: an interrupter that took it before us has raised the flag (it
            // raises it first), so we see it here; one that takes it after us calls `unblock`.
            (outer, slot.pending.load(Acquire))
        };
        // Made before `unblock` runs: if it panics, the unwinding unregisters it.
        let region = Self { slot, outer };
        if pending {
            unblock();
        }
        region
    }
}

impl Drop for Region {
    /// Unregisters the function, after any call of it under way has returned: it borrows from
    /// the region's frame.
    fn drop(&mut self) {
        let mut registered = lock(&self.slot.unblock);
        while registered.calling != 0 {
            registered = wait(&self.slot.called, registered);
        }
        registered.unblock = self.outer;
    }
}
