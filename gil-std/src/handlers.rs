//! Runtime breaker bits: flags a runtime raises (a signal arrived, the heap wants a GC), each
//! with a handler the holder runs from its checkpoint.

use std::fmt;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Release};

use gil_core::Breaker;

use crate::gil::Gil;
use crate::guard::GilGuard;

/// A handler for a runtime breaker bit: run by the holder of the lock, at its checkpoint, with
/// its guard and the bit that was raised.
pub type BreakerHandler = dyn Fn(&GilGuard<'_>, u32) + Send + Sync;

/// How many runtime bits there are (`Breaker::RUNTIME_BITS`: bits 8–31).
pub(crate) const RUNTIME_BIT_COUNT: usize = 24;

/// A runtime bit that is not one, or not a single one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotARuntimeBit(pub u32);

impl fmt::Display for NotARuntimeBit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#010x} is not a runtime breaker bit: use Breaker::runtime_bit(n), n in 0..24",
            self.0
        )
    }
}

impl std::error::Error for NotARuntimeBit {}

impl Gil {
    /// Installs `handler` for the runtime breaker bit `bit` (or removes it, with `None`). The
    /// holder runs it at its next checkpoint after [`raise`](Gil::raise) sets the bit.
    ///
    /// Handlers are `'static` for the reason event hooks are (see [`Gil::set_event_hook`]):
    /// each call with `Some` allocates 16 bytes that are never freed.
    ///
    /// # Errors
    ///
    /// [`NotARuntimeBit`] unless `bit` is exactly one of `Breaker::RUNTIME_BITS`
    /// ([`Breaker::runtime_bit`](gil_core::Breaker::runtime_bit)`(n)`).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use gil_core::Breaker;
    /// use gil_std::Gil;
    ///
    /// const GC: u32 = Breaker::runtime_bit(0);
    /// static GIL: Gil = Gil::new();
    /// static COLLECTIONS: AtomicU32 = AtomicU32::new(0);
    ///
    /// GIL.set_breaker_handler(GC, Some(&|_guard, _bit| {
    ///     COLLECTIONS.fetch_add(1, Ordering::Relaxed); // collect, with the lock held
    /// }))
    /// .unwrap();
    /// let mut guard = GIL.acquire();
    /// GIL.raise(GC).unwrap(); // from any thread, or a signal handler
    /// guard.checkpoint().unwrap();
    /// assert_eq!(COLLECTIONS.load(Ordering::Relaxed), 1);
    /// ```
    pub fn set_breaker_handler(
        &self,
        bit: u32,
        handler: Option<&'static BreakerHandler>,
    ) -> Result<(), NotARuntimeBit> {
        let index = runtime_index(bit)?;
        let slot = handler.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // Release pairs with the Acquire in `run_breaker_handlers`: the box is written before
        // it is seen.
        self.handlers[index].store(slot, Release);
        Ok(())
    }

    /// Raises runtime breaker `bits`: the holder's next checkpoint runs each one's handler
    /// once (if nobody holds the lock, the next holder's first checkpoint does). Raising a bit
    /// that is already raised merges with it. One atomic OR: callable from any thread, with or
    /// without the lock, and from a signal handler.
    ///
    /// A bit with no handler is cleared at the checkpoint and otherwise ignored.
    ///
    /// # Errors
    ///
    /// [`NotARuntimeBit`] if `bits` is empty or has a bit outside `Breaker::RUNTIME_BITS`;
    /// nothing is raised then.
    pub fn raise(&self, bits: u32) -> Result<(), NotARuntimeBit> {
        if bits == 0 || bits & !Breaker::RUNTIME_BITS != 0 {
            return Err(NotARuntimeBit(bits));
        }
        // Release (in `set`) pairs with the Acquire of the holder's `take`.
        self.raw.breaker().set(bits);
        Ok(())
    }

    /// Runs the handlers of the runtime bits raised in `pending`, lowest bit first. The caller
    /// holds the lock. Each bit is taken just before its handler runs, so a handler that panics
    /// leaves the bits after it raised.
    #[cold]
    pub(crate) fn run_breaker_handlers(&self, guard: &GilGuard<'_>, pending: u32) {
        let mut bits = pending & Breaker::RUNTIME_BITS;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            bits &= !bit;
            if self.raw.breaker().take(bit) == 0 {
                continue;
            }
            // Acquire pairs with the Release in `set_breaker_handler`.
            let handler = self.handlers[bit.trailing_zeros() as usize - 8].load(Acquire);
            if !handler.is_null() {
                // SAFETY: a non-null slot was made by `Box::into_raw` in `set_breaker_handler`
                // and is never freed.
                let handler: &'static BreakerHandler = unsafe { *handler };
                handler(guard, bit);
            }
        }
    }
}

/// The handler index of a single runtime bit.
fn runtime_index(bit: u32) -> Result<usize, NotARuntimeBit> {
    if bit.count_ones() != 1 || bit & Breaker::RUNTIME_BITS == 0 {
        return Err(NotARuntimeBit(bit));
    }
    Ok(bit.trailing_zeros() as usize - 8)
}

const _: () = assert!(Breaker::RUNTIME_BITS.count_ones() as usize == RUNTIME_BIT_COUNT);
const _: () = assert!(Breaker::RUNTIME_BITS.trailing_zeros() == 8);
