//! The breaker word: the flags a lock holder looks at in its checkpoint, all in one load.

use crate::sync::{
    AtomicU32,
    Ordering::{Acquire, Relaxed, Release},
};

/// A word of flags asking the holder of the lock to do something at its next checkpoint.
///
/// Anyone may set a flag, from any thread and without the lock; setting one is a single
/// lock-free atomic OR, so it is safe in an interrupt handler too. The holder sees every flag
/// with one relaxed load in [`RawGil::checkpoint`](crate::RawGil::checkpoint).
///
/// The bits are shared out:
///
/// | bits | owner | meaning |
/// |---|---|---|
/// | [`DROP_REQUEST`](Breaker::DROP_REQUEST) | gil-core | hand the lock to the longest waiter |
/// | [`STD_BITS`](Breaker::STD_BITS) | gil-std | pending calls, interrupts, … |
/// | [`RUNTIME_BITS`](Breaker::RUNTIME_BITS) | the runtime | signals, GC requests, whatever it claims |
///
/// ```
/// use gil_core::Breaker;
///
/// const GC_REQUEST: u32 = Breaker::runtime_bit(0);
/// let breaker = Breaker::new();
/// breaker.set(GC_REQUEST);
/// assert_eq!(breaker.pending(), GC_REQUEST);
/// assert_eq!(breaker.take(GC_REQUEST), GC_REQUEST);
/// assert_eq!(breaker.pending(), 0);
/// ```
#[derive(Debug)]
pub struct Breaker(AtomicU32);

impl Breaker {
    /// Hand the lock to the longest waiter at the next checkpoint.
    pub const DROP_REQUEST: u32 = 1 << 0;
    /// Bits 1–7, reserved for `gil-std` (pending calls, interrupts and the like).
    pub const STD_BITS: u32 = 0x0000_00fe;
    /// Bits 8–31, free for the runtime built on the lock.
    pub const RUNTIME_BITS: u32 = 0xffff_ff00;

    /// The `n`th runtime bit, `n` in `0..24`.
    ///
    /// # Panics
    ///
    /// If `n >= 24` (at compile time when used in a constant).
    pub const fn runtime_bit(n: u32) -> u32 {
        assert!(n < 24, "gil-core: a runtime breaker bit must be in 0..24");
        1 << (n + 8)
    }

    const_fn_unless_loom! {
        /// A breaker with no flag set.
        pub fn new() -> Self {
            Self(AtomicU32::new(0))
        }
    }

    /// The flags set now. One relaxed load: this is the checkpoint's fast path.
    ///
    /// Relaxed is enough for a yes/no; a holder that acts on a flag calls [`Breaker::take`],
    /// whose Acquire makes the setter's earlier writes visible.
    #[inline(always)]
    pub fn pending(&self) -> u32 {
        self.0.load(Relaxed)
    }

    /// Sets `bits`. Lock-free; callable from any thread or an interrupt handler.
    #[inline]
    pub fn set(&self, bits: u32) {
        // Release pairs with the Acquire in `take`: whatever the setter wrote before asking
        // (a queued call, an interrupt's cause) is visible to the holder that acts on it.
        self.0.fetch_or(bits, Release);
    }

    /// Clears `bits` and returns which of them were set.
    #[inline]
    pub fn take(&self, bits: u32) -> u32 {
        // Acquire pairs with the Release in `set`.
        self.0.fetch_and(!bits, Acquire) & bits
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}
