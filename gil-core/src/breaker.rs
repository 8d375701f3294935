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
/// | [`LOAN_ASKED`](Breaker::LOAN_ASKED) | gil-core | lend the lock to the thread that asked |
/// | bits 2–3 | gil-core | the loan's own state: not pending, not settable |
/// | bit 4 | — | unused |
/// | [`STD_BITS`](Breaker::STD_BITS) | gil-std | pending calls, interrupts, … |
/// | [`RUNTIME_BITS`](Breaker::RUNTIME_BITS) | the runtime | signals, GC requests, whatever it claims |
///
/// The loan bits ([`LOAN_ASKED`](Breaker::LOAN_ASKED) and the two after it) belong to the loan
/// protocol of `RawGil::ask_loan`: [`set`](Breaker::set) and
/// [`take`](Breaker::take) leave them alone, so that no stray flag can make a holder lend to
/// nobody, or make an asker think it was lent the lock.
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
    /// A thread asks the holder to lend it the lock at the next checkpoint
    /// (`RawGil::ask_loan`). Set and cleared only by the loan
    /// protocol.
    pub const LOAN_ASKED: u32 = 1 << 1;
    /// The lock is lent: the borrower holds it and the lender waits for it back. Not pending.
    const LOAN_OUT: u32 = 1 << 2;
    /// With `LOAN_OUT`: the lender sleeps, and the borrower's give-back must wake it.
    const LENDER_ASLEEP: u32 = 1 << 3;
    /// The loan protocol's bits, which `set` and `take` leave alone.
    const LOAN_BITS: u32 = Self::LOAN_ASKED | Self::LOAN_OUT | Self::LENDER_ASLEEP;
    /// Bits 5–7, reserved for `gil-std` (pending calls, interrupts and the like).
    pub const STD_BITS: u32 = 0x0000_00e0;
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

    /// The flags set now (with [`LOAN_ASKED`](Breaker::LOAN_ASKED), but not the state of a
    /// loan under way). One relaxed load and a mask: this is the checkpoint's fast path.
    ///
    /// Relaxed is enough for a yes/no; a holder that acts on a flag calls [`Breaker::take`],
    /// whose Acquire makes the setter's earlier writes visible.
    #[inline(always)]
    pub fn pending(&self) -> u32 {
        self.0.load(Relaxed) & !(Self::LOAN_OUT | Self::LENDER_ASLEEP)
    }

    /// Sets `bits`, except the loan bits. Lock-free; callable from any thread or an interrupt
    /// handler.
    #[inline]
    pub fn set(&self, bits: u32) {
        debug_assert!(
            bits & Self::LOAN_BITS == 0,
            "gil-core: the loan bits of the breaker are set only by the loan protocol"
        );
        // Release pairs with the Acquire in `take`: whatever the setter wrote before asking
        // (a queued call, an interrupt's cause) is visible to the holder that acts on it.
        self.0.fetch_or(bits & !Self::LOAN_BITS, Release);
    }

    /// Clears `bits`, except the loan bits, and returns which of them were set.
    #[inline]
    pub fn take(&self, bits: u32) -> u32 {
        let bits = bits & !Self::LOAN_BITS;
        // Acquire pairs with the Release in `set`.
        self.0.fetch_and(!bits, Acquire) & bits
    }

    // The loan protocol (see `RawGil::ask_loan`). One asker at a time: `ask` succeeds only with
    // no loan asked or out, and only a grant (the holder) or a withdrawal (the asker) clears
    // LOAN_ASKED. So while a thread's ask stands, LOAN_OUT can only come from granting it.

    /// Sets `LOAN_ASKED` unless a loan is asked or out; returns whether it did.
    pub(crate) fn ask(&self) -> bool {
        let mut seen = self.0.load(Relaxed);
        loop {
            if seen & (Self::LOAN_ASKED | Self::LOAN_OUT) != 0 {
                return false;
            }
            // Relaxed: the asker publishes nothing. What it waits for, the grant, is read with
            // Acquire (`loan_out`, `withdraw`).
            match self
                .0
                .compare_exchange(seen, seen | Self::LOAN_ASKED, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
    }

    /// The holder grants a standing ask (`LOAN_ASKED` to `LOAN_OUT`); returns whether it did.
    pub(crate) fn grant(&self) -> bool {
        let mut seen = self.0.load(Relaxed);
        loop {
            if seen & Self::LOAN_ASKED == 0 {
                return false;
            }
            let lent = (seen & !Self::LOAN_ASKED) | Self::LOAN_OUT;
            // Release pairs with the Acquire in `loan_out` or `withdraw`: all the holder wrote
            // under the lock becomes the borrower's.
            match self.0.compare_exchange(seen, lent, Release, Relaxed) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
    }

    /// Whether a loan is out: for the asker, that its ask was granted (it holds the lock on
    /// loan); for the lender, that it is not back yet.
    #[inline]
    pub(crate) fn loan_out(&self) -> bool {
        // Acquire pairs with the Release in `grant` (the asker's look) and in `give_back` (the
        // lender's).
        self.0.load(Acquire) & Self::LOAN_OUT != 0
    }

    /// The asker withdraws its ask; returns `false` if it was granted first (it holds the
    /// lock on loan).
    pub(crate) fn withdraw(&self) -> bool {
        // Acquire pairs with the Release in `grant`, for when the grant came first.
        let old = self.0.fetch_and(!Self::LOAN_ASKED, Acquire);
        debug_assert!(
            old & (Self::LOAN_ASKED | Self::LOAN_OUT) != 0,
            "gil-core: withdraw without an ask"
        );
        old & Self::LOAN_ASKED != 0
    }

    /// The borrower gives the lock back; returns whether the lender sleeps (and must be woken).
    #[inline]
    pub(crate) fn give_back(&self) -> bool {
        // Release pairs with the Acquire in `loan_out`: the borrower's writes become the
        // lender's.
        let old = self
            .0
            .fetch_and(!(Self::LOAN_OUT | Self::LENDER_ASLEEP), Release);
        debug_assert!(
            old & Self::LOAN_OUT != 0,
            "gil-core: give_back without a loan"
        );
        old & Self::LENDER_ASLEEP != 0
    }

    /// The lender is about to sleep: marks `LENDER_ASLEEP` while the loan is out. Returns the
    /// word to sleep on while it holds (or `None`: the loan came back).
    pub(crate) fn lender_sleeps(&self) -> Option<u32> {
        let mut seen = self.0.load(Relaxed);
        loop {
            if seen & Self::LOAN_OUT == 0 {
                return None;
            }
            if seen & Self::LENDER_ASLEEP != 0 {
                return Some(seen);
            }
            // Relaxed: a marker only; the give-back's swap of it is ordered before or after,
            // and says whether to wake. The loan's return is read with Acquire (`loan_out`).
            match self
                .0
                .compare_exchange(seen, seen | Self::LENDER_ASLEEP, Relaxed, Relaxed)
            {
                Ok(_) => return Some(seen | Self::LENDER_ASLEEP),
                Err(now) => seen = now,
            }
        }
    }

    /// The word a sleeping lender waits on.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.0
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}
