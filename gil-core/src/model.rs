//! The protocol's single steps, for the project's own models (feature `models`).
//!
//! [`RawGil`]'s public methods are the composites a runtime calls. The models (loom, the
//! deterministic protocol tests, the reference model and its fuzz target) drive the steps the
//! composites are made of one at a time, to reach the interleavings in between. This module
//! gives them those steps, as the traits [`Steps`] and [`WaiterSteps`]; it is not part of the
//! crate's API, and changes with the protocol.
//!
//! Each method forwards to the step of the same name in `raw.rs`, whose comment gives its
//! contract in full; the `# Safety` sections here say it in brief.

use core::pin::Pin;

use crate::park::Park;
use crate::queue::{WaitState, Waiter};
use crate::raw::RawGil;
use crate::wait::{WaitPolicy, Waited};

pub use crate::raw::{Cancel, Enqueued, Loan};

/// Writes [`Steps`] and its forwarding implementation for `RawGil`.
macro_rules! steps {
    ($(
        $(#[doc = $doc:literal])*
        $([$unsafe:tt])? fn $name:ident(&self $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)?;
    )*) => {
        /// The single steps of [`RawGil`]'s protocol (see the [module](self)).
        pub trait Steps<P: Park> {
            $(
                $(#[doc = $doc])*
                $($unsafe)? fn $name(&self $(, $arg: $ty)*) $(-> $ret)?;
            )*
        }

        impl<P: Park> Steps<P> for RawGil<P> {
            $(
                #[inline]
                $($unsafe)? fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    // SAFETY: the caller keeps this method's contract, the step's own.
                    $($unsafe)? { RawGil::$name(self $(, $arg)*) }
                }
            )*
        }
    };
}

steps! {
    /// Takes the lock back after a region, even when closed: `lock` for a returning thread.
    fn relock(&self);

    /// `lock_with` with the caller's own waiter node.
    ///
    /// # Safety
    ///
    /// `waiter` is not queued, and stays pinned until this returns.
    [unsafe] fn lock_with_waiter(&self, waiter: Pin<&Waiter<P>>, policy: &mut impl WaitPolicy<P>) -> Waited;

    /// Puts `waiter` in line, or takes a free lock at once.
    ///
    /// # Safety
    ///
    /// `waiter` is not queued; if queued here, it stays alive and pinned until it is seen
    /// granted or closed, or `cancel` returns. The calling thread does not own the lock.
    [unsafe] fn enqueue(&self, waiter: Pin<&Waiter<P>>) -> Enqueued;

    /// Takes a queued waiter out of line, unless the lock was handed to it first.
    ///
    /// # Safety
    ///
    /// `waiter` was queued on this lock by the calling thread, which has not acted on a
    /// granted or closed state of it.
    [unsafe] fn cancel(&self, waiter: Pin<&Waiter<P>>) -> Cancel;

    /// Waits on a queued waiter until granted or closed, claiming an offer.
    ///
    /// # Safety
    ///
    /// As for [`cancel`](Steps::cancel).
    [unsafe] fn wait(&self, waiter: Pin<&Waiter<P>>) -> WaitState;

    /// The owner leaves for a region and offers the lock to the head waiter (the lazy let-go,
    /// without the loans `let_go` ends).
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock and stops using it until it has taken it back.
    [unsafe] fn unlock_away(&self) -> crate::raw::Absence;

    /// Takes back a lock left with `unlock_away`, unless it was claimed meanwhile.
    fn reclaim(&self, away: crate::raw::Absence) -> bool;

    /// Takes the lock offered to a queued waiter, or puts it back in line.
    ///
    /// # Safety
    ///
    /// As for [`cancel`](Steps::cancel).
    [unsafe] fn claim(&self, waiter: Pin<&Waiter<P>>) -> WaitState;

    /// The owner hands the lock to the head waiter and queues `waiter` at the tail.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock; `waiter` is not queued, and if this returns `true`
    /// it is queued and stays pinned until it is seen granted.
    [unsafe] fn requeue(&self, waiter: Pin<&Waiter<P>>) -> bool;

    /// Hands the lock to the head waiter and waits its turn again.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock.
    [unsafe] fn yield_now(&self) -> bool;

    /// Asks the holder for a loan on the breaker.
    fn ask_loan(&self) -> bool;

    /// Withdraws this thread's ask for a loan, unless the loan was lent first.
    ///
    /// # Safety
    ///
    /// The calling thread asked for the loan standing.
    [unsafe] fn withdraw_loan(&self) -> bool;

    /// The owner lends the lock to the thread that asked on the breaker.
    ///
    /// # Safety
    ///
    /// The calling thread owns the lock; it waits for the loan back before using it again.
    [unsafe] fn lend_asked(&self) -> bool;

    /// The lender waits until its loan is given back.
    ///
    /// # Safety
    ///
    /// The calling thread lent the lock on the breaker.
    [unsafe] fn wait_loan_back(&self);

    /// Asks for a loan and waits awake for the answer, as `policy` says.
    fn borrow_with(&self, policy: &mut impl WaitPolicy<P>) -> bool;

    /// Where a loan asked for on the breaker stands.
    fn loan(&self) -> Loan;

    /// Whether the lock is lent on the breaker.
    fn is_lent(&self) -> bool;
}

/// The single step of a [`Waiter`]'s own (see the [module](self)).
pub trait WaiterSteps {
    /// Sleeps until this waiter is no longer queued, and says why.
    fn wait(self: Pin<&Self>) -> WaitState;
}

impl<P: Park> WaiterSteps for Waiter<P> {
    #[inline]
    fn wait(self: Pin<&Self>) -> WaitState {
        Waiter::wait(self)
    }
}
