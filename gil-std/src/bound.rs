//! `GilBound`: state that is not `Send` (an `Rc`-based interpreter), behind a `Gil`, on the
//! promise that no part of it is touched without the lock.

use std::cell::UnsafeCell;
use std::fmt;

use crate::gil::{Gil, Holds};

/// A value that is not `Send` — an interpreter state built on `Rc` — that only the thread
/// holding `gil` can reach, on whichever thread that is. Made with the `unsafe`
/// [`new`](GilBound::new), whose contract stands in for the `Send` bound of
/// [`GilCell`](crate::GilCell): the value moves between threads with the lock, and no part of
/// it may be touched without it.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use gil_std::{Gil, GilBound};
///
/// struct World {
///     names: Vec<Rc<str>>, // shared within the world only
/// }
///
/// static GIL: Gil = Gil::new();
/// // SAFETY: a `World` is `!Send` for its `Rc`s alone, which never leave it: every `Rc`
/// // clone is made, used and dropped inside a hold.
/// static WORLD: GilBound<RefCell<World>> =
///     unsafe { GilBound::new(&GIL, RefCell::new(World { names: Vec::new() })) };
///
/// std::thread::scope(|s| {
///     for i in 0..4 {
///         s.spawn(move || {
///             let g = GIL.acquire();
///             let mut world = WORLD.get(&g).borrow_mut();
///             let name: Rc<str> = format!("thread {i}").into();
///             world.names.push(name.clone()); // the clone stays in the world
///         });
///     }
/// });
/// assert_eq!(WORLD.get(&GIL.acquire()).borrow().names.len(), 4);
/// ```
///
/// The safe [`GilCell`](crate::GilCell) refuses such state:
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use gil_std::{Gil, GilCell};
///
/// static GIL: Gil = Gil::new();
/// static NAMES: GilCell<Vec<Rc<str>>> = GilCell::new(&GIL, Vec::new()); // error: not `Send`
/// ```
pub struct GilBound<'g, T: ?Sized> {
    gil: &'g Gil,
    value: UnsafeCell<T>,
}

// SAFETY: the contract of `GilBound::new`: the value's `!Send` and `!Sync` come from shared
// state that only the holder of `gil` ever touches (`get` checks the hold), and the lock's
// handoff orders one holder's accesses before the next one's; nothing of the value is tied to
// a thread, and it is whole wherever the lock changes hands. So the value may be reached from,
// moved to and dropped on any thread, one at a time.
unsafe impl<T: ?Sized> Sync for GilBound<'_, T> {}
// SAFETY: as above: moving the cell moves a value whose shared parts are touched only under the
// lock, wherever they are.
unsafe impl<T: ?Sized> Send for GilBound<'_, T> {}

impl<'g, T> GilBound<'g, T> {
    /// Puts `value` behind `gil`.
    ///
    /// # Safety
    ///
    /// For as long as the value lives, in whatever the program does with the cell:
    ///
    /// - **Nothing of it is touched without the lock.** Whatever shares ownership with the
    ///   value or points into it — an `Rc` cloned out of it, a reference, a raw pointer, a
    ///   handle a binding gives out (an interpreter's `Clone` handle to its state) — is used,
    ///   cloned and dropped only by a thread while it holds `gil`. A frame may keep such a
    ///   thing across a checkpoint or a blocking region if it does not touch it until the lock
    ///   is its own again; it must not send it to another thread, touch it inside a region, or
    ///   leave it where it would be dropped without the lock (a thread-local destroyed at the
    ///   thread's exit, a value outliving the hold). What the value owns outright, and copies
    ///   that share nothing with it (a `String` cloned out of it), are free to go.
    /// - **Nothing of it is tied to a thread.** The value is `!Send` only because of shared
    ///   state without atomics (`Rc`, `Cell`, pointers into itself), not because it must stay
    ///   on the thread that made it: no thread-local it relies on, no lock guard, nothing
    ///   that asks which OS thread runs it. It is used, and dropped, on whichever thread holds
    ///   the lock or owns the cell.
    /// - **It is whole wherever the lock changes hands.** A checkpoint or a blocking region
    ///   inside the value's own callbacks (an interpreter's hook, host function or progress
    ///   callback, called with its frames further up) lets other threads use the value while
    ///   those frames are stopped half-way. So the lock changes hands there only if nothing of
    ///   the value is left half-done across the callback. Two kinds of binding leave something:
    ///   one that keeps a per-thread or per-callback "current" state, set as a callback enters
    ///   and put back as it returns (mlua's current `lua_State`: callbacks of two threads that
    ///   return in the order they entered leave it aimed at the wrong stack, then at a freed
    ///   one), and one that keeps a borrow open across its own callbacks (rhai keeps a shared
    ///   value's `RefCell` borrowed across the progress calls of an indexing, a property access
    ///   or a method call). With such a binding the lock changes hands only outside its
    ///   callbacks — the callback makes the engine yield, or hands its blocking work to the
    ///   code that resumes the engine, which checkpoints and blocks there — or, where what is
    ///   left is a borrow, only while no other thread can reach what is borrowed.
    ///
    /// The lock orders the holders' accesses; these rules are what make "one thread at a
    /// time" true of every part of the value, as `Send` makes it true of a [`GilCell`]'s.
    ///
    /// [`GilCell`]: crate::GilCell
    pub const unsafe fn new(gil: &'g Gil, value: T) -> Self {
        Self {
            gil,
            value: UnsafeCell::new(value),
        }
    }

    /// The value, out of the cell.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<'g, T: ?Sized> GilBound<'g, T> {
    /// The value, for the holder of the lock, as [`GilCell::get`](crate::GilCell::get).
    ///
    /// # Panics
    ///
    /// As [`GilCell::get`](crate::GilCell::get): with a guard of another `Gil`, or one that
    /// proves nothing while its thread's hold is set aside.
    #[inline]
    pub fn get<'a>(&'a self, guard: &'a impl Holds) -> &'a T {
        crate::cell::refuse_foreign(self.gil, guard, "GilBound");
        // SAFETY: the guard proves this thread holds `self.gil`; the reference cannot outlive
        // the guard's borrow, and the contract of `new` keeps what it reaches from being
        // touched without the lock.
        unsafe { &*self.value.get() }
    }

    /// The value, through exclusive access to the cell itself; no lock needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The lock this cell belongs to.
    pub fn gil(&self) -> &'g Gil {
        self.gil
    }
}

impl<T: ?Sized> fmt::Debug for GilBound<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GilBound").finish_non_exhaustive()
    }
}
