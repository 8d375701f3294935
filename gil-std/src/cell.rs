//! `GilCell`: data reachable only by the holder of one particular `Gil`.

use std::cell::UnsafeCell;
use std::fmt;

use crate::gil::Gil;
use crate::gil::Holds;

/// A value that only the thread holding `gil` can reach: [`get`](GilCell::get) takes a guard of
/// that lock and panics on a guard of another one.
///
/// The cell hands out shared references only. Mutate through interior mutability (`Cell`,
/// `RefCell`), as a runtime's objects do. The lock serialises every access, so `T` need only be
/// `Send`, not `Sync`: a `GilCell<RefCell<T>>` is shareable between threads, where a bare
/// `RefCell` is not.
///
/// ```
/// use std::cell::RefCell;
/// use gil_std::{Gil, GilCell};
///
/// static GIL: Gil = Gil::new();
/// static LOG: GilCell<RefCell<Vec<u32>>> = GilCell::new(&GIL, RefCell::new(Vec::new()));
///
/// std::thread::scope(|s| {
///     for i in 0..4 {
///         s.spawn(move || LOG.get(&GIL.acquire()).borrow_mut().push(i));
///     }
/// });
/// assert_eq!(LOG.get(&GIL.acquire()).borrow().len(), 4);
/// ```
pub struct GilCell<'g, T: ?Sized> {
    gil: &'g Gil,
    value: UnsafeCell<T>,
}

// SAFETY: shared access to the value is granted only to the thread holding `gil` (checked in
// `get`), and the lock's handoff orders one holder's accesses before the next one's. So the value
// moves between threads but is never used by two at once: `T: Send` suffices, as for a mutex.
unsafe impl<T: ?Sized + Send> Sync for GilCell<'_, T> {}

impl<'g, T> GilCell<'g, T> {
    /// Puts `value` behind `gil`.
    pub const fn new(gil: &'g Gil, value: T) -> Self {
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

impl<'g, T: ?Sized> GilCell<'g, T> {
    /// The value, for the holder of the lock. The reference lives no longer than the guard's
    /// borrow, so a blocking region (which needs the guard mutably) cannot run while it is used.
    ///
    /// # Panics
    ///
    /// If `guard` holds a different [`Gil`] from the one this cell belongs to, or if its thread
    /// does not hold the lock: a guard kept outside a region of
    /// [`EnsureGuard::allow_threads`](crate::EnsureGuard::allow_threads) while it runs.
    #[inline]
    pub fn get<'a>(&'a self, guard: &'a impl Holds) -> &'a T {
        refuse_foreign(self.gil, guard, "GilCell");
        // SAFETY: the guard proves this thread holds `self.gil`; only shared references are
        // handed out, and they cannot outlive the guard's borrow (see the `Sync` impl).
        unsafe { &*self.value.get() }
    }

    /// The value, through exclusive access to the cell itself; no lock needed.
    ///
    /// ```
    /// use gil_std::{Gil, GilCell};
    ///
    /// let gil = Gil::new();
    /// let mut cell = GilCell::new(&gil, 1);
    /// *cell.get_mut() += 1; // `&mut cell`: nobody else can reach it
    /// assert_eq!(*cell.get(&gil.acquire()), 2);
    /// assert_eq!(cell.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The lock this cell belongs to.
    pub fn gil(&self) -> &'g Gil {
        self.gil
    }
}

impl<T: ?Sized> fmt::Debug for GilCell<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GilCell").finish_non_exhaustive()
    }
}

/// What `GilCell::get` and `GilBound::get` check of the guard they are given: that it holds
/// `gil` (not another lock), and proves it now (`Gil::refuse_set_aside`).
///
/// # Panics
///
/// If either does not hold; `cell` names the caller in the message.
#[inline]
pub(crate) fn refuse_foreign(gil: &Gil, guard: &impl Holds, cell: &str) {
    if !std::ptr::eq(guard.held(), gil) {
        foreign_guard_panic(cell);
    }
    gil.refuse_set_aside();
}

#[cold]
#[track_caller]
fn foreign_guard_panic(cell: &str) -> ! {
    panic!("gil: {cell}::get with a guard of a different Gil than the cell's");
}
