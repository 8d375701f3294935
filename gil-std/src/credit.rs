//! The fast-return policy: who may come back from a blocking region ahead of the line.
//!
//! A thread earns credit while it is blocked, at its fair share of that time (the time divided
//! by the threads contending for the lock, itself included), and spends it while it holds the
//! lock out of turn. A thread with credit left comes back *urgently*: it queues ahead of the
//! ordinary waiters and raises [`PRIORITY`]; the holder's next checkpoint lends it the lock and
//! gets it back as soon as it blocks again. A thread that blocks briefly and computes long (the
//! abuse case) spends more than it earns and comes back in FIFO order. See docs/design.md,
//! "Fast return from blocking".
//!
//! Credit is kept per thread, not per lock: a thread that uses several locks shares one
//! balance among them.

use std::cell::Cell;
use std::time::Duration;

use gil_core::Breaker;

/// The breaker flag an urgent waiter raises: "lend me the lock at your next checkpoint".
pub(crate) const PRIORITY: u32 = 1 << 1;
const _: () = assert!(PRIORITY & Breaker::STD_BITS == PRIORITY);

/// The most credit a thread can hold, as a fraction of the switch interval: the longest it can
/// hold out of turn at one go before it runs dry (1/4).
pub(crate) const CAP_DIVISOR: u64 = 4;

thread_local! {
    /// This thread's credit in nanoseconds (negative: in debt), and when its current blocking
    /// region began (nanoseconds on the clock's epoch; 0: not in a region).
    static CREDIT: (Cell<i64>, Cell<u64>) = const { (Cell::new(0), Cell::new(0)) };
}

/// The thread enters a blocking region at `now`.
pub(crate) fn enter_region(now: u64) {
    let _ = CREDIT.try_with(|(_, since)| since.set(now));
}

/// The thread leaves its blocking region without having let the lock go: nothing earned.
pub(crate) fn forget_region() {
    let _ = CREDIT.try_with(|(_, since)| since.set(0));
}

/// The thread leaves its blocking region at `now`, with `contending` threads (itself included)
/// wanting the lock: earns its share of the time blocked, up to the cap. Returns whether it has
/// credit to come back urgently.
pub(crate) fn leave_region(now: u64, contending: u64, interval: Duration) -> bool {
    CREDIT
        .try_with(|(balance, since)| {
            let blocked = now.saturating_sub(since.replace(0));
            let earned = blocked / contending.max(1);
            let cap = i64::try_from(interval.as_nanos() as u64 / CAP_DIVISOR).unwrap_or(i64::MAX);
            let b = balance
                .get()
                .saturating_add(i64::try_from(earned).unwrap_or(i64::MAX))
                .min(cap);
            balance.set(b);
            b > 0
        })
        .unwrap_or(false)
}

/// The thread held the lock out of turn for `held` nanoseconds: spends it. The debt is kept
/// down to one switch interval, so a thread that once abused can earn its way back.
pub(crate) fn spend(held: u64, interval: Duration) {
    let _ = CREDIT.try_with(|(balance, _)| {
        let floor = -i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        let b = balance
            .get()
            .saturating_sub(i64::try_from(held).unwrap_or(i64::MAX))
            .max(floor);
        balance.set(b);
    });
}
