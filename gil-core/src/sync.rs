//! The one place that chooses between `core`'s primitives and loom's.
//!
//! Built with `--cfg loom`, every atomic, cell and spin hint in this crate is loom's, so loom
//! can explore the interleavings of the real code — and so can a user's own loom test that
//! drives a [`RawGil`](crate::RawGil). No other file in the crate names loom.

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU32, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU32, Ordering};

/// The state of one busy-wait for another thread to make progress (the queue lock, here).
///
/// Normally a CPU spin hint per round. Under loom each round is a yield, and a wait that has
/// yielded `LOOM_ROUNDS` times ends exploration of the current branch: loom keeps
/// choosing between two yielding spinners forever while the thread they wait for never runs
/// (tokio-rs/loom#53). Further rounds only repeat a read of an unchanged word, so no state is
/// lost by not exploring them; the execution goes on with loom's default, fair schedule.
pub(crate) struct SpinWait {
    #[cfg(loom)]
    rounds: u32,
}

impl SpinWait {
    #[cfg(loom)]
    const LOOM_ROUNDS: u32 = 2;

    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(loom)]
            rounds: 0,
        }
    }

    /// One round of waiting.
    #[inline]
    pub(crate) fn spin(&mut self) {
        #[cfg(not(loom))]
        core::hint::spin_loop();
        #[cfg(loom)]
        {
            self.rounds += 1;
            if self.rounds == Self::LOOM_ROUNDS {
                loom::skip_branch();
            }
            loom::thread::yield_now();
        }
    }
}

/// One relax step of a spinning waiter: `R`'s, or a loom yield under loom.
#[inline]
#[cfg_attr(loom, allow(clippy::extra_unused_type_parameters))]
pub(crate) fn relax<R: spin::relax::RelaxStrategy>() {
    #[cfg(not(loom))]
    R::relax();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` with loom's closure-based access API, so loom can check every access for
/// a missing happens-before edge.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for writing; the caller is responsible for exclusive access.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Defines a function as `const fn`, except under loom, whose atomics and cells cannot be built
/// in a const context. Keeps `static GIL: RawGil = RawGil::new();` working in ordinary builds.
/// Exported (hidden) for gil-std, whose constructors wrap `RawGil::new`; the `cfg` is evaluated
/// in the crate that expands it.
#[doc(hidden)]
#[macro_export]
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$attr])*
        $vis const fn $name($($arg: $ty),*) -> $ret $body

        #[cfg(loom)]
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) -> $ret $body
    };
}
