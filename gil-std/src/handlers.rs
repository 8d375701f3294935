//! Runtime breaker bits: flags a runtime raises (a signal arrived, the heap wants a GC), each
//! with a handler the holder runs from its checkpoint. The handlers' table; the lock runs them.

use std::fmt;
use std::ptr;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{Acquire, Release};

use gil_core::Breaker;

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

/// The handlers of the runtime bits, one slot per bit: empty, or a box made by
/// [`set`](Handlers::set) and never freed. Generic over the handler's type, which the lock
/// names (`BreakerHandler`).
pub(crate) struct Handlers<H: ?Sized + 'static>([AtomicPtr<&'static H>; RUNTIME_BIT_COUNT]);

impl<H: ?Sized + 'static> Handlers<H> {
    pub(crate) const fn new() -> Self {
        Self([const { AtomicPtr::new(ptr::null_mut()) }; RUNTIME_BIT_COUNT])
    }

    /// Installs `handler` for the runtime bit `bit` (or removes it, with `None`).
    pub(crate) fn set(&self, bit: u32, handler: Option<&'static H>) -> Result<(), NotARuntimeBit> {
        let index = runtime_index(bit)?;
        let slot = handler.map_or(ptr::null_mut(), |h| Box::into_raw(Box::new(h)));
        // Release pairs with the Acquire in `run_raised`: the box is written before it is seen.
        self.0[index].store(slot, Release);
        Ok(())
    }

    /// Runs the handlers of the runtime bits raised in `pending` with `call`, lowest bit
    /// first. The caller holds the lock. Each bit is taken from `breaker` just before its
    /// handler runs, so a handler that panics leaves the bits after it raised; a bit with no
    /// handler is only taken.
    #[cold]
    pub(crate) fn run_raised(
        &self,
        breaker: &Breaker,
        pending: u32,
        mut call: impl FnMut(&H, u32),
    ) {
        let mut bits = pending & Breaker::RUNTIME_BITS;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            bits &= !bit;
            if breaker.take(bit) == 0 {
                continue;
            }
            // Acquire pairs with the Release in `set`.
            let handler = self.0[bit.trailing_zeros() as usize - 8].load(Acquire);
            if !handler.is_null() {
                // SAFETY: a non-null slot was made by `Box::into_raw` in `set` and is never
                // freed.
                let handler: &'static H = unsafe { *handler };
                call(handler, bit);
            }
        }
    }
}

/// Raises runtime breaker `bits` on `breaker`.
pub(crate) fn raise(breaker: &Breaker, bits: u32) -> Result<(), NotARuntimeBit> {
    if bits == 0 || bits & !Breaker::RUNTIME_BITS != 0 {
        return Err(NotARuntimeBit(bits));
    }
    // Release (in `set`) pairs with the Acquire of the holder's `take`.
    breaker.set(bits);
    Ok(())
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
